#include "daemon/observability/status_page.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace drd::monitoring {

namespace json = boost::json;

std::string html_escape(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

namespace {

// Tolerant accessors: the page must render whatever the status JSON lacks.
const json::value* field(const json::value& v, const char* key) {
  if (!v.is_object()) return nullptr;
  return v.as_object().if_contains(key);
}
std::string str(const json::value& v, const char* key, const std::string& dflt = "") {
  auto* f = field(v, key);
  return f && f->is_string() ? std::string(f->as_string()) : dflt;
}
std::optional<double> number(const json::value& v, const char* key) {
  auto* f = field(v, key);
  if (!f) return std::nullopt;
  if (f->is_double()) return f->as_double();
  if (f->is_int64()) return static_cast<double>(f->as_int64());
  if (f->is_uint64()) return static_cast<double>(f->as_uint64());
  return std::nullopt;
}
std::optional<bool> boolean(const json::value& v, const char* key) {
  auto* f = field(v, key);
  return f && f->is_bool() ? std::optional<bool>(f->as_bool()) : std::nullopt;
}
const json::array& array(const json::value& v, const char* key) {
  static const json::array empty;
  auto* f = field(v, key);
  return f && f->is_array() ? f->as_array() : empty;
}

std::string fmt(double v, const char* f = "%.2f") {
  char buf[48];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

std::string on_off(const json::value& s, const char* key) {
  auto b = boolean(s, key);
  if (!b) return "<span class=muted>-</span>";
  return *b ? "<span class=good>on</span>" : "<span class=warn>off</span>";
}

std::string tone(const std::string& word) {
  if (word == "healthy" || word == "normal" || word == "ok" || word == "primary" || word == "standby") return "good";
  if (word == "degraded" || word == "failing" || word == "unknown" || word == "failing_over" || word == "pending" ||
      word == "warning")
    return "warn";
  return "bad";
}

std::string badge(const std::string& word) {
  return "<span class=\"badge " + tone(word) + "\">" + html_escape(word) + "</span>";
}

// The primary's marker: a crown drawn by the page itself (an emoji shows as a box where the
// font lacks it). Labelled, so it reads "primary" to a screen reader and on hover.
const char* kCrown =
    " <svg class=crown width=\"14\" height=\"12\" viewBox=\"0 0 14 12\" role=\"img\" aria-label=\"primary\">"
    "<title>primary</title><path d=\"M1 11V3l3.5 3L7 1l2.5 5L13 3v8z\" fill=\"#d4a017\" stroke=\"#8a6a0a\" "
    "stroke-width=\"0.8\"/></svg>";

// An alert's severity, named once: critical in red, warning in amber, info in green.
std::string severity_badge(const std::string& severity) {
  const std::string word = severity.empty() ? "warning" : severity;
  const std::string t = word == "critical" ? "bad" : word == "info" ? "good" : "warn";
  return "<span class=\"badge " + t + "\">" + html_escape(word) + "</span>";
}

// "3h05m ago", "42s ago", "in 2h00m".
std::string span_text(double seconds) {
  auto s = static_cast<long long>(std::max(0.0, seconds));
  char buf[48];
  if (s < 60) std::snprintf(buf, sizeof buf, "%llds", s);
  else if (s < 3600) std::snprintf(buf, sizeof buf, "%lldm%02llds", s / 60, s % 60);
  else if (s < 86400) std::snprintf(buf, sizeof buf, "%lldh%02lldm", s / 3600, (s / 60) % 60);
  else std::snprintf(buf, sizeof buf, "%lldd%02lldh", s / 86400, (s / 3600) % 24);
  return buf;
}

// "2026-11-24 05:29:20 UTC" from the status JSON's ISO-8601 times.
std::string time_text(const std::string& iso) {
  if (iso.size() < 19) return html_escape(iso);
  std::string t = iso.substr(0, 19);
  t[10] = ' ';
  return html_escape(t) + " UTC";
}

std::string size_text(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (bytes >= 1024 && u < 4) {
    bytes /= 1024;
    ++u;
  }
  return (u == 0 ? fmt(bytes, "%.0f") : fmt(bytes, "%.1f")) + " " + units[u];
}

// 1, 2, 5 x 10^n at or above v.
double nice_ceiling(double v) {
  if (v <= 1) return 1;
  double p = std::pow(10.0, std::floor(std::log10(v)));
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (m * p >= v) return m * p;
  return 10 * p;
}

const char* kStyle = R"(
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;background:#f6f7f9;color:#1d2329}
h1{font-size:22px;margin:0 0 16px}h2{font-size:16px;margin:24px 0 8px}
.panel{background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:12px 16px;margin-bottom:12px}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{text-align:left;padding:6px 10px;border-bottom:1px solid #eceef1;font-size:14px}
th{background:#f0f2f5;font-weight:600}
.kv{display:grid;grid-template-columns:max-content auto;gap:4px 16px;font-size:14px}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600}
.badge.good{background:#d9f2e0;color:#146c2e}.badge.warn{background:#fcefc7;color:#7a5300}.badge.bad{background:#fbd9d7;color:#9b1c13}
.good{color:#146c2e}.warn{color:#7a5300}.bad{color:#9b1c13}.muted{color:#8a939c}
.charts{display:flex;flex-wrap:wrap;gap:12px}.chart{background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:8px}
.chart h3{font-size:14px;margin:0 0 4px}footer{margin-top:24px;font-size:12px;color:#8a939c}
svg.crown{vertical-align:-1px}
)";

}  // namespace

std::string render_chart_svg(const ChartSeries& series, SysTime now, int width, int height) {
  const int left = 48, right = 8, top = 8, bottom = 20;
  const double plot_w = width - left - right, plot_h = height - top - bottom;
  const double t1 = static_cast<double>(to_unix_ms(now));
  const double t0 = t1 - static_cast<double>(MetricsRecorder::kChartWindow.count());
  double max_ms = 0;
  for (const auto& s : series.samples)
    if (s.ok) max_ms = std::max(max_ms, s.response_ms);
  const double ymax = nice_ceiling(max_ms);
  auto x_of = [&](double t) { return left + std::clamp((t - t0) / (t1 - t0), 0.0, 1.0) * plot_w; };
  auto y_of = [&](double ms) { return top + plot_h - std::clamp(ms / ymax, 0.0, 1.0) * plot_h; };

  std::string points, failures;
  for (const auto& s : series.samples) {
    const double x = x_of(static_cast<double>(s.time_ms));
    if (s.ok) {
      if (!points.empty()) points += ' ';
      points += fmt(x, "%.1f") + "," + fmt(y_of(s.response_ms), "%.1f");
    } else {
      failures += "<line x1=\"" + fmt(x, "%.1f") + "\" x2=\"" + fmt(x, "%.1f") + "\" y1=\"" +
                  fmt(top + plot_h - 10, "%.1f") + "\" y2=\"" + fmt(top + plot_h, "%.1f") +
                  "\" stroke=\"#d93025\" stroke-width=\"1.5\"/>";
    }
  }
  const std::string name = html_escape(series.node);
  std::string svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + std::to_string(width) + "\" height=\"" +
                    std::to_string(height) + "\" viewBox=\"0 0 " + std::to_string(width) + " " +
                    std::to_string(height) + "\" role=\"img\" aria-label=\"response time of " + name +
                    ", last hour\" data-node=\"" + name + "\">";
  svg += "<rect x=\"" + std::to_string(left) + "\" y=\"" + std::to_string(top) + "\" width=\"" + fmt(plot_w, "%.0f") +
         "\" height=\"" + fmt(plot_h, "%.0f") + "\" fill=\"#fbfcfd\" stroke=\"#dde1e6\"/>";
  // Grid line at half scale, axis labels.
  svg += "<line x1=\"" + std::to_string(left) + "\" x2=\"" + fmt(left + plot_w, "%.0f") + "\" y1=\"" +
         fmt(y_of(ymax / 2), "%.1f") + "\" y2=\"" + fmt(y_of(ymax / 2), "%.1f") +
         "\" stroke=\"#eceef1\" stroke-dasharray=\"3 3\"/>";
  auto text = [&](double x, double y, const std::string& anchor, const std::string& t) {
    svg += "<text x=\"" + fmt(x, "%.0f") + "\" y=\"" + fmt(y, "%.0f") + "\" font-size=\"10\" fill=\"#5f6b76\" text-anchor=\"" +
           anchor + "\">" + html_escape(t) + "</text>";
  };
  text(left - 4, top + 8, "end", fmt(ymax, "%g") + " ms");
  text(left - 4, top + plot_h, "end", "0");
  text(left, height - 6, "start", "-60m");
  text(left + plot_w / 2, height - 6, "middle", "-30m");
  text(left + plot_w, height - 6, "end", "now");
  svg += "<polyline fill=\"none\" stroke=\"#1a73e8\" stroke-width=\"1.5\" stroke-linejoin=\"round\" points=\"" + points +
         "\"/>";
  svg += failures;
  if (series.samples.empty()) text(left + plot_w / 2, top + plot_h / 2, "middle", "no samples yet");
  svg += "</svg>";
  return svg;
}

std::string render_status_page(const json::value& s, const json::value& alerts, const std::vector<ChartSeries>& charts,
                               SysTime now) {
  const std::string primary = str(s, "primary");
  const auto& nodes = array(s, "nodes");
  bool primary_ok = false, all_ok = !nodes.empty();
  for (const auto& n : nodes) {
    const bool ok = boolean(n, "healthy").value_or(false) && str(n, "role") != "fenced";
    if (str(n, "name") == primary) primary_ok = ok;
    all_ok = all_ok && ok;
  }
  const std::string overall = !primary_ok ? "critical" : all_ok ? "healthy" : "degraded";

  std::string h;
  h += "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">";
  h += "<meta http-equiv=\"refresh\" content=\"5\">";
  h += "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">";
  h += "<title>drd: " + html_escape(overall) + " (" + html_escape(primary.empty() ? "no primary" : primary) +
       ")</title>";
  h += std::string("<style>") + kStyle + "</style></head><body>\n";
  h += "<h1>Disaster Recovery Status " + badge(overall) + "</h1>\n";

  h += "<div class=panel><div class=kv>";
  h += "<div>Disaster recovery</div><div>" + on_off(s, "enabled") + "</div>";
  h += "<div>Current primary</div><div><b>" + html_escape(primary.empty() ? "-" : primary) + "</b>" +
       (primary.empty() ? "" : kCrown) + "</div>";
  if (auto t = number(s, "term")) h += "<div>Term</div><div>" + fmt(*t, "%.0f") + "</div>";
  h += "<div>Auto backup</div><div>" + on_off(s, "auto_backup") + "</div>";
  if (const auto* b = field(s, "backups"); b && b->is_object()) {
    const std::string last = str(*b, "last_good");
    h += "<div>Last good backup</div><div>";
    if (last.empty()) h += "<span class=warn>none on record</span>";
    else {
      h += time_text(last);
      if (auto age = number(*b, "last_good_age_s")) h += " <span class=muted>(" + span_text(*age) + " ago)</span>";
    }
    if (boolean(*b, "last_attempt_failed").value_or(false)) h += " <span class=bad>the last attempt failed</span>";
    h += "</div>";
    const std::string next = str(*b, "next_scheduled");
    h += "<div>Next scheduled backup</div><div>";
    if (next.empty()) h += "<span class=muted>not scheduled</span>";
    else {
      h += time_text(next);
      if (auto in = number(*b, "next_in_s")) h += " <span class=muted>(in " + span_text(*in) + ")</span>";
      if (auto sched = str(*b, "schedule"); !sched.empty()) h += " <span class=muted>" + html_escape(sched) + "</span>";
    }
    h += "</div>";
  }
  h += "<div>Health monitoring</div><div>" + on_off(s, "monitoring") + "</div>";
  h += "<div>Auto failover</div><div>" + on_off(s, "auto_failover") + "</div>";
  const std::string fstate = str(s, "failover_state", "-");
  h += "<div>Failover state</div><div>" + badge(fstate);
  const std::string reason = str(s, "failover_reason");
  if (!reason.empty() && fstate != "normal") h += " " + html_escape(reason);
  h += "</div>";
  if (auto th = number(s, "failure_threshold"))
    h += "<div>Failure threshold</div><div>" + fmt(*th, "%.0f") + " consecutive failed probes</div>";
  h += "</div></div>\n";

  h += "<h2>Databases</h2><table><tr><th>Node</th><th>Type</th><th>Role</th><th>Priority</th><th>Engine</th>"
       "<th>Connection</th><th>Response time</th><th>Replication lag</th><th>Last error</th></tr>\n";
  for (const auto& n : nodes) {
    const std::string name = str(n, "name", "?");
    const std::string role = str(n, "role", "-");
    h += "<tr><td><b>" + html_escape(name) + "</b>" + (name == primary ? kCrown : "") + "</td>";
    h += "<td>" + html_escape(str(n, "type", "-")) + "</td><td>" + badge(role) + "</td>";
    h += "<td>" + (number(n, "priority") ? fmt(*number(n, "priority"), "%.0f") : std::string("-")) + "</td>";
    h += "<td>" + html_escape(str(n, "engine", "-")) + "</td>";
    h += "<td>" + badge(str(n, "connection", "unknown")) + "</td>";
    auto rt = number(n, "response_time_ms");
    h += "<td>" + (rt ? fmt(*rt) + " ms" : std::string("-")) + "</td>";
    auto lb = number(n, "lag_bytes");
    auto lm = number(n, "lag_ms");
    std::string lag = "-";
    if (role == "standby" && (lb || lm))
      lag = (lb ? size_text(*lb) : std::string("?")) + (lm ? " / " + fmt(*lm, "%.0f") + " ms" : std::string());
    h += "<td>" + lag + "</td>";
    h += "<td class=muted>" + html_escape(str(n, "last_error")) + "</td></tr>\n";
  }
  h += "</table>\n";

  h += "<h2>Alerts</h2>";
  const auto& firing = array(alerts, "firing");
  if (firing.empty()) {
    h += "<div class=panel><span class=good>No alert is firing.</span></div>\n";
  } else {
    h += "<table><tr><th>Rule</th><th>Node</th><th>Severity</th><th>Since</th><th>Message</th></tr>\n";
    for (const auto& a : firing) {
      const std::string node = str(a, "node");
      h += "<tr><td>" + html_escape(str(a, "rule")) + "</td><td>" + html_escape(node.empty() ? "(cluster)" : node) +
           "</td><td>" + severity_badge(str(a, "severity")) + "</td><td>" + html_escape(str(a, "since")) + "</td><td>" +
           html_escape(str(a, "message")) + "</td></tr>\n";
    }
    h += "</table>\n";
  }

  h += "<h2>Response time, last hour</h2><div class=charts>\n";
  for (const auto& c : charts) {
    std::size_t failed = 0;
    for (const auto& x : c.samples) failed += x.ok ? 0 : 1;
    h += "<div class=chart><h3>" + html_escape(c.node) + " <span class=muted>(" + std::to_string(c.samples.size()) +
         " probes, " + std::to_string(failed) + " failed)</span></h3>" + render_chart_svg(c, now) + "</div>\n";
  }
  h += "</div>\n";
  h += "<footer>drd &middot; generated " + html_escape(iso8601_ms(to_unix_ms(now))) +
       " &middot; refreshes every 5 s &middot; <a href=\"/metrics\">/metrics</a></footer>\n";
  h += "</body></html>\n";
  return h;
}

}  // namespace drd::monitoring
