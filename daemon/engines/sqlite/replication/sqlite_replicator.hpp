#pragma once
// Continuous physical WAL shipping from one primary SQLite file to N standby
// files, plus the primitives a failover needs. How it works and why it is
// crash-safe: docs/sqlite-replication.md.
//
// Ownership: the replicator owns two connections to the primary (a "pin" that
// holds a read transaction so no other process can restart the WAL under it,
// and a "lock" connection used for BEGIN IMMEDIATE), a read-only descriptor on
// the primary's -wal, and the standby files with their `<standby>.drd-pos`
// position files. Nothing is opened before start(); stop() (or the destructor)
// releases everything. Its connections never checkpoint on close, so the WAL
// survives a drd restart and positions stay valid.
//
// Threading: not thread-safe. The owner calls every method from one thread or
// strand at a time. step() and checkpoint() block on file I/O; step() is cheap
// when nothing changed (a 32-byte header read and a short frame read).
//
// Failure behaviour: methods return an Error naming the file involved; the
// replicator stays usable and the next call retries. A standby that fails to
// apply keeps its last position (its last_error says why) and is retried on the
// next step; a standby whose position can no longer be continued (WAL reset
// it did not cause, file replaced, missing standby) is re-seeded from a
// consistent snapshot, at most once per `reseed_retry` after a failure.
// The write lock is taken only briefly: in start(), checkpoint(), when a
// standby needs (re)seeding (and then only to read the WAL end; the copy runs
// under the read pin while writers continue), and by fence_primary().
#include <chrono>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "daemon/engines/sqlite/replication/history.hpp"
#include "daemon/engines/sqlite/replication/position_file.hpp"
#include "daemon/engines/sqlite/replication/sqlite_util.hpp"
#include "daemon/engines/sqlite/replication/standby_ops.hpp"
#include "daemon/engines/sqlite/replication/wal_reader.hpp"
#include "daemon/engines/sqlite/replication/wal_tap.hpp"

namespace drd::replication {

struct StandbyStatus {
  std::string path;
  bool seeded = false;             // has a valid position (false while waiting for a (re)seed)
  std::uint64_t applied_bytes = 0; // cumulative WAL bytes applied (24 + page size per frame)
  std::uint64_t lag_bytes = 0;     // primary committed WAL end minus applied_bytes
  double lag_ms = 0;               // age of the oldest commit not yet applied; 0 when caught up
  std::string last_error;          // empty when the last attempt succeeded
  std::uint64_t reseeds = 0;       // re-seeds in this instance (first seeds of a missing standby excluded)
  std::uint64_t full_seeds = 0;         // seeds that copied the whole snapshot (this instance)
  std::uint64_t incremental_seeds = 0;  // seeds that rewrote only the pages that differed
  std::uint64_t seed_bytes_written = 0; // page bytes all those seeds wrote to this standby
  std::string refused;             // non-empty: drd will not overwrite this file, and why (history.hpp)
  bool history_known = false;      // `history` was read from the file
  FileHistory history;             // the file's own history, as last read
};

struct StepReport {
  std::size_t transactions = 0;    // commits newly found on the primary
  std::size_t frames = 0;          // committed frames newly found on the primary
  bool reseeded = false;           // at least one standby was (re)seeded
  std::vector<std::string> notes;  // things worth logging (WAL switch, resets, reseeds)
  std::vector<std::string> warnings;  // things that lose redundancy or data if nobody acts (refused overwrites)
};

struct ReplicatorOptions {
  int lock_timeout_ms = 5000;                              // wait for the primary's write lock
  std::chrono::milliseconds reseed_retry{1000};            // pause after a failed (re)seed
  // The database's own history (history.hpp): stamp the primary, refuse to overwrite a
  // standby whose history the primary does not continue, notice a primary that is not
  // the most advanced copy. Off for a replicator that only reads a former primary.
  bool manage_history = true;
  std::int64_t term = 0;            // recorded when the primary begins a term here
  std::string node = "primary";     // the primary's node name, recorded with its term
  std::chrono::milliseconds stamp_interval{100};  // at most this long between a commit and its stamp
  std::chrono::milliseconds refused_retry{5000};  // how often a refused overwrite is looked at again
  // Standbys the operator allowed drd to overwrite whatever they hold (`rejoin --discard`).
  std::vector<std::filesystem::path> discard;
  // Cumulative WAL bytes before the primary's current WAL: a promoted standby's position,
  // so positions (and the lag figures built on them) continue across a failover instead of
  // starting again at 0. Standbys' position files raise it at start when they say more.
  std::uint64_t base_bytes = 0;
  // Seed a standby drd left as it is (position file matching the file) by rewriting only the
  // pages that differ from the primary's snapshot instead of copying the whole database.
  bool incremental_seed = true;
};

class SqliteReplicator {
 public:
  // primary: the primary database; standbys: their paths. Nothing is opened until start().
  SqliteReplicator(std::filesystem::path primary, std::vector<std::filesystem::path> standbys,
                   ReplicatorOptions options = {});
  ~SqliteReplicator();
  SqliteReplicator(const SqliteReplicator&) = delete;
  SqliteReplicator& operator=(const SqliteReplicator&) = delete;

