#pragma once
// Daemon: the running drd. One io_context; each node has a strand (its probe
// timer and deadline) and a BlockingWorker (its blocking probe calls); all
// cluster state (health, primary, term, flags, running operations) lives on the
// control strand; engine actions run in order on the cluster worker.
//
// Data flow: probe result -> node strand -> control strand (health state,
// samples, policy decide()) -> cluster worker (promotion) -> control strand
// (store, history, events). The control server only calls dispatch() on the
// control strand; it never touches a database itself.
#include <boost/asio.hpp>
#include <boost/json.hpp>
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/clock.hpp"
#include "common/config.hpp"
#include "common/process.hpp"
#include "daemon/backup/pitr_coverage.hpp"
#include "daemon/backup/service/pg_archive_service.hpp"
#include "daemon/monitor/blocking_worker.hpp"
#include "daemon/monitor/probe_loop.hpp"
#include "daemon/failover/cluster_driver.hpp"
#include "daemon/failover/executor.hpp"
#include "daemon/cluster_state.hpp"
#include "daemon/observability/monitoring.hpp"
#include "daemon/engines/node.hpp"
#include "daemon/observability/notifier.hpp"
#include "daemon/failover/policy.hpp"
#include "daemon/rpc/method_table.hpp"
#include "daemon/store/state_store.hpp"

namespace drd {

namespace coord {
class ClusterLink;
class Coordinator;
}  // namespace coord

namespace asio = boost::asio;
namespace json = boost::json;

namespace backup {
class WalArchiver;
struct CatalogEntry;
struct Manifest;
}  // namespace backup

class Daemon {
 public:
  Daemon(asio::io_context& io, Config config, std::unique_ptr<SqliteStateStore> store, Clock& clock,
         Notifier& notifier, ProcessRunner& runner);
  ~Daemon();

  // Loads persisted flags, builds nodes, probes once, settles the primary, starts timers.
  // `ready` runs on the control strand once the first decision is made.
  // Tests and fault injection: build nodes with this instead of the engine's Node
  // (call before start()).
  using NodeFactory = ProbeLoop::NodeFactory;
  void set_node_factory(NodeFactory f) { node_factory_ = std::move(f); }
  // Tests of the failover executor: the engine's cluster driver replaced by a fake
  // (call before start()).
  using DriverFactory = std::function<std::unique_ptr<ClusterDriver>(const Config&)>;
  void set_driver_factory(DriverFactory f) { driver_factory_ = std::move(f); }

  // Binds http.listen when configured (an error means drd must not start).
  Status start_http();
  // Multi-host mode (store.type etcd, coord/cluster_link.hpp): call before start(). The
  // cluster's primary, term, history, flags and fenced nodes then live in etcd, only
  // the leading drd acts, and the peer endpoint (store.peer_listen) is bound here.
  Status set_coordinator(std::unique_ptr<coord::Coordinator> c);
  // True when this drd may act on the cluster: always with the local store, only
  // while it leads with etcd.
  bool acts() const { return !link_ || state_.leading(); }
  void start(std::function<void()> ready);
  // Stops timers and workers; flushes health samples. Idempotent.
  void stop();

  // Runs a JSON-RPC method. Must be called on the control strand (use control()).
  void dispatch(const std::string& method, const json::object& params, const Caller& caller,
                Reply reply, ProgressSink progress = {});

  // Re-reads the config file. A bad file is refused and the old config kept.
  Result<json::value> reload();

  asio::strand<asio::io_context::executor_type>& control() { return control_; }
  const Config& config() const { return config_; }
  SqliteStateStore& store() { return *store_; }  // audit, health samples, backup catalog: always local
  ClusterStore& cluster_store();  // primary, term, history, flags, fenced nodes
  std::string status_line() const;  // for sd_notify STATUS=

 private:
  // After each answer of the probe loop: alert rules, then the failover executor's round.
  void after_round();
  void schedule_housekeeping();
  void schedule_watchdog();
  void schedule_tick();

  // decisions and actions
  // The primary, term and fenced nodes as the cluster store has them (a read that fails
  // keeps what state_ held).
  void load_cluster_state();
  std::vector<NodeView> node_views() const;
  ClusterView cluster_view() const;

  // RPC methods (daemon_rpc.cpp); the handlers in rpc::methods() call them.
  friend std::span<const rpc::Method> rpc::methods();
  json::value status_json() const;
  json::value backups_summary_json() const;  // last good and next scheduled backup
  json::value node_json(const std::string& name, const ProbeLoop::NodeState& n) const;
  Result<json::value> set_flag(const std::string& flag, bool value);
  void manual_failover(const json::object& params, const std::string& mode, Reply reply);
  void rejoin(const json::object& params, Reply reply, bool clone = false);


