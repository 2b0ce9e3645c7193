#pragma once
// /metrics: the Prometheus text exposition format (version 0.0.4).
// render_prometheus() is pure; read_process_stats() reads /proc/self.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "daemon/observability/recorder.hpp"

namespace drd::monitoring {

struct NodeMetrics {
  std::string name;
  std::string role;     // primary | standby | down | fenced
  std::string engine;   // sqlite | postgresql
  bool up = false;
  std::optional<double> response_ms;  // the last probe's
  std::optional<double> lag_bytes, lag_ms;
  // What the server answered (status `server_state`): answering, saturated, shutting_down,
  // starting_up, refuses_drd, crashed, no_answer; "" before the first probe.
  std::string server_state;
  // PostgreSQL standbys: WAL received but not replayed yet, and whether replay is paused.
  std::optional<double> replay_lag_bytes;
  std::optional<bool> replay_paused;
  Histogram response;   // empty bounds = no observations yet
};

struct AlertMetric {
  std::string rule, node, severity;
  std::string state;  // pending | firing
};

struct ProcessStats {
  std::uint64_t rss_bytes = 0, virtual_bytes = 0;
  double cpu_seconds = 0;
  std::uint64_t open_fds = 0;
  double start_time_s = 0;  // unix seconds
};

struct PrometheusSnapshot {
  std::string version;
  std::string primary;
  std::int64_t term = 0;
  bool monitoring = false, auto_failover = false;
  std::uint64_t failovers_total = 0;
  std::vector<NodeMetrics> nodes;
  std::optional<BackupRecord> last_backup, last_good_backup;
  std::vector<AlertMetric> alerts;
  std::optional<ProcessStats> process;
};

std::string render_prometheus(const PrometheusSnapshot& s);

// From /proc/self/{stat,fd} and /proc/stat (btime). nullopt off Linux or when /proc is missing.
std::optional<ProcessStats> read_process_stats();

// A label value escaped for the exposition format (\\, \", \n).
std::string escape_label(const std::string& v);

}  // namespace drd::monitoring
