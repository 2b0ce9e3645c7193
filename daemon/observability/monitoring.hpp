#pragma once
// Monitoring: the one object the daemon owns for alerts, /metrics and the
// status page. It knows nothing of Daemon internals: it reads the cluster
// through the `status` RPC's JSON (Hooks::status) and is told about probes,
// failovers and backups through the on_*() calls.
//
// Threading: construct, start(), stop(), evaluate(), reconfigure() and the
// on_*() calls on the daemon's control strand (the on_*() calls and
// alerts_json() are also safe from any thread). The HTTP server calls the hooks
// on the `control` executor given here — so Hooks::status may read control-strand
// state without locks. Notifications are delivered on channel worker threads and
// never block the caller.
//
// Failure behaviour: start() fails (and the daemon should refuse to start) when
// http.listen cannot be bound or http.token_file cannot be read. A channel that
// cannot be built is logged and skipped. Alert state is kept in memory only.
#include <boost/asio.hpp>
#include <boost/json.hpp>

#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "common/config.hpp"
#include "common/process.hpp"
#include "daemon/observability/alert_manager.hpp"
#include "daemon/observability/http_server.hpp"
#include "daemon/observability/prometheus.hpp"
#include "daemon/observability/recorder.hpp"

namespace drd::monitoring {

class Monitoring {
 public:
  struct Hooks {
    std::function<boost::json::value()> status;  // the `status` RPC result (docs/rpc.md); on the control strand
    std::function<bool()> alive;                 // true while the control loop runs its rounds
  };

  Monitoring(boost::asio::io_context& io, boost::asio::any_io_executor control, const Config& config,
             ProcessRunner& runner, Hooks hooks, std::string version);
  ~Monitoring();

  Status start();  // HTTP listener if http.listen is set
  void stop();     // closes the listener, stops channel workers (queued notifications dropped, logged)

  void on_probe(const std::string& node, SysTime t, bool ok, double response_ms);
  // Records the failover and notifies the `failover` alert rules at once (once per failover).
  void on_failover(SysTime t, const std::string& from, const std::string& to, const std::string& mode,
                   std::int64_t term);
  void on_backup(SysTime t, bool ok, std::uint64_t size_bytes);

  // Builds the metric snapshot (status JSON + disks + memory + backups + failovers) and runs
  // the alert rules. Call after each probe round. Returns the notifications sent.
  std::vector<AlertNotification> evaluate(SysTime now);
  boost::json::value alerts_json() const;  // the `alerts` RPC result

  // On reload: new rules and channels (alert states of kept rules survive). A changed
  // http.listen or token_file only takes effect at restart (logged).
  void reconfigure(const Config& config);

  // Building blocks, public for tests.
  MetricsSnapshot alert_snapshot(const boost::json::value& status, SysTime now) const;
  PrometheusSnapshot prometheus_snapshot(const boost::json::value& status) const;
  unsigned short http_port() const;  // 0 when HTTP is off
  MetricsRecorder& recorder() { return recorder_; }
  AlertManager& alert_manager() { return alerts_; }

 private:
  boost::asio::io_context& io_;
  boost::asio::any_io_executor control_;
  mutable std::mutex mu_;  // config_
  Config config_;
  ProcessRunner& runner_;
  Hooks hooks_;
  std::string version_;
  MetricsRecorder recorder_;
  AlertManager alerts_;
  std::unique_ptr<HttpServer> http_;
  std::optional<SysTime> first_evaluation_;
};

// Free space of the filesystem holding `path` (its nearest existing ancestor), in percent.
std::optional<double> disk_free_pct(const std::filesystem::path& path);

}  // namespace drd::monitoring
