#include "daemon/observability/prometheus.hpp"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/json_text.hpp"

namespace drd::monitoring {

std::string escape_label(const std::string& v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

namespace {

std::string num(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  // Plain decimals, exact: "%.9g" wrote a timestamp as 1.79662755e+09, 10-second resolution.
  return plain_decimal(v);
}

class Writer {
 public:
  void family(const std::string& name, const char* type, const std::string& help) {
    out_ += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
  }
  void sample(const std::string& name, const std::vector<std::pair<std::string, std::string>>& labels, double v) {
    out_ += name;
    if (!labels.empty()) {
      out_ += '{';
      bool first = true;
      for (const auto& [k, val] : labels) {
        if (!first) out_ += ',';
        first = false;
        out_ += k + "=\"" + escape_label(val) + "\"";
      }
      out_ += '}';
    }
    out_ += ' ' + num(v) + '\n';
  }
  std::string take() { return std::move(out_); }

 private:
  std::string out_;
};

}  // namespace

std::string render_prometheus(const PrometheusSnapshot& s) {
  Writer w;
  w.family("drd_build_info", "gauge", "drd version (always 1).");
  w.sample("drd_build_info", {{"version", s.version}}, 1);
  w.family("drd_monitoring_enabled", "gauge", "1 while health monitoring runs.");
  w.sample("drd_monitoring_enabled", {}, s.monitoring ? 1 : 0);
  w.family("drd_auto_failover_enabled", "gauge", "1 while automatic failover is enabled.");
  w.sample("drd_auto_failover_enabled", {}, s.auto_failover ? 1 : 0);
  w.family("drd_term", "gauge", "The cluster term: +1 on every change of primary.");
  w.sample("drd_term", {}, static_cast<double>(s.term));
  w.family("drd_failovers_total", "counter", "Changes of primary (failover, switchover) since drd started.");
  w.sample("drd_failovers_total", {}, static_cast<double>(s.failovers_total));

  w.family("drd_node_up", "gauge", "1 when the node answers its health probes.");
  for (const auto& n : s.nodes) w.sample("drd_node_up", {{"node", n.name}, {"engine", n.engine}}, n.up ? 1 : 0);
  w.family("drd_node_role", "gauge", "1 for the node's current role (primary, standby, down, fenced), else 0.");
  for (const auto& n : s.nodes)
    for (const char* role : {"primary", "standby", "down", "fenced"})
      w.sample("drd_node_role", {{"node", n.name}, {"role", role}}, n.role == role ? 1 : 0);
  w.family("drd_node_is_primary", "gauge", "1 for the current primary.");
  for (const auto& n : s.nodes) w.sample("drd_node_is_primary", {{"node", n.name}}, n.name == s.primary ? 1 : 0);
  w.family("drd_node_response_time_seconds", "gauge", "The last health probe's response time.");
  for (const auto& n : s.nodes)
    if (n.response_ms) w.sample("drd_node_response_time_seconds", {{"node", n.name}}, *n.response_ms / 1000.0);
  w.family("drd_node_replication_lag_bytes", "gauge", "How far a standby is behind the primary, in bytes.");
  for (const auto& n : s.nodes)
    if (n.lag_bytes) w.sample("drd_node_replication_lag_bytes", {{"node", n.name}}, *n.lag_bytes);
  w.family("drd_node_replication_lag_seconds", "gauge", "How far a standby is behind the primary, in time.");
  for (const auto& n : s.nodes)
    if (n.lag_ms) w.sample("drd_node_replication_lag_seconds", {{"node", n.name}}, *n.lag_ms / 1000.0);

  w.family("drd_node_server_state", "gauge",
           "1 for what the server answered at the last probe (answering, saturated, shutting_down, starting_up, "
           "refuses_drd, crashed, no_answer), else 0. A saturated server is up.");
  for (const auto& n : s.nodes)
    if (!n.server_state.empty())
      for (const char* st : {"answering", "saturated", "shutting_down", "starting_up", "refuses_drd", "crashed", "no_answer"})
        w.sample("drd_node_server_state", {{"node", n.name}, {"state", st}}, n.server_state == st ? 1 : 0);
  w.family("drd_node_replay_lag_bytes", "gauge",
           "PostgreSQL standby: WAL received but not replayed yet, in bytes (what a promotion must replay first).");
  for (const auto& n : s.nodes)
    if (n.replay_lag_bytes) w.sample("drd_node_replay_lag_bytes", {{"node", n.name}}, *n.replay_lag_bytes);
  w.family("drd_node_replay_paused", "gauge",
           "PostgreSQL standby: 1 while WAL replay is paused (pg_wal_replay_pause); failover skips such a standby.");
  for (const auto& n : s.nodes)
    if (n.replay_paused) w.sample("drd_node_replay_paused", {{"node", n.name}}, *n.replay_paused ? 1 : 0);

  w.family("drd_probe_duration_seconds", "histogram", "Response time of successful health probes.");
  for (const auto& n : s.nodes) {
    const Histogram& h = n.response;
    // A node without observations still gets every bucket (at 0) so its series are stable.
    const std::vector<double>& bounds = h.bounds_ms.empty() ? response_buckets_ms() : h.bounds_ms;
    std::uint64_t cum = 0;
    for (std::size_t i = 0; i < bounds.size(); ++i) {
      cum += i < h.counts.size() ? h.counts[i] : 0;
      w.sample("drd_probe_duration_seconds_bucket", {{"node", n.name}, {"le", num(bounds[i] / 1000.0)}},
               static_cast<double>(cum));
    }
    w.sample("drd_probe_duration_seconds_bucket", {{"node", n.name}, {"le", "+Inf"}}, static_cast<double>(h.count));
    w.sample("drd_probe_duration_seconds_sum", {{"node", n.name}}, h.sum_ms / 1000.0);
    w.sample("drd_probe_duration_seconds_count", {{"node", n.name}}, static_cast<double>(h.count));
  }

  w.family("drd_last_backup_timestamp_seconds", "gauge", "When the last backup attempt finished (unix time).");
  w.family("drd_last_backup_success", "gauge", "1 if the last backup attempt succeeded.");
  w.family("drd_last_successful_backup_timestamp_seconds", "gauge", "When the last good backup finished.");
  w.family("drd_last_backup_size_bytes", "gauge", "Size of the last good backup.");
  if (s.last_backup) {
    w.sample("drd_last_backup_timestamp_seconds", {}, static_cast<double>(s.last_backup->time_ms) / 1000.0);
    w.sample("drd_last_backup_success", {}, s.last_backup->ok ? 1 : 0);
  }
  if (s.last_good_backup) {
    w.sample("drd_last_successful_backup_timestamp_seconds", {}, static_cast<double>(s.last_good_backup->time_ms) / 1000.0);
    w.sample("drd_last_backup_size_bytes", {}, static_cast<double>(s.last_good_backup->size_bytes));
  }

  w.family("drd_alert_firing", "gauge", "1 while the alert fires, 0 while pending (node \"\" = cluster-wide).");
  for (const auto& a : s.alerts)
    w.sample("drd_alert_firing", {{"rule", a.rule}, {"node", a.node}, {"severity", a.severity}},
             a.state == "firing" ? 1 : 0);

  if (s.process) {
    const ProcessStats& p = *s.process;
    w.family("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
    w.sample("process_resident_memory_bytes", {}, static_cast<double>(p.rss_bytes));
    w.family("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.");
    w.sample("process_virtual_memory_bytes", {}, static_cast<double>(p.virtual_bytes));
    w.family("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.");
    w.sample("process_cpu_seconds_total", {}, p.cpu_seconds);
    w.family("process_open_fds", "gauge", "Number of open file descriptors.");
    w.sample("process_open_fds", {}, static_cast<double>(p.open_fds));
    w.family("process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.");
    w.sample("process_start_time_seconds", {}, p.start_time_s);
  }
  return w.take();
}

std::optional<ProcessStats> read_process_stats() {
  std::ifstream f("/proc/self/stat");
  std::string line;
  if (!f || !std::getline(f, line)) return std::nullopt;
  // comm (field 2) may hold spaces: fields after the last ')' are space-separated from field 3.
  auto close = line.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream rest(line.substr(close + 2));
  std::vector<std::string> fields;  // fields[0] = field 3 (state)
  for (std::string x; rest >> x;) fields.push_back(x);
  if (fields.size() < 22) return std::nullopt;
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  const long page = sysconf(_SC_PAGESIZE);
  ProcessStats p;
  double start_ticks = 0;
  try {
  p.cpu_seconds = (std::stod(fields[11]) + std::stod(fields[12])) / ticks;  // utime(14) + stime(15)
  start_ticks = std::stod(fields[19]);                                      // starttime(22)
  p.virtual_bytes = std::stoull(fields[20]);                                // vsize(23)
  p.rss_bytes = std::stoull(fields[21]) * static_cast<std::uint64_t>(page);  // rss(24), pages
  } catch (const std::exception&) {
    return std::nullopt;  // an unexpected /proc format: no process metrics rather than wrong ones
  }

  std::ifstream st("/proc/stat");
  for (std::string l; std::getline(st, l);)
    if (l.rfind("btime ", 0) == 0) p.start_time_s = std::stod(l.substr(6)) + start_ticks / ticks;

  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator("/proc/self/fd", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec))
    ++p.open_fds;
  return p;
}

}  // namespace drd::monitoring
