#pragma once
// ClusterDriver: the engine-specific actions on the cluster as a whole
// (SQLite: WAL shipping, the current_link, fencing by lock; PostgreSQL:
// pg_promote, repointing standbys, fencing by read-only).
//
// Threading: the daemon calls every method from one dedicated worker thread,
// in order (so tick() never runs during promote()). replicas() may be called
// from any thread and must return a consistent snapshot.
//
// attach() is "make reality match the store": after a crash at any point of a
// failover, calling attach(primary) with the stored primary converges (the
// store is written before the promotion starts).
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/config.hpp"
#include "common/result.hpp"

namespace drd {

namespace replication {
class WalTap;
}

struct ReplicaInfo {
  std::optional<std::uint64_t> position;
  std::uint64_t lag_bytes = 0;
  double lag_ms = 0;
  // PostgreSQL: WAL the standby flushed but has not replayed (primary's current LSN minus its
  // replay LSN), and whether its replay is paused (pg_wal_replay_pause()). lag_bytes counts
  // flushed WAL only, so a paused standby shows lag_bytes 0 while replaying nothing.
  std::optional<std::uint64_t> replay_lag_bytes;
  bool replay_paused = false;
  bool streaming = false;
  // A synchronous standby (PostgreSQL sync_state = sync) as last seen on the
  // primary; kept while the primary is unreachable, for the failover policy.
  bool sync = false;
  std::string note;  // last replication error or state, for status
  // SQLite: the file's own history (replication/history.hpp), so the most advanced copy
  // can be chosen even when positions are unknown, and why drd will not overwrite it.
  bool history_known = false;
  std::int64_t history_term = 0;
  std::uint64_t history_epoch = 0;
  std::string history_problem;  // non-empty: not a copy of the primary's history (not a candidate)
  bool apply_failing = false;   // the last apply failed (full disk, read-only, corrupt): not current
};

struct PromoteRequest {
  std::string old_primary;
  std::string target;
  bool old_primary_reachable = false;  // try to fence it / salvage from it
  bool switchover = false;             // lossless: fence, wait until caught up, then promote
  Millis timeout{30'000};
  std::int64_t term = 0;               // the term claimed for this promotion
};

struct PromoteOutcome {
  std::uint64_t salvaged_bytes = 0;   // frames/WAL saved from the old primary
  // What the target was behind the old primary when the failover began, before the last
  // shipping and salvage (what those had to bring over; PostgreSQL: as last seen).
  std::uint64_t lag_bytes = 0;
  // The target's own position when it was promoted (after the last shipping), in the units
  // of status `position`; unknown when the engine could not tell.
  std::optional<std::uint64_t> position;
  bool old_primary_fenced = false;
  std::vector<std::string> notes;     // steps taken, for the log
};

// What restore_standby() did: the node streams from `streaming_from`.
struct StandbyRestoreOutcome {
  std::string streaming_from;
  std::string detail;
};

// What restore_primary() did: the primary's new timeline, and each standby's re-clone
// ("" = streaming again, else why not).
struct PrimaryRestoreOutcome {
  std::string detail;
  std::map<std::string, std::string> standbys;
};

class ClusterDriver {
 public:
  virtual ~ClusterDriver() = default;
  virtual Status attach(const std::string& primary, const std::vector<std::string>& fenced) = 0;
  virtual Status tick() = 0;
  virtual std::map<std::string, ReplicaInfo> replicas() const = 0;
  virtual Result<PromoteOutcome> promote(const PromoteRequest& req) = 0;
  virtual Status rejoin(const std::string& node, bool reclone) = 0;
  virtual Status clone(const std::string& node) = 0;
  // The operator's word that `node`'s copy may be overwritten whatever history it holds
  // (`drctl rejoin NODE --discard`); applies to the next rejoin of that node.
  virtual void allow_discard(const std::string& node) { (void)node; }
  // Non-empty when the primary's copy is known to be lost although its file may still
  // answer probes (SQLite: another file at its path, an older history than a standby's).
  // Any thread.
  virtual std::string primary_problem() const { return {}; }
  virtual void detach() = 0;
  // How often tick() should run; zero when the engine needs no ticking.
  virtual Millis tick_interval() const = 0;
  // Synchronous replication as the driver runs it: "off" (not configured, or
  // the engine has none), "on" (commits wait for a standby), "degraded" (no
  // standby left, commits no longer wait). Any thread.
  virtual std::string synchronous_state() const { return "off"; }
  // Called from another thread just before a promote() is queued: a tick()
  // running now should end as soon as it can (its answers are not needed), so
  // the promotion does not wait behind it. promote() clears the request.
  virtual void make_way() {}

  // SQLite: every transaction committed on the primary after this call also goes to `tap`
  // (WAL archiving for incremental backups) until the tap finishes or replication restarts.
  virtual Status add_wal_tap(std::shared_ptr<replication::WalTap>) {
    return make_error(Errc::unsupported, "WAL archiving through drd's replication is for SQLite clusters");
  }
  // Restore onto the live primary: begin fences it (applications' writes fail with
  // SQLITE_BUSY) and pauses replication; end(replaced=true) restarts replication on the
  // restored file and re-seeds every standby, end(false) lifts the fence and resumes.
  virtual Status begin_primary_restore() {
    return make_error(Errc::unsupported, "restoring onto the live primary is supported for SQLite clusters");
  }
  virtual Status end_primary_restore(bool replaced) {
    (void)replaced;
    return make_error(Errc::unsupported, "restoring onto the live primary is supported for SQLite clusters");
  }
  // Re-seeds standby `node` from a restored base backup already prepared in `prepared` (a
  // folder beside its data_dir, on the same filesystem): stops the server, swaps the folders,
  // starts it as a standby of the current primary and waits until it streams. On failure the
  // old data folder is put back and started again. Folders left to delete (the old one, a
  // failed copy, `prepared` if unused) are appended to `discard`: the caller removes them off
  // this worker.
  // Rolls primary `node` back to a copy prepared in `prepared` (recovered and promoted onto
  // `timeline`, beside its data_dir): swaps the folders, starts it as the primary, then re-clones
  // every standby from it (their WAL is of the abandoned history). A standby that cannot be
  // re-cloned is reported in the outcome, not an error. Folders to delete go to `discard`.
  virtual Result<PrimaryRestoreOutcome> restore_primary(const std::string& node, const std::string& prepared,
                                                        std::uint32_t timeline, std::vector<std::string>& discard) {
    (void)timeline;
    discard.push_back(prepared);
    return make_error(Errc::unsupported, "rolling primary " + node + " back to a physical backup is supported for "
                                         "PostgreSQL clusters only");
  }
  virtual Result<StandbyRestoreOutcome> restore_standby(const std::string& node, const std::string& prepared,
                                                        std::vector<std::string>& discard) {
    discard.push_back(prepared);
    return make_error(Errc::unsupported, "re-seeding standby " + node + " from a physical backup is supported for "
                                         "PostgreSQL clusters only",
                      "restore with --target PATH into a new file");
  }
};

}  // namespace drd
