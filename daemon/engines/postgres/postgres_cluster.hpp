#pragma once
// PostgresCluster: the ClusterDriver for PostgreSQL 15 streaming replication.
//
// - Owns one PostgresNode per configured node (its own connections, separate
//   from the daemon's probes), built from the Config and the ProcessRunner.
// - attach()/convergence: the stored primary is made a writable primary
//   (promoted if it is still a standby: a failover interrupted by a crash),
//   reachable writable fenced nodes are fenced again, every other reachable
//   standby is pointed at the primary (primary_conninfo with
//   application_name = node name, so pg_stat_replication rows match nodes).
// - tick(): probes every node in parallel, publishes the replicas() snapshot,
//   fences at once any other node that answers as a writable primary (a
//   returning old primary: split brain), re-points standbys that stopped
//   streaming, and in synchronous mode manages synchronous_standby_names on
//   the primary (degrading to asynchronous after synchronous_degrade_after).
// - promote(): failover (fence the old primary when reachable, pg_promote the
//   target, repoint the others) or switchover (fence, wait until the target
//   replayed the old primary's flushed WAL, promote, repoint, rejoin the old
//   primary with pg_rewind).
//
// Ownership: borrows the ProcessRunner (must outlive the driver).
// Threading: as ClusterDriver: one worker thread calls everything in order;
// replicas() is locked and may be called from any thread. Every blocking call
// is bounded by monitoring.timeout (probes) or the request's timeout.
// Failure: errors name the node and the step; no message holds a password.
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "common/process.hpp"
#include "daemon/failover/cluster_driver.hpp"
#include "daemon/engines/postgres/postgres_cluster_logic.hpp"
#include "daemon/engines/postgres/postgres_identity.hpp"
#include "daemon/engines/postgres/postgres_node.hpp"

namespace drd {

class PostgresCluster : public ClusterDriver {
 public:
  PostgresCluster(const Config& cfg, ProcessRunner& runner);
  ~PostgresCluster() override;

  Status attach(const std::string& primary, const std::vector<std::string>& fenced) override;
  Status tick() override;
  std::map<std::string, ReplicaInfo> replicas() const override;
  Result<PromoteOutcome> promote(const PromoteRequest& req) override;
  Status rejoin(const std::string& node, bool reclone) override;
  Status clone(const std::string& node) override;
  Result<StandbyRestoreOutcome> restore_standby(const std::string& node, const std::string& prepared,
                                                std::vector<std::string>& discard) override;
  Result<PrimaryRestoreOutcome> restore_primary(const std::string& node, const std::string& prepared,
                                                std::uint32_t timeline, std::vector<std::string>& discard) override;
  void detach() override;
  Millis tick_interval() const override;
  std::string synchronous_state() const override;
  void make_way() override { make_way_ = true; }
  // The cluster's system identifier as drd recorded it (from its state store). Without it the
  // driver learns it from the primary's probe. Servers with another one are outsiders: never
  // fenced, re-pointed, re-cloned or listed as synchronous standbys (postgres_identity.hpp).
  void set_system_identifier(const std::optional<std::string>& id);

 private:
  struct Member {
    NodeConfig cfg;
    std::unique_ptr<PostgresNode> node;
    bool last_probe_failed = false;
    std::optional<SteadyTime> not_streaming_since;
    SteadyTime next_follow_attempt{};
  };

  Member* member(const std::string& name);
  // After a node was rebuilt as a standby (rejoin, restore): a fence recorded in its own
  // postgresql.auto.conf survives (its config is kept), so it is lifted, and drd's fence and
  // streaming state for it start over. `action` names the step in the warning.
  void settle_rebuilt_standby(Member& m, const std::string& name, const std::string& action);
  std::vector<std::string> names() const;
  // Probes every node in parallel (a node that failed last time gets a short timeout).
  // With `abortable`, the probes give up once make_way() was called.
  pgha::Probes probe_all(const std::set<std::string>& only = {}, bool abortable = false);
  // "Make reality match the store" with one round of probes (attach, and tick after a failure).
  Status converge(const pgha::Probes& probes);
  // Fences `name` because it answered as a writable primary; logs event "fence".
  void fence_second_primary(const std::string& name, const std::string& why);
  // Before finishing a promotion a crash interrupted: fence every other node that still
  // takes writes and wait (bounded) until `target` replayed what they flushed.
  void fence_and_catch_up(Member& target, const pgha::Probes& probes);
  // Points the named standbys at primary_, in parallel; one note per node.
  void repoint_standbys(const std::vector<std::string>& which, Millis timeout, std::vector<std::string>& notes);
  // Every non-fenced node other than primary_ and `except`.
  std::vector<std::string> standbys_except(const std::string& except) const;
  // Synchronous mode: keeps synchronous_standby_names on the primary right.
  void manage_sync(const pgha::Probes& probes);
  Status apply_sync_names(const std::string& value);
  std::vector<std::string> sync_candidates() const;
  void publish(const pgha::Probes& probes);
  // Learns the system identifier (from the primary) and sorts the answering nodes into
  // members and outsiders_.
  void classify(const pgha::Probes& probes);
  bool outsider(const std::string& name) const { return outsiders_.count(name) > 0; }
  Result<PromoteOutcome> switchover(const PromoteRequest& req, Member& old, Member& target, PromoteOutcome out);

  std::vector<Member> members_;  // config order
  Millis timeout_;
  Millis interval_;
  bool synchronous_;
  Millis degrade_after_;
  std::uint64_t max_lag_bytes_;

  std::string primary_;
  std::set<std::string> fenced_;
  std::map<std::string, std::string> fence_notes_;
  std::optional<std::string> system_id_;
  std::map<std::string, std::string> outsiders_;  // node -> why it is not a member
  bool needs_converge_ = false;
  SteadyTime next_converge_{};
  pgha::SyncState sync_state_;
  std::optional<std::string> applied_sync_names_;  // last value set on primary_

  std::atomic<bool> make_way_{false};  // a promotion waits: tick probes give up
  mutable std::mutex mu_;
  std::map<std::string, ReplicaInfo> snapshot_;
  bool sync_degraded_published_ = false;  // under mu_
};

}  // namespace drd