  // Opens and pins the primary (switching it to WAL mode if needed; a note
  // says so), loads standby positions, brings continuable standbys up to the
  // WAL end and seeds missing or non-continuable ones. Notes go to *report.
  Status start(StepReport* report = nullptr);

  // Ships all whole transactions committed since the last step to every
  // standby. Call every few ms. An error means nothing could be read from the
  // primary (e.g. its file is gone); per-standby failures are in standbys().
  Result<StepReport> step();

  // drd's own checkpoint (call periodically, e.g. when the WAL exceeds a few
  // MiB): under the write lock copies everything, runs a PASSIVE checkpoint,
  // moves the read pin to the end. truncate=true additionally restarts and
  // shrinks the WAL when it was fully checkpointed, by committing a no-op
  // write (user_version rewritten with its own value) while holding the lock;
  // use it when the primary is idle. Not available while fenced (plain
  // PASSIVE is done instead).
  Status checkpoint(bool truncate);

  std::vector<StandbyStatus> standbys() const;
  // Cumulative committed WAL bytes seen on the primary (same units as applied_bytes).
  std::uint64_t primary_wal_end_bytes() const;
  // Reads what was committed on the primary since the last step, without shipping it, and
  // returns the committed end (what a failover measures the target's lag against).
  Result<std::uint64_t> read_committed_end();

  // Failover primitives.
  // Holds the primary's write lock through drd's already-open connection
  // (works even if the path was renamed away: the connection holds the
  // inode), so application writers get SQLITE_BUSY. Waits lock_timeout_ms for
  // a running writer to finish.
  Status fence_primary();
  Status release_fence();
  bool fenced() const { return fenced_; }

  // Reads whatever committed frames can still be read from the (failed)
  // primary's WAL through the open descriptor and applies them to `standby`
  // (one of this replicator's standbys). Returns the WAL bytes applied by this
  // call; an error says why nothing could be saved (standby not positioned,
  // WAL reset, unreadable file).
  Result<std::uint64_t> salvage_into(const std::filesystem::path& standby);

  // Feeds every transaction committed after this call to `tap` (see wal_tap.hpp) until the
  // tap reports finished() or the replicator stops (which reports a gap).
  void add_tap(std::shared_ptr<WalTap> tap);
  void remove_tap(const std::shared_ptr<WalTap>& tap);
  void end_taps(const std::string& why) { tap_gap(why); }

  // Non-empty when the file at the primary's path is not the most advanced copy of the
  // database any more: replaced by another file (new inode, another or an older history),
  // or a standby holds a longer history. Says why; the cluster treats the primary as lost.
  // While set, drd keeps shipping through its open descriptors and never stamps.
  const std::string& primary_lost() const { return lost_; }
  const FileHistory& primary_history() const { return primary_history_; }
  // From now on this replicator only holds a former primary's lock: it never writes a
  // stamp there (that would give the former primary history the new primary lacks).
  void retire() { opts_.manage_history = false; }

  // Stamps the primary if commits arrived since the last stamp (see history.hpp), then
  // releases the fence and the pin and closes everything. Idempotent.
  void stop();

