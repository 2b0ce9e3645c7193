#pragma once
// MetricsRecorder: what monitoring needs to remember between probe rounds —
// per-node response-time histograms (cumulative since start, for Prometheus),
// the last hour of probe samples per node (for the status page chart),
// failover times (total and "in the last minute" for alert rules) and the
// last backup attempt.
//
// Memory is bounded: at most kMaxSamples samples per node, older than one hour
// dropped. Thread-safe (one mutex): fed on the control strand, read from the
// HTTP strand.
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.hpp"
#include "common/units.hpp"

namespace drd::monitoring {

// Upper bounds in milliseconds; +Inf is implied.
const std::vector<double>& response_buckets_ms();

struct Histogram {
  std::vector<double> bounds_ms;         // ascending
  std::vector<std::uint64_t> counts;     // per bucket, NOT cumulative; size = bounds + 1 (+Inf)
  double sum_ms = 0;
  std::uint64_t count = 0;
  void observe(double ms);
};

struct ProbeSample {
  std::int64_t time_ms = 0;
  bool ok = false;
  double response_ms = 0;
};

struct ChartSeries {
  std::string node;
  std::vector<ProbeSample> samples;  // oldest first
};

struct BackupRecord {
  std::int64_t time_ms = 0;
  bool ok = false;
  std::uint64_t size_bytes = 0;
};

class MetricsRecorder {
 public:
  static constexpr std::size_t kMaxSamples = 7200;
  static constexpr Millis kChartWindow{3'600'000};

  void on_probe(const std::string& node, SysTime t, bool ok, double response_ms);
  void on_failover(SysTime t);
  // Every backup attempt; ok=false for a failed one.
  void on_backup(SysTime t, bool ok, std::uint64_t size_bytes);

  std::map<std::string, Histogram> histograms() const;
  std::vector<ChartSeries> chart(SysTime now, const std::vector<std::string>& order) const;
  std::uint64_t failovers_total() const;
  int failovers_since(SysTime since) const;
  std::optional<BackupRecord> last_backup() const;           // the last attempt
  std::optional<BackupRecord> last_good_backup() const;      // the last successful one

 private:
  mutable std::mutex mu_;
  std::map<std::string, Histogram> hist_;
  std::map<std::string, std::deque<ProbeSample>> samples_;
  std::deque<std::int64_t> failover_times_;  // last hour only
  std::uint64_t failovers_total_ = 0;
  std::optional<BackupRecord> last_backup_, last_good_backup_;
};

}  // namespace drd::monitoring