  // Backups (daemon_backup.cpp). backup_start() runs from start() once the
  // primary is settled; backup_stop() from stop().
  struct BackupRuntime;
  void backup_start();
  void backup_stop();
  void backup_create(const json::object& params, Reply reply, ProgressSink progress);
  Result<json::value> backup_list(const json::object& params);
  void backup_verify(const json::object& params, Reply reply);
  void restore(const json::object& params, Reply reply, ProgressSink progress);
  std::shared_ptr<BackupRuntime> backup_;  // shared_ptr: complete only in daemon_backup.cpp

  // SQLite WAL archiving, restore onto the live primary, scheduled verification
  // (daemon_archive.cpp). archive_arm() runs `go` on the control strand once the archiver
  // (null: no archiving for this backup) is attached to replication.
  struct ArchiveRuntime;
  void archive_start();
  void archive_stop();
  // `required`: the backup is not taken without archiving (a new base), so not being able to
  // attach yet is not worth a warning (it is retried).
  void archive_arm(const std::string& node, std::function<void(std::shared_ptr<backup::WalArchiver>)> go,
                   bool required = false);
  void archive_full_done(const std::shared_ptr<backup::WalArchiver>& arch, const Result<backup::Manifest>& m);
  json::array backups_json(const std::vector<backup::CatalogEntry>& list, bool segments) const;
  // Point-in-time coverage (backup/pitr_coverage.hpp): after each probe round a new base
  // backup is started when one is due; a promotion makes one due where coverage was kept.
  void archive_round();
  void archive_promoted(const std::string& from, const std::string& to, const std::string& mode);
  bool pitr_expected() const;
  std::set<std::string> archiving_live() const;
  backup::Coverage pitr_coverage(const std::vector<backup::CatalogEntry>& list) const;
  json::value pitr_json() const;           // status "pitr"; null without SQLite backups
  Status pitr_check_time(SysTime to_time) const;  // refused inside a coverage gap
  void pitr_rebase(const std::string& node, Reply reply);  // daemon_backup.cpp
  void restore_onto_primary(const json::object& params, Reply reply);
  std::shared_ptr<ArchiveRuntime> archive_;

  // PostgreSQL continuous WAL archiving: pg_receivewal on the primary (backup/service/).
  std::unique_ptr<PgArchiveService> pg_archive_;

  asio::io_context& io_;
  asio::strand<asio::io_context::executor_type> control_;
  Config config_;
  std::unique_ptr<SqliteStateStore> store_;
  Clock& clock_;
  Notifier& notifier_;
  ProcessRunner& runner_;

  // Every node's probe on its schedule, health state and last answer (monitor/probe_loop.hpp);
  // LoopHost is what it may call of the daemon (daemon.cpp).
  struct LoopHost;
  std::unique_ptr<LoopHost> loop_host_;
  std::unique_ptr<ProbeLoop> probes_;
  std::unique_ptr<ClusterDriver> driver_;
  NodeFactory node_factory_;
  DriverFactory driver_factory_;
  std::unique_ptr<monitoring::Monitoring> mon_;  // alerts, /metrics, status page
  SteadyTime last_evaluation_{};
  std::unique_ptr<BlockingWorker> cluster_worker_;
  std::unique_ptr<asio::steady_timer> housekeeping_timer_, watchdog_timer_, tick_timer_, flush_timer_;

  // The cluster as this drd holds it (cluster_state.hpp): changed only by its named operations.
  ClusterState state_;
  // The primary at start and every failover (failover/executor.hpp); ExecutorHost is what it
  // may call of the daemon (daemon.cpp).
  struct ExecutorHost;
  std::unique_ptr<ExecutorHost> executor_host_;
  std::unique_ptr<FailoverExecutor> failover_;
  // Multi-host mode only (null with the local store); LinkHost is what it may call (daemon.cpp).
  struct LinkHost;
  std::unique_ptr<LinkHost> link_host_;
  std::unique_ptr<coord::ClusterLink> link_;
  bool tick_running_ = false;
  bool started_ = false;
  bool ready_ = false;  // the startup primary is settled; requests are served
  std::chrono::steady_clock::time_point ready_since_{};
  std::vector<std::function<void()>> waiting_for_ready_;  // requests that arrived before
  std::atomic<bool> stopped_{false};
  std::string last_tick_error_;
  SteadyTime started_at_;
  SteadyTime last_round_at_;
};

}  // namespace drd
