#include "daemon/rpc/records.hpp"

#include <algorithm>
#include <cmath>

#include "common/clock.hpp"
#include "common/units.hpp"
#include "daemon/monitor/health_report.hpp"
#include "daemon/rpc/params.hpp"

namespace drd::rpc {

double round2(double v) { return std::round(v * 100.0) / 100.0; }

Result<json::value> history_answer(ClusterStore& cluster, const json::object& params) {
  auto limit = int_param(params, "limit", 50, 1, 100000);
  if (!limit) return limit.error();
  auto h = cluster.history(static_cast<int>(*limit));
  if (!h) return h.error();
  json::array out;
  for (auto& r : *h) {
    json::object o{{"time", iso8601_ms(r.time_ms)}, {"from", r.from}, {"to", r.to}, {"mode", r.mode},
                   {"reason", r.reason}, {"duration_ms", r.duration_ms}, {"lag_bytes", r.lag_bytes},
                   {"term", r.term}};
    if (r.position) o["position"] = *r.position;
    out.push_back(std::move(o));
  }
  return json::value(std::move(out));
}

Result<json::value> health_answer(SqliteStateStore& samples_store, ClusterStore& cluster, const std::vector<std::string>& nodes,
                                  std::int64_t now_ms, const json::object& params) {
  auto since_s = text_param(params, "since", false);
  if (!since_s) return since_s.error();
  std::string since_text = since_s->empty() ? "1h" : *since_s;
  auto since = parse_duration(since_text);
  if (!since) return make_error(Errc::invalid_argument, "\"since\" must be a duration like 1h, 24h or 7d, got '" + since_text + "'");
  auto node = text_param(params, "node", false);
  if (!node) return node.error();
  if (!node->empty() && std::find(nodes.begin(), nodes.end(), *node) == nodes.end())
    return make_error(Errc::not_found, "no node named '" + *node + "'");
  const std::int64_t from_ms = now_ms - since->count();
  json::array rows;
  for (auto& name : nodes) {
    if (!node->empty() && name != *node) continue;
    // Up to 6 hours: every raw sample (exact percentiles and outage times); beyond,
    // the per-minute rows, so a 7-day question stays cheap.
    HealthReport rep;
    if (since->count() <= 6 * 3'600'000LL) {
      auto samples = samples_store.health_samples(name, from_ms);
      if (!samples) return samples.error();
      rep = analyse_health({}, *samples);
    } else {
      auto minutes = samples_store.health_minutes(name, from_ms - from_ms % 60000);
      if (!minutes) return minutes.error();
      rep = analyse_health(*minutes, {});
    }
    json::array outages;
    for (auto& o : rep.outages) {
      auto end = o.end_ms.value_or(now_ms);
      outages.push_back(json::object{{"start", iso8601_ms(o.start_ms)},
                                     {"end", o.end_ms ? json::value(iso8601_ms(*o.end_ms)) : json::value(nullptr)},
                                     {"duration_ms", end - o.start_ms}});
    }
    rows.push_back(json::object{
        {"name", name},
        {"samples", rep.samples},
        {"availability_pct", round2(rep.availability_pct)},
        {"p50_ms", round2(rep.p50_ms)},
        {"p95_ms", round2(rep.p95_ms)},
        {"p99_ms", round2(rep.p99_ms)},
        {"failures", rep.failures},
        {"outages", std::move(outages)},
    });
  }
  json::array failovers;
  if (auto h = cluster.history(1000, from_ms); h)
    for (auto& r : *h)
      failovers.push_back(json::object{{"time", iso8601_ms(r.time_ms)}, {"from", r.from}, {"to", r.to}, {"mode", r.mode}});
  return json::value(json::object{{"since", since_text}, {"nodes", std::move(rows)}, {"failovers", std::move(failovers)}});
}

Result<json::value> audit_answer(SqliteStateStore& store, const json::object& params) {
  auto limit = int_param(params, "limit", 50, 1, 100000);
  if (!limit) return limit.error();
  auto a = store.audit(static_cast<int>(*limit));
  if (!a) return a.error();
  json::array out;
  for (auto& r : *a) {
    json::error_code ec;
    json::value params_v = json::parse(r.params, ec);
    out.push_back(json::object{{"time", iso8601_ms(r.time_ms)}, {"uid", r.uid}, {"pid", r.pid}, {"method", r.method},
                               {"params", ec ? json::value(r.params) : params_v}, {"ok", r.ok}, {"result", r.result}});
  }
  return json::value(std::move(out));
}

}  // namespace drd::rpc
