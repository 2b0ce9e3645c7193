#pragma once
// SqliteCluster: the ClusterDriver for SQLite nodes.
//
// - One SqliteReplicator ships WAL from the current primary to every standby
//   that is not fenced.
// - current_link (a symlink) names the primary; it is replaced atomically
//   (symlink to a temporary name + rename) so an application reopening it sees
//   the old or the new primary, never nothing.
// - Fencing: drd holds the old primary's write lock, so application writers
//   still connected to it get SQLITE_BUSY and reopen through the link. The old
//   replicator object is kept as the lock holder after a failover (its
//   connection holds the inode even if the file was renamed away); a fenced
//   file that reappears at its path is locked through a new connection.
//   Holders are kept until drd stops: releasing the lock on an inode that
//   applications may still have open would let their writes land there.
// - Persistent fence (daemon/engines/sqlite/sqlite_fence.hpp): every fenced file is also made
//   read-only on disk with a `<db>.drd-fenced` record, so the fence holds while drd is
//   down; only rejoin/clone (or a promotion of that node) lifts it.
// Threading: as ClusterDriver (one worker thread); replicas() is locked.
#include <sqlite3.h>

#include <map>
#include <memory>
#include <mutex>
#include <set>

#include "daemon/failover/cluster_driver.hpp"
#include "daemon/engines/sqlite/replication/sqlite_replicator.hpp"

namespace drd {

class SqliteCluster : public ClusterDriver {
 public:
  explicit SqliteCluster(const Config& cfg);
  ~SqliteCluster() override;

  Status attach(const std::string& primary, const std::vector<std::string>& fenced) override;
  Status tick() override;
  std::map<std::string, ReplicaInfo> replicas() const override;
  Result<PromoteOutcome> promote(const PromoteRequest& req) override;
  Status rejoin(const std::string& node, bool reclone) override;
  Status clone(const std::string& node) override;
  void allow_discard(const std::string& node) override;
  std::string primary_problem() const override;
  void detach() override;
  Millis tick_interval() const override { return Millis(5); }
  Status add_wal_tap(std::shared_ptr<replication::WalTap> tap) override;
  Status begin_primary_restore() override;
  Status end_primary_restore(bool replaced) override;

 private:
  const NodeConfig* node(const std::string& name) const;
  Status start_replicator();
  Status repoint_link(const std::string& primary);
  void publish();  // refreshes the replicas() snapshot
  void fence_reappeared();
  void hold_fence_by_path(const std::string& name);
  void persist_fence(const std::string& name, const std::string& reason);
  void persist_fence_at(const std::filesystem::path& file, const std::string& reason);
  void salvage_interrupted_promotion(const std::filesystem::path& target);
  replication::ReplicatorOptions replicator_options() const;
  void note_primary_problem(const std::string& why);
  void log_report(const replication::StepReport& rep);
  Status begin_primary_term(const std::string& name);
  bool already_primary(const std::string& name) const;
  void fence_removed_primary(const std::string& name, PromoteOutcome& out);

  std::vector<NodeConfig> nodes_;
  std::optional<std::filesystem::path> link_;
  std::string primary_;
  std::set<std::string> fenced_;
  std::unique_ptr<replication::SqliteReplicator> repl_;
  std::vector<std::string> repl_standbys_;  // node names, in the replicator's order
  bool needs_start_ = false;
  bool restoring_ = false;  // begin_primary_restore(): replication paused, primary fenced
  std::string last_start_error_;
  std::chrono::steady_clock::time_point next_start_attempt_{};
  std::chrono::steady_clock::time_point next_fence_attempt_{};
  std::chrono::steady_clock::time_point last_checkpoint_{};
  std::uint64_t checkpointed_at_bytes_ = 0;
  std::uint64_t last_end_bytes_ = 0;
  std::chrono::steady_clock::time_point last_change_{};
  std::int64_t term_ = 0;              // the term of the last promotion this driver ran
  std::uint64_t promoted_at_bytes_ = 0;  // the current primary's position when this driver promoted it
  std::set<std::string> discard_;      // nodes whose copy the operator allowed drd to overwrite
  std::string primary_problem_;        // see ClusterDriver::primary_problem(); under mu_
  // Standbys' histories read while replication could not start (the primary is lost).
  std::map<std::string, replication::FileHistory> idle_histories_;
  std::map<std::string, std::string> apply_errors_logged_;  // the last apply error logged per standby

  // Lock holders on fenced inodes, kept until drd stops.
  std::vector<std::unique_ptr<replication::SqliteReplicator>> retired_;
  std::map<std::string, sqlite3*> path_fences_;
  // Fenced nodes whose write lock a retired replicator holds (no second lock by path:
  // it would only wait for ours).
  std::set<std::string> held_by_retired_;
  std::map<std::string, std::string> fence_errors_logged_;  // per file: the last persistent-fence error logged

  mutable std::mutex mu_;
  std::map<std::string, ReplicaInfo> snapshot_;
};

}  // namespace drd
