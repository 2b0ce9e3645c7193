#include "daemon/monitor/health_report.hpp"

#include <algorithm>
#include <cmath>
#include <utility>

namespace drd {

namespace {

double weighted_percentile(const std::vector<std::pair<double, std::int64_t>>& sorted, std::int64_t total, double q) {
  if (total <= 0) return 0;
  auto rank = static_cast<std::int64_t>(std::ceil(q * static_cast<double>(total)));
  std::int64_t seen = 0;
  for (auto& [v, w] : sorted) {
    seen += w;
    if (seen >= rank) return v;
  }
  return sorted.back().first;
}

}  // namespace

HealthReport analyse_health(const std::vector<SqliteStateStore::HealthMinute>& minutes,
                            const std::vector<HealthSample>& raw) {
  HealthReport r;
  std::vector<std::pair<double, std::int64_t>> values;  // (response ms, weight)
  values.reserve(minutes.size() + raw.size());
  constexpr std::int64_t kUp = -1;  // (a sentinel rather than optional: gcc 12 warns falsely on it here)
  std::int64_t down_since = kUp;
  auto close_outage = [&](std::int64_t at) {
    if (down_since != kUp) r.outages.push_back({down_since, at});
    down_since = kUp;
  };
  for (auto& m : minutes) {
    r.samples += m.count;
    r.failures += m.failures;
    if (m.count > m.failures) values.emplace_back(m.avg_ms, m.count - m.failures);
    // A minute with no successful probe at all is an outage minute.
    if (m.count > 0 && m.failures == m.count) {
      if (down_since == kUp) down_since = m.minute_ms;
    } else {
      close_outage(m.minute_ms);
    }
  }
  for (auto& s : raw) {
    r.samples++;
    if (s.ok) {
      values.emplace_back(s.response_ms, 1);
      close_outage(s.time_ms);
    } else {
      r.failures++;
      if (down_since == kUp) down_since = s.time_ms;
    }
  }
  if (down_since != kUp) r.outages.push_back({down_since, std::nullopt});
  std::sort(values.begin(), values.end());
  std::int64_t ok = 0;
  for (auto& v : values) ok += v.second;
  r.p50_ms = weighted_percentile(values, ok, 0.50);
  r.p95_ms = weighted_percentile(values, ok, 0.95);
  r.p99_ms = weighted_percentile(values, ok, 0.99);
  if (r.samples > 0)
    r.availability_pct = 100.0 * static_cast<double>(r.samples - r.failures) / static_cast<double>(r.samples);
  return r;
}

}  // namespace drd