 private:
  struct Standby {
    std::filesystem::path path;
    bool seeded = false;
    bool needs_seed = true;
    bool ever_seeded = false;
    StandbyPosition pos;
    std::string last_error;
    std::uint64_t reseeds = 0;
    std::chrono::steady_clock::time_point next_seed_attempt{};
    std::string refused;  // why drd will not overwrite it (history.hpp); empty when it may
    bool history_known = false;
    FileHistory history;
    std::uint64_t full_seeds = 0, incremental_seeds = 0, seed_bytes_written = 0;
  };
  // Where the read pin was taken under the write lock with everything up to
  // there copied: while it is held, a WAL restart can only follow this point.
  struct Anchor {
    bool valid = false;
    bool has_header = false;
    ChainState at;
  };

  Status open_primary(StepReport& rep);
  Status locked_sync(bool truncate, StepReport& rep);
  Status initial_scan_locked(StepReport& rep);
  Status rescan_from_header(std::uint32_t max_frames, bool reseed_all, StepReport& rep);
  Status reconcile_with_index(std::uint32_t mx, StepReport& rep);
  void reseed_if_off_chain(StepReport& rep);
  void adopt_generation(const WalHeader* h, StepReport& rep);
  bool lossless_restart(const WalHeader* h) const;
  Status refresh(StepReport& rep);
  Status check_identity(StepReport& rep);
  void ship(Standby& s, StepReport& rep);
  Status apply(Standby& s);
  Status seed(Standby& s, StepReport& rep);
  Result<PatchStats> patch_from_pin(const Standby& s);
  void restart_wal(StepReport& rep);
  Status begin_pin();
  void end_pin();
  void note_commits(std::size_t tx, std::uint32_t old_frames, StepReport& rep);
  bool same_gen(const StandbyPosition& p) const;
  bool needs_locked_sync() const;
  std::uint64_t bytes_at(std::uint32_t frames) const;
  StandbyPosition position_here() const;
  void mark_reset(StepReport& rep, const std::string& why);
  void tap_frames(const ChainState& from);
  void tap_gap(const std::string& why);
  Status settle_history(StepReport& rep);
  void read_standby_history(Standby& s);
  bool may_seed(Standby& s, StepReport& rep);
  void refuse(Standby& s, const std::string& why, StepReport& rep);
  void note_lost(const std::string& why, StepReport& rep);
  bool stamp_allowed() const;
  void maybe_stamp(StepReport& rep, bool at_stop);
  bool discarded(const Standby& s) const;

  std::filesystem::path primary_;
  std::string primary_key_;
  ReplicatorOptions opts_;
  std::vector<Standby> standbys_;

  SqliteDb pin_;
  SqliteDb lock_;
  WalFile wal_;
  FileId db_id_, wal_id_;
  bool started_ = false;
  bool scanned_ = false;
  bool pinned_ = false;
  bool fenced_ = false;
  bool path_gone_noted_ = false;  // the primary's path vanished; noted once
  bool reset_needed_ = false;
  Anchor anchor_;

  // Primary scan state: the last commit frame of the current generation.
  bool has_header_ = false;
  ChainState committed_;
  std::uint32_t page_size_ = 0;
  std::uint64_t gen_base_bytes_ = 0;  // cumulative bytes before frame 0 of this generation
  std::deque<std::pair<std::uint64_t, std::chrono::steady_clock::time_point>> commits_seen_;
  std::vector<std::shared_ptr<WalTap>> taps_;

  // The primary's history as drd last read or stamped it, and the stamping state.
  FileHistory primary_history_;
  std::string lost_;
  bool adopting_ = false;  // this start gave the database its history (copies without one may go)
  std::chrono::steady_clock::time_point last_stamp_{};
  std::uint64_t stamped_bytes_ = 0;  // committed WAL end covered by the last stamp
};

// Makes `db` a valid WAL-mode database with no -wal/-shm leftovers, passing
// quick_check, and removes its position file (used when promoting a standby).
Status finalize_standby_for_promotion(const std::filesystem::path& db);
// Copies a consistent snapshot of `src` into `dst` atomically (temp + rename);
// the copy is in WAL mode. Writers on src may continue meanwhile.
Status seed_copy(const std::filesystem::path& src, const std::filesystem::path& dst);

}  // namespace drd::replication
