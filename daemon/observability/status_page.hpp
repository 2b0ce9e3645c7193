#pragma once
// The status page served at "/": server-rendered HTML, no external assets, no
// scripts. It shows the seed's status panel (from the `status` RPC's JSON),
// the firing alerts, and an inline SVG response-time chart per node for the
// last hour. It refreshes itself every 5 s (<meta http-equiv=refresh>).
// Pure: everything comes in as arguments. Every value from the JSON is HTML-escaped.
#include <boost/json.hpp>

#include <string>
#include <vector>

#include "common/clock.hpp"
#include "daemon/observability/recorder.hpp"

namespace drd::monitoring {

std::string html_escape(const std::string& s);

// One <svg> with one <polyline> of the successful probes' response times over
// [now - 1h, now]; failed probes are red ticks along the bottom.
std::string render_chart_svg(const ChartSeries& series, SysTime now, int width = 560, int height = 120);

std::string render_status_page(const boost::json::value& status, const boost::json::value& alerts,
                               const std::vector<ChartSeries>& charts, SysTime now);

}  // namespace drd::monitoring
