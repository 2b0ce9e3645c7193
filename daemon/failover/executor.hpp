#pragma once
// FailoverExecutor: choosing the primary at start, and running failovers (automatic,
// manual, switchover), with their records in the cluster store.
//
// Owns: the failover phase (one enum: idle, refreshing the standbys before an automatic
//   failover, promoting), the last decision and why, the start hold (PostgreSQL: several
//   primaries and no way to tell which to keep), the cluster's system identifier, and the
//   SQLite nodes whose promotion failed.
// Strand: the control strand, every method. The promotion itself runs on the cluster worker
//   (Host::cluster_worker()) and its outcome comes back to the control strand.
// May call: the pure policy (policy.hpp, postgres_identity.hpp), the ClusterState's named
//   operations, the cluster store, the ClusterDriver (only on the cluster worker), and the
//   Host below. Nothing else in the daemon.
// On failure: the store is written before the engine acts, so a drd killed half-way converges
//   on restart (attach() makes reality match the store, and the pending record becomes a
//   history row); a promotion that fails is logged (failover_failed) and, for SQLite, the node
//   counts as a lost primary so the next candidate is promoted at once.
#include <boost/asio.hpp>
#include <boost/json.hpp>

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.hpp"
#include "common/config.hpp"
#include "daemon/cluster_state.hpp"
#include "daemon/engines/node.hpp"
#include "daemon/failover/cluster_driver.hpp"
#include "daemon/failover/policy.hpp"
#include "daemon/monitor/blocking_worker.hpp"
#include "daemon/rpc/method_table.hpp"
#include "daemon/store/state_store.hpp"

namespace drd {

class FailoverExecutor {
 public:
  // What the executor may ask of the rest of the daemon; every call on the control strand.
  class Host {
   public:
    virtual ~Host() = default;
    virtual ClusterStore& cluster_store() = 0;
    virtual ClusterDriver* driver() = 0;               // null: this engine cannot promote
    virtual BlockingWorker* cluster_worker() = 0;      // null before start
    virtual std::vector<std::string> node_names() const = 0;  // declaration order
    virtual const ProbeResult* last_probe(const std::string& node) const = 0;
    virtual std::vector<NodeView> node_views() const = 0;
    virtual ClusterView cluster_view() const = 0;
    // Probes every healthy, non-fenced standby once more (bounded); `done` on the control strand.
    virtual void refresh_standbys(std::function<void()> done) = 0;
    virtual void after_round() = 0;    // the daemon's round of decisions, again
    virtual void schedule_tick() = 0;  // the engine's replication step, soon
    virtual bool ready() const = 0;    // the startup primary is settled
    // A failover's history row was written (`promoted_now`: by this drd, just now; false: a
    // record of one interrupted by a drd stop).
    virtual void failover_recorded(const FailoverRecord& r, bool promoted_now) = 0;
    virtual void status_changed() = 0;  // sd_notify STATUS=
    // Multi-host mode (daemon/coord/): whether this drd acts, and whether the leader may fail
    // over now (false + why while the primary's host drd still vouches for its database).
    virtual bool acts() const = 0;
    virtual bool coord_allows_failover(std::string& why) const = 0;
    virtual std::optional<std::string> coord_name() const = 0;  // this drd's name with etcd
    virtual bool primary_host_fenced() const = 0;  // its host drd left and fenced it
  };

  enum class Phase { idle, refreshing, promoting };

  FailoverExecutor(Host& host, boost::asio::strand<boost::asio::io_context::executor_type>& control, Clock& clock,
                   const Config& config, ClusterState& state, SqliteStateStore& facts);

  // Settles the primary at start (or when this drd takes the lead): elects one on a first
  // start, keeps the recorded one when healthy, fails over when it is not and that is
  // allowed, then attaches the engine and runs `ready`.
  void settle_startup(std::function<void()> ready);
  // After each round of probes: the start hold asked again, the system identifier learned,
  // policy decide(), and an automatic failover when it says so.
  void round();
  // A failover to `target` (mode auto | manual | switchover), checked against the policy
  // unless automatic. `reply` gets the history row or the refusal.
  void begin(const std::string& target, const std::string& mode, const std::string& reason, bool force,
             Reply reply);

  Phase phase() const { return phase_; }
  bool promoting() const { return phase_ == Phase::promoting; }
  // Whether this round's automatic decision is taken now
  // (false: a start hold, no primary, or standbys being asked again).
  bool deciding() const;
  const Decision& last_decision() const { return last_decision_; }
  const std::optional<std::string>& system_id() const { return system_id_; }
  // SQLite: why `node`'s promotion failed (it counts as a lost primary), nullopt if it did not.
  std::optional<std::string> failed_promotion(const std::string& node) const;
  void forget_failed_promotion(const std::string& node) { failed_promotions_.erase(node); }

 private:
  bool pg_cluster() const;
  bool settle_pg_identity();
  void learn_system_identifier();
  void record_interrupted(const std::string& outcome);
  void finish(const std::string& from, const std::string& to, const std::string& mode, const std::string& reason,
              SteadyTime started, Result<PromoteOutcome> outcome, std::int64_t term, Reply reply);

  Host& host_;
  boost::asio::strand<boost::asio::io_context::executor_type>& control_;
  Clock& clock_;
  const Config& config_;
  ClusterState& state_;
  SqliteStateStore& facts_;  // the system identifier: a fact of this drd's state file

  Phase phase_ = Phase::idle;
  Decision last_decision_;
  std::string last_logged_reason_;
  // PostgreSQL: the system identifier of the cluster's servers (stored, or learned at this
  // start), and why drd waits for an operator instead of electing a primary ("" = it does not).
  std::optional<std::string> system_id_;
  bool system_id_stored_ = false;
  std::string start_hold_;
  SteadyTime start_hold_logged_at_{};
  std::map<std::string, std::string> failed_promotions_;
};

}  // namespace drd
