#pragma once
// Health analysis over a window, pure: raw probe samples (recent) plus
// per-minute aggregates (older) in, availability / percentiles / outages out.
// Percentiles over aggregated minutes use each minute's average weighted by its
// successful probes: exact for the raw part, a close approximation before it.
#include <cstdint>
#include <optional>
#include <vector>

#include "daemon/store/state_store.hpp"

namespace drd {

struct Outage {
  std::int64_t start_ms = 0;
  std::optional<std::int64_t> end_ms;  // nullopt while still down
};

struct HealthReport {
  std::int64_t samples = 0, failures = 0;
  double availability_pct = 0;  // 0 with no samples
  double p50_ms = 0, p95_ms = 0, p99_ms = 0;
  std::vector<Outage> outages;
};

HealthReport analyse_health(const std::vector<SqliteStateStore::HealthMinute>& minutes,
                            const std::vector<HealthSample>& raw);

}  // namespace drd
