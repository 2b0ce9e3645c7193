#include "daemon/engines/sqlite/replication/sqlite_replicator.hpp"

#include <algorithm>
#include <unordered_map>
#include <thread>

#include "daemon/engines/sqlite/replication/history_table.hpp"
#include "daemon/engines/sqlite/replication/standby_ops.hpp"
#include "daemon/engines/sqlite/replication/wal_writer.hpp"

namespace drd::replication {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {
// A restart bumps salt-1 by one; a few TRUNCATE checkpoints of an empty WAL
// can bump it more. A larger jump is not SQLite restarting its own WAL.
constexpr std::uint32_t kMaxSaltStep = 64;
constexpr std::size_t kMaxCommitMarks = 100000;

// A -wal with frames in it: an apply interrupted by a crash (drd's own checkpoint may then
// have changed the file). Readers (probes, applications) leave an empty one behind.
bool pending_wal(const fs::path& standby) {
  std::error_code ec;
  auto size = fs::file_size(with_suffix(standby, "-wal"), ec);
  return !ec && size > 0;
}

bool same_chain_point(const ChainState& a, const ChainState& b) {
  return a.salt1 == b.salt1 && a.salt2 == b.salt2 && a.frames == b.frames && a.checksum == b.checksum;
}
}  // namespace

SqliteReplicator::SqliteReplicator(fs::path primary, std::vector<fs::path> standbys, ReplicatorOptions options)
    : primary_(std::move(primary)), opts_(options) {
  for (auto& p : standbys) {
    Standby s;
    s.path = std::move(p);
    standbys_.push_back(std::move(s));
  }
}

SqliteReplicator::~SqliteReplicator() { stop(); }

std::uint64_t SqliteReplicator::bytes_at(std::uint32_t frames) const {
  return gen_base_bytes_ + std::uint64_t(frames) * frame_size(page_size_);
}

StandbyPosition SqliteReplicator::position_here() const {
  StandbyPosition p;
  p.primary = primary_key_;
  p.has_header = has_header_;
  p.chain = committed_;
  p.applied_bytes = bytes_at(committed_.frames);
  return p;
}

bool SqliteReplicator::same_gen(const StandbyPosition& p) const {
  if (p.has_header != has_header_ || p.chain.page_size != page_size_) return false;
  if (!has_header_) return true;
  return p.chain.salt1 == committed_.salt1 && p.chain.salt2 == committed_.salt2 &&
         p.chain.big_endian == committed_.big_endian;
}

void SqliteReplicator::mark_reset(StepReport& rep, const std::string& why) {
  if (!reset_needed_) rep.notes.push_back(why + "; every standby will be re-seeded");
  reset_needed_ = true;
  tap_gap(why);
}

void SqliteReplicator::add_tap(std::shared_ptr<WalTap> tap) { taps_.push_back(std::move(tap)); }

void SqliteReplicator::remove_tap(const std::shared_ptr<WalTap>& tap) {
  taps_.erase(std::remove(taps_.begin(), taps_.end(), tap), taps_.end());
}

void SqliteReplicator::tap_gap(const std::string& why) {
  for (auto& t : taps_) t->gap(why);
  taps_.clear();  // nothing after a gap continues what a tap has
}

// Hands the frames committed after `from` (up to committed_) to every tap. Read once for all
// taps; a read failure is a gap (the taps cannot skip a transaction).
void SqliteReplicator::tap_frames(const ChainState& from) {
  if (taps_.empty()) return;
  const auto seen = std::chrono::system_clock::now();
  for (auto& t : taps_) t->begin_batch(page_size_, seen);
  Status rd = wal_.read_frames(from, committed_.frames, [&](const FrameHeader& fh, const unsigned char* page) {
    for (auto& t : taps_) t->frame(fh.page, fh.commit_size, page);
    return ok_status();
  });
  if (!rd) return tap_gap("cannot read committed frames from " + wal_.path().string() + ": " + rd.error().message);
  for (auto& t : taps_) t->end_batch();
}

Status SqliteReplicator::begin_pin() {
  if (pinned_) return ok_status();
  if (auto s = pin_.exec("BEGIN"); !s) return s;
  // A deferred BEGIN takes no lock; the first read opens the read transaction.
  if (auto n = pin_.query_int("SELECT count(*) FROM sqlite_master"); !n) {
    (void)pin_.exec("ROLLBACK");
    return n.error();
  }
  pinned_ = true;
  return ok_status();
}

void SqliteReplicator::end_pin() {
  anchor_.valid = false;
  if (!pinned_) return;
  if (!pin_.exec("COMMIT")) (void)pin_.exec("ROLLBACK");
  pinned_ = false;
}

Status SqliteReplicator::open_primary(StepReport& rep) {
  std::error_code ec;
  if (!fs::exists(primary_, ec))
    return make_error(Errc::not_found, "primary database " + primary_.string() + " does not exist");
  primary_key_ = fs::weakly_canonical(primary_, ec).string();
  if (ec) primary_key_ = fs::absolute(primary_).string();
  for (SqliteDb* d : {&pin_, &lock_}) {
    auto o = SqliteDb::open(primary_, SQLITE_OPEN_READWRITE);
    if (!o) return o.error();
    *d = std::move(*o);
    // Never checkpoint on close (the WAL must survive a drd restart for the
    // positions to stay valid) and never checkpoint automatically: drd
    // checkpoints only after copying.
    sqlite3_db_config(d->get(), SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, static_cast<int*>(nullptr));
    sqlite3_wal_autocheckpoint(d->get(), 0);
    d->busy_timeout(opts_.lock_timeout_ms);
  }
  auto mode = pin_.query_text("PRAGMA journal_mode");
  if (!mode) return mode.error();
  if (*mode != "wal") {
    auto m2 = pin_.query_text("PRAGMA journal_mode=WAL");
    if (!m2) return m2.error();
    if (*m2 != "wal")
      return make_error(Errc::conflict, "cannot switch primary " + primary_.string() + " to WAL mode (still " + *m2 + ")",
                        "close other connections to the database and retry");
    rep.notes.push_back("primary " + primary_.string() + " was in '" + *mode + "' journal mode; switched it to WAL");
  }
  // Our own no-op restart write (checkpoint(true)) then shrinks the WAL file.
  if (auto s = lock_.exec("PRAGMA journal_size_limit=0"); !s) return s;
  auto ps = pin_.query_int("PRAGMA page_size");
  if (!ps) return ps.error();
  page_size_ = static_cast<std::uint32_t>(*ps);
  // The first read transaction creates the -wal file if it is missing.
  if (auto s = begin_pin(); !s) return s;
  end_pin();
  auto w = WalFile::open(with_suffix(primary_, "-wal"));
  if (!w) return w.error();
  wal_ = std::move(*w);
  auto did = file_id(primary_);
  if (!did) return did.error();
  db_id_ = *did;
  auto wid = wal_.id();
  if (!wid) return wid.error();
  wal_id_ = *wid;
  has_header_ = false;
  committed_ = ChainState{};
  committed_.page_size = page_size_;
  scanned_ = false;
  return ok_status();
}

Status SqliteReplicator::start(StepReport* report) {
  if (started_) return ok_status();
  StepReport local;
  StepReport& rep = report ? *report : local;
  if (auto s = open_primary(rep); !s) {
    stop();
    return s;
  }
  gen_base_bytes_ = opts_.base_bytes;
  for (auto& s : standbys_) {
    s.needs_seed = true;
    s.seeded = false;
    std::error_code ec;
    if (!fs::exists(s.path, ec) || fs::file_size(s.path, ec) == 0) {
      rep.notes.push_back("standby " + s.path.string() + " is missing or empty; seeding it");
      continue;
    }
    auto lp = load_position(s.path);
    if (!lp) {
      rep.notes.push_back(lp.error().message + "; re-seeding standby " + s.path.string());
    } else if (!*lp) {
      rep.notes.push_back("standby " + s.path.string() + " has no position file; re-seeding it");
    } else if ((*lp)->primary != primary_key_) {
      // After a failover: it holds a state of the database the history rule orders against
      // this primary's; the seed rewrites only the pages that differ when drd left it as is.
      rep.notes.push_back("standby " + s.path.string() + " followed " + (*lp)->primary + "; seeding it from " +
                          primary_key_ + " (only the pages that differ, if drd left it as it is)");
    } else if (auto now = file_stamp(s.path); (*lp)->file && !pending_wal(s.path) &&
                                                (!now || !(*now == *(*lp)->file))) {
      // (With a -wal left by an interrupted apply the file may have changed under drd's own
      // checkpoint; recovery then finishes it and the WAL check below decides.)
      rep.notes.push_back("standby " + s.path.string() +
                          " was changed by someone else since drd last wrote it; its position is not trusted");
    } else {
      s.pos = **lp;
      s.needs_seed = false;  // validated against the WAL in initial_scan_locked
    }
    s.ever_seeded = true;
  }
  started_ = true;
  if (opts_.manage_history) {
    if (auto st = settle_history(rep); !st) {
      stop();
      return st;
    }
  }
  if (auto s = locked_sync(false, rep); !s) {
    stop();
    return s;
  }
  stamped_bytes_ = bytes_at(committed_.frames);
  return ok_status();
}

bool SqliteReplicator::discarded(const Standby& s) const {
  return std::any_of(opts_.discard.begin(), opts_.discard.end(),
                     [&](const fs::path& p) { return p.lexically_normal() == s.path.lexically_normal(); });
}

void SqliteReplicator::read_standby_history(Standby& s) {
  auto h = read_history_file(s.path);
  s.history_known = h.ok();
  if (h) s.history = std::move(*h);
}

void SqliteReplicator::note_lost(const std::string& why, StepReport& rep) {
  if (!lost_.empty()) return;
  lost_ = why;
  rep.warnings.push_back(why);
}

void SqliteReplicator::refuse(Standby& s, const std::string& why, StepReport& rep) {
  if (s.refused != why)
    rep.warnings.push_back("not overwriting standby " + s.path.string() + ": " + why +
                           "; both files are kept (`drctl rejoin NODE --discard` overwrites it)");
  s.refused = why;
  s.last_error = "not re-seeded: " + why;
  s.seeded = false;
  s.needs_seed = true;
  s.next_seed_attempt = Clock::now() + opts_.refused_retry;
}

// Before anything is written: does the primary carry the database's history, and is it
// the most advanced copy? A primary with no history while a standby has one, or one that
// a standby's history continues, is not the copy to follow (history.hpp).
Status SqliteReplicator::settle_history(StepReport& rep) {
  auto ph = read_history(pin_.get(), primary_.string());
  if (!ph) return ph.error();
  primary_history_ = std::move(*ph);
  for (auto& s : standbys_) {
    read_standby_history(s);
    if (!s.history_known || !s.history.stamped || discarded(s)) continue;
    const Lineage l = compare_lineage(primary_history_, s.history);
    if (l == Lineage::source_unstamped || l == Lineage::target_ahead)
      note_lost("primary " + primary_.string() + " is not the most advanced copy: standby " + s.path.string() +
                    (l == Lineage::target_ahead ? " holds a longer history" : " carries the database's history and it does not") +
                    " (standby: " + describe_history(s.history) + "; primary: " + describe_history(primary_history_) + ")",
                rep);
  }
  if (!lost_.empty()) return make_error(Errc::refused, lost_);
  if (!primary_history_.stamped) {
    if (auto st = create_history(lock_.get(), primary_.string(), new_database_id(), opts_.term, opts_.node); !st)
      return st;
    // First adoption: no copy carries a history yet, so copies without one (made by hand
    // before drd ever ran, or by an older drd) may be overwritten this once.
    adopting_ = true;
    rep.notes.push_back("primary " + primary_.string() + " had no drd history; recorded one (_drd_history)");
  } else if (primary_history_.last_node != opts_.node) {
    if (auto st = begin_term(lock_.get(), primary_.string(), opts_.term, opts_.node); !st) return st;
    rep.notes.push_back("primary " + primary_.string() + " begins a new term of its history (last one began on " +
                        primary_history_.last_node + ")");
  } else {
    return ok_status();
  }
  auto again = read_history(pin_.get(), primary_.string());
  if (!again) return again.error();
  primary_history_ = std::move(*again);
  return ok_status();
}

// May `s` be overwritten by a copy of the primary's pinned snapshot? Only when what it
// holds is a prefix of that history (or it is empty, or the operator discarded it).
bool SqliteReplicator::may_seed(Standby& s, StepReport& rep) {
  if (!opts_.manage_history || discarded(s)) return true;
  std::error_code ec;
  if (!fs::exists(s.path, ec) || fs::file_size(s.path, ec) == 0) return true;
  auto target = read_history_file(s.path);
  if (!target) {
    refuse(s, "drd cannot read its history (" + target.error().message + ")", rep);
    return false;
  }
  s.history = *target;
  s.history_known = true;
  auto source = read_history(pin_.get(), primary_.string());
  if (!source) {
    s.last_error = "waiting to seed: " + source.error().message;
    s.next_seed_attempt = Clock::now() + opts_.reseed_retry;
    return false;
  }
  const OverwriteVerdict v = may_overwrite(*source, *target, adopting_ && !target->stamped);
  if (v.allowed) return true;
  refuse(s, v.reason, rep);
  if (compare_lineage(*source, *target) == Lineage::target_ahead)
    note_lost("primary " + primary_.string() + " is not the most advanced copy: standby " + s.path.string() +
                  " holds a longer history (" + describe_history(*target) + "; primary: " + describe_history(*source) + ")",
              rep);
  return false;
}

bool SqliteReplicator::stamp_allowed() const {
  return opts_.manage_history && started_ && scanned_ && pin_.is_open() && !fenced_ && lost_.empty() &&
         !path_gone_noted_ && !reset_needed_ && primary_history_.stamped;
}

// One stamp when commits arrived since the last one and stamp_interval has passed (at stop:
// whenever commits arrived). Never waits for a busy writer except briefly at stop.
void SqliteReplicator::maybe_stamp(StepReport& rep, bool at_stop) {
  if (!stamp_allowed() || bytes_at(committed_.frames) <= stamped_bytes_) return;
  const auto now = Clock::now();
  if (!at_stop && now - last_stamp_ < opts_.stamp_interval) return;
  lock_.busy_timeout(at_stop ? 200 : 0);
  Status took = lock_.exec("BEGIN IMMEDIATE");
  lock_.busy_timeout(opts_.lock_timeout_ms);
  if (!took) return;  // a writer holds the lock: a later step stamps
  last_stamp_ = now;
  Status st = refresh(rep);  // nobody can append now
  const std::uint64_t before = bytes_at(committed_.frames);
  if (st && reset_needed_) st = make_error(Errc::conflict, "the primary's WAL needs re-reading first");
  if (st) st = stamp_history(lock_.get(), primary_.string());
  if (st) st = lock_.exec("COMMIT");
  if (!st) {
    (void)lock_.exec("ROLLBACK");
    rep.notes.push_back("stamping the primary's history skipped: " + st.error().message);
    return;
  }
  primary_history_.epoch += 1;
  if (at_stop) return;
  const std::size_t tx = rep.transactions, frames = rep.frames;
  (void)refresh(rep);
  // Only our own commit since `before`: the stamp covers everything up to the end now, and
  // the report counts the application's commits, not drd's stamp.
  if (rep.transactions == tx + 1) {
    stamped_bytes_ = bytes_at(committed_.frames);
    rep.transactions = tx;
    rep.frames = frames;
  } else {
    stamped_bytes_ = before;
  }
}

void SqliteReplicator::stop() {
  if (started_) {
    // The last stamp goes to the standbys too: every copy taken while drd ran is then
    // older than all of them (a hand restore of such a copy is recognised at the next start).
    StepReport rep;
    const std::uint64_t before = primary_history_.epoch;
    maybe_stamp(rep, true);
    if (primary_history_.epoch != before && refresh(rep))
      for (auto& s : standbys_) ship(s, rep);
  }
  tap_gap("replication from " + primary_.string() + " stopped");
  if (fenced_) {
    (void)lock_.exec("ROLLBACK");
    fenced_ = false;
  }
  if (pin_.is_open()) end_pin();
  pinned_ = false;
  lock_.close();
  pin_.close();
  wal_ = WalFile();
  started_ = false;
  scanned_ = false;
  anchor_.valid = false;
}

// Re-reads the WAL from its header. max_frames (0: all) stops the scan early.
// reseed_all: the old positions mean nothing any more.
Status SqliteReplicator::rescan_from_header(std::uint32_t max_frames, bool reseed_all, StepReport& rep) {
  auto h = wal_.read_header();
  if (!h) return h.error();
  if (scanned_) tap_gap("the primary's WAL was re-read from its header");
  if (reseed_all) gen_base_bytes_ = bytes_at(committed_.frames);  // keep the byte counter monotonic
  if (!*h) {
    has_header_ = false;
    committed_ = ChainState{};
    committed_.page_size = page_size_;
  } else {
    if ((*h)->page_size != page_size_)
      return make_error(Errc::corrupt, "primary WAL " + wal_.path().string() + " has page size " +
                                           std::to_string((*h)->page_size) + " but the database has " +
                                           std::to_string(page_size_));
    has_header_ = true;
    auto r = wal_.scan(chain_start(**h), max_frames);
    if (!r) return r.error();
    committed_ = r->committed;
  }
  for (auto& s : standbys_) {
    if (s.needs_seed) continue;
    if (reseed_all || (same_gen(s.pos) && s.pos.chain.frames > committed_.frames)) {
      s.needs_seed = true;
      s.seeded = false;
      if (!reseed_all)
        rep.notes.push_back("standby " + s.path.string() + " is at frame " + std::to_string(s.pos.chain.frames) +
                            " but the primary's verified WAL ends at frame " + std::to_string(committed_.frames) +
                            "; re-seeding it");
    }
  }
  reset_needed_ = false;
  return ok_status();
}

Status SqliteReplicator::initial_scan_locked(StepReport& rep) {
  if (auto s = rescan_from_header(0, false, rep); !s) return s;
  const std::uint64_t fs_bytes = frame_size(page_size_);
  std::uint64_t base = gen_base_bytes_;
  for (auto& s : standbys_) {
    if (s.needs_seed) continue;
    bool ok = same_gen(s.pos) && s.pos.chain.frames <= committed_.frames;
    if (ok && s.pos.chain.frames > 0) {
      // The exact frame the standby stopped after must still be in the WAL:
      // same salts, a commit frame, and the same cumulative checksum.
      auto fh = wal_.frame_header(s.pos.chain.frames - 1, page_size_);
      ok = fh && fh->salt1 == s.pos.chain.salt1 && fh->salt2 == s.pos.chain.salt2 && fh->is_commit() &&
           fh->checksum == s.pos.chain.checksum;
    } else if (ok && has_header_) {
      auto h = wal_.read_header();
      ok = h && *h && (*h)->checksum == s.pos.chain.checksum;
    }
    if (!ok) {
      s.needs_seed = true;
      rep.notes.push_back("position of standby " + s.path.string() +
                          " does not match the primary's WAL (it was reset while drd was not following it); re-seeding");
      continue;
    }
    s.seeded = true;
    std::uint64_t in_gen = std::uint64_t(s.pos.chain.frames) * fs_bytes;
    if (s.pos.applied_bytes >= in_gen) base = std::max(base, s.pos.applied_bytes - in_gen);
  }
  gen_base_bytes_ = base;
  for (auto& s : standbys_)
    if (!s.needs_seed) s.pos.applied_bytes = bytes_at(s.pos.chain.frames);
  scanned_ = true;
  return ok_status();
}

// Moves to a new generation (`h`, or an empty WAL when null) that follows the
// current committed end without loss. Standbys exactly at that end follow;
// the others can no longer be continued.
void SqliteReplicator::adopt_generation(const WalHeader* h, StepReport& rep) {
  const StandbyPosition old_end = position_here();
  gen_base_bytes_ = bytes_at(committed_.frames);
  has_header_ = h != nullptr;
  if (h) {
    committed_ = chain_start(*h);
  } else {
    committed_ = ChainState{};
    committed_.page_size = page_size_;
  }
  rep.notes.push_back(h ? "primary WAL restarted after a complete checkpoint; continuing from frame 0 of the new generation"
                        : "primary WAL was truncated after a complete checkpoint");
  for (auto& s : standbys_) {
    if (s.needs_seed) continue;
    if (s.pos.has_header == old_end.has_header && same_chain_point(s.pos.chain, old_end.chain)) {
      s.pos = position_here();
      if (auto st = save_position(s.path, s.pos); !st) s.last_error = st.error().message;
    } else {
      s.needs_seed = true;
      s.seeded = false;
      rep.notes.push_back("standby " + s.path.string() + " was behind when the primary WAL restarted; re-seeding it");
    }
  }
}

// Can the WAL have restarted (header `h`, or no header when null) without
// losing frames we have not copied? Only while the read pin taken at our
// committed end is still held.
bool SqliteReplicator::lossless_restart(const WalHeader* h) const {
  if (!anchor_.valid || !pinned_) return false;
  if (!anchor_.has_header) return !has_header_ && committed_.frames == 0;
  bool at_anchor = has_header_ && same_chain_point(anchor_.at, committed_);
  // A generation adopted since the anchor with no commit yet: nothing in it
  // can have been checkpointed, so a further restart loses nothing either.
  bool empty_follow_up = committed_.frames == 0 &&
                         (!has_header_ || committed_.salt1 != anchor_.at.salt1 || committed_.salt2 != anchor_.at.salt2);
  if (!at_anchor && !empty_follow_up) return false;
  if (!h) return true;
  std::uint32_t step = h->salt1 - anchor_.at.salt1;
  return step >= 1 && step <= kMaxSaltStep;
}

void SqliteReplicator::note_commits(std::size_t tx, std::uint32_t old_frames, StepReport& rep) {
  rep.transactions += tx;
  rep.frames += committed_.frames - old_frames;
  commits_seen_.emplace_back(bytes_at(committed_.frames), Clock::now());
  while (commits_seen_.size() > kMaxCommitMarks) commits_seen_.pop_front();
}

Status SqliteReplicator::refresh(StepReport& rep) {
  if (!scanned_ || reset_needed_) return ok_status();
  std::string why;
  auto h = wal_.read_header(&why);
  if (!h) return h.error();
  if (!*h) {
    if (!has_header_) return ok_status();  // still empty
    if (lossless_restart(nullptr)) return ok_status();  // truncated; the next writer writes a new header
    mark_reset(rep, "primary WAL " + wal_.path().string() + " lost its header (" + why + ")");
    return ok_status();
  }
  const WalHeader& hdr = **h;
  if (hdr.page_size != page_size_) {
    mark_reset(rep, "primary WAL page size changed to " + std::to_string(hdr.page_size));
    return ok_status();
  }
  if (!has_header_ || hdr.salt1 != committed_.salt1 || hdr.salt2 != committed_.salt2) {
    if (!lossless_restart(&hdr)) {
      mark_reset(rep, "primary WAL " + wal_.path().string() + " was reset by another process (salts changed)");
      return ok_status();
    }
    adopt_generation(&hdr, rep);
  }
  auto r = wal_.scan(committed_);
  if (!r) return r.error();
  if (r->committed.frames > committed_.frames) {
    const ChainState old = committed_;
    committed_ = r->committed;
    note_commits(r->transactions, old.frames, rep);
    tap_frames(old);
  }
  return ok_status();
}

// Under the write lock, with the pin released: compares our verified end with
// SQLite's own (the frame count a PASSIVE checkpoint reports).
Status SqliteReplicator::reconcile_with_index(std::uint32_t mx, StepReport& rep) {
  auto h = wal_.read_header();
  if (!h) return h.error();
  if (!*h) {
    if (mx != 0)
      return make_error(Errc::corrupt, "primary WAL index says " + std::to_string(mx) +
                                           " frames but " + wal_.path().string() + " has no valid header");
    if (has_header_) adopt_generation(nullptr, rep);
    return ok_status();
  }
  // A writer killed after writing its transaction's commit frame but before publishing it in
  // the WAL index leaves frames that verify (drd may have read and shipped them) yet are no
  // commit to SQLite: the next writer writes over them. Then the frame drd's verified chain
  // ends on is no longer the one in the file, whatever the frame counts say (the same count:
  // silent divergence; a larger one: a chain drd can no longer follow).
  if (committed_.frames > 0 && committed_.frames <= mx) {
    auto fh = wal_.frame_header(committed_.frames - 1, page_size_);
    if (!fh || fh->salt1 != committed_.salt1 || fh->salt2 != committed_.salt2 || !(fh->checksum == committed_.checksum)) {
      rep.notes.push_back("primary WAL frames drd had read up to frame " + std::to_string(committed_.frames) +
                          " were written over (a writer died after writing a commit SQLite never published); "
                          "re-reading the WAL and re-seeding the standbys that applied it");
      if (auto st = rescan_from_header(mx, false, rep); !st) return st;
      reseed_if_off_chain(rep);
      if (committed_.frames == mx) return ok_status();
    }
  }
  if (mx == committed_.frames) return ok_status();
  if (mx < committed_.frames) {
    rep.notes.push_back("primary WAL holds committed-looking frames past SQLite's index (a writer died mid-commit?); "
                        "ignoring frames after " + std::to_string(mx));
    if (auto s = rescan_from_header(mx, false, rep); !s) return s;
    if (committed_.frames == mx) return ok_status();
  }
  return make_error(Errc::corrupt, "primary WAL index says " + std::to_string(mx) + " frames but only " +
                                       std::to_string(committed_.frames) + " verify in " + wal_.path().string());
}

// Standbys whose last applied frame is not the frame now at that place in the primary's WAL
// (same generation, different content) hold a transaction the primary does not have: they
// are re-seeded from the primary.
void SqliteReplicator::reseed_if_off_chain(StepReport& rep) {
  for (auto& s : standbys_) {
    if (s.needs_seed || !same_gen(s.pos) || s.pos.chain.frames == 0) continue;
    bool on_chain = false;
    if (s.pos.chain.frames <= committed_.frames) {
      auto fh = wal_.frame_header(s.pos.chain.frames - 1, page_size_);
      on_chain = fh && fh->salt1 == s.pos.chain.salt1 && fh->salt2 == s.pos.chain.salt2 && fh->is_commit() &&
                 fh->checksum == s.pos.chain.checksum;
    }
    if (on_chain) continue;
    s.needs_seed = true;
    s.seeded = false;
    rep.notes.push_back("standby " + s.path.string() + " applied frames up to " + std::to_string(s.pos.chain.frames) +
                        " that the primary's WAL no longer holds; re-seeding it");
  }
}

Status SqliteReplicator::locked_sync(bool truncate, StepReport& rep) {
  bool took = false;
  if (!fenced_) {
    if (auto s = lock_.exec("BEGIN IMMEDIATE"); !s) {
      Error e = s.error();
      e.message = "cannot take the write lock of primary " + primary_.string() + " within " +
                  std::to_string(opts_.lock_timeout_ms) + " ms: " + e.message;
      return e;
    }
    took = true;
  }
  // Nobody can append now. Catch up with the pin still held, so restart
  // detection still knows where it was taken.
  Status st = scanned_ ? refresh(rep) : initial_scan_locked(rep);
  if (st && reset_needed_) st = rescan_from_header(0, true, rep);
  end_pin();
  bool verified = false, fully = false;
  if (st) {
    Result<SqliteDb::CheckpointResult> cp = pin_.checkpoint(SQLITE_CHECKPOINT_PASSIVE);
    for (int i = 0; i < 5 && cp && cp->rc != SQLITE_OK; ++i) {  // another checkpointer is running
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      cp = pin_.checkpoint(SQLITE_CHECKPOINT_PASSIVE);
    }
    if (!cp) {
      st = cp.error();
    } else if (cp->rc == SQLITE_OK) {
      st = reconcile_with_index(static_cast<std::uint32_t>(cp->log_frames), rep);
      verified = st.ok();
      fully = cp->log_frames > 0 && cp->log_frames == cp->checkpointed_frames;
    }
  }
  if (st)
    for (auto& s : standbys_) ship(s, rep);
  Status pin = begin_pin();
  if (pin && verified && (took || fenced_)) anchor_ = Anchor{true, has_header_, committed_};
  if (took) (void)lock_.exec("ROLLBACK");
  if (!pin) return pin;
  if (!st) return st;
  bool all_at_end = std::all_of(standbys_.begin(), standbys_.end(), [&](const Standby& s) {
    return !s.needs_seed && same_gen(s.pos) && s.pos.chain.frames == committed_.frames;
  });
  if (truncate && !fenced_ && anchor_.valid && fully && all_at_end) restart_wal(rep);
  // Seeds run outside the lock, from the pinned snapshot at exactly the anchor.
  const auto now = Clock::now();
  for (auto& s : standbys_) {
    if (!s.needs_seed || now < s.next_seed_attempt) continue;
    if (!anchor_.valid) {
      s.last_error = "waiting to seed: the primary's WAL end could not be verified";
      continue;
    }
    (void)seed(s, rep);
  }
  return ok_status();
}

// The WAL is fully checkpointed and copied, and the pin (anchored at its end,
// on read mark 0) is held. A fresh write transaction started now also sits on
// read mark 0, so its commit restarts the WAL from the beginning, and with
// journal_size_limit=0 shrinks the file. Any restart in between happens at the
// anchor, which refresh() accepts as lossless. The commit rewrites
// user_version with its own value: a change nobody can observe.
void SqliteReplicator::restart_wal(StepReport& rep) {
  if (!lock_.exec("BEGIN IMMEDIATE")) {
    rep.notes.push_back("primary busy; WAL truncation skipped");
    return;
  }
  Status st = refresh(rep);
  if (st && !reset_needed_) {
    auto uv = lock_.query_int("PRAGMA user_version");
    st = uv ? lock_.exec("PRAGMA user_version=" + std::to_string(*uv)) : Status(uv.error());
    if (st) st = lock_.exec("COMMIT");
    if (st) return;
  }
  (void)lock_.exec("ROLLBACK");
  if (!st) rep.notes.push_back("WAL truncation skipped: " + st.error().message);
}

// Is `standby` exactly as drd last left it (its position file's stamp matches the file, or
// an apply of drd's was interrupted)? Only such a file is private to drd and may be
// written in place by an incremental seed; anything else (no position file: a former
// primary applications may still have open, a file replaced by hand) is seeded by a copy
// renamed over its path.
static bool left_by_drd(const fs::path& standby) {
  auto lp = load_position(standby);
  if (!lp || !*lp || !(*lp)->file) return false;
  if (pending_wal(standby)) return true;
  auto now = file_stamp(standby);
  return now && *now == *(*lp)->file;
}

// The pinned snapshot, page by page, for an incremental seed (docs/sqlite-replication.md,
// "Seeding"). The pin was taken at the anchor, so the snapshot is the database file
// overlaid with the newest copy of each page in the current WAL generation's frames up to
// the anchor. Nothing can change what is read: a page in none of those frames is not
// written to the file while the pin is held (a checkpoint only back-fills frames up to the
// pin's snapshot, i.e. pages of the overlay, and none at all on read mark 0), and the
// frames themselves can only be overwritten by a WAL restart, which changes the header's
// salts: every frame read is checked against them, and so is the header once every page was
// read (before_write), so a restart underneath makes the seed fail, never go wrong. The
// standby's result passes quick_check too; any failure falls back to a full copy.
Result<PatchStats> SqliteReplicator::patch_from_pin(const Standby& s) {
  if (!anchor_.valid || !pinned_) return make_error(Errc::conflict, "no anchored snapshot of the primary");
  auto count = pin_.query_int("PRAGMA page_count");
  if (!count) return count.error();
  if (*count <= 0 || *count > 0xffffffffLL) return make_error(Errc::conflict, "primary snapshot has no pages");
  sqlite3_file* db_file = nullptr;
  if (sqlite3_file_control(pin_.get(), "main", SQLITE_FCNTL_FILE_POINTER, &db_file) != SQLITE_OK || !db_file ||
      !db_file->pMethods)
    return make_error(Errc::conflict, "cannot reach the primary's database file through drd's connection");
  // page -> index of its newest frame in [0, anchor)
  std::unordered_map<std::uint32_t, std::uint32_t> newest;
  std::uint32_t salt1 = 0, salt2 = 0;
  if (anchor_.has_header && anchor_.at.frames > 0) {
    auto h = wal_.read_header();
    if (!h) return h.error();
    if (!*h || (*h)->salt1 != anchor_.at.salt1 || (*h)->salt2 != anchor_.at.salt2)
      return make_error(Errc::conflict, "the primary's WAL moved past the anchored snapshot");
    salt1 = anchor_.at.salt1;
    salt2 = anchor_.at.salt2;
    std::uint32_t index = 0;
    Status rd = wal_.read_frames(chain_start(**h), anchor_.at.frames, [&](const FrameHeader& fh, const unsigned char*) {
      newest[fh.page] = index++;
      return ok_status();
    });
    if (!rd) return rd.error();
  }
  const std::uint32_t ps = page_size_;
  PageSource source = [&](std::uint32_t pgno, unsigned char* out) -> Status {
    if (auto it = newest.find(pgno); it != newest.end()) {
      auto fh = wal_.read_frame(it->second, ps, out);
      if (!fh) return fh.error();
      if (fh->page != pgno || fh->salt1 != salt1 || fh->salt2 != salt2)
        return make_error(Errc::conflict, "primary WAL frame " + std::to_string(it->second) + " changed while being read");
      return ok_status();
    }
    int rc = db_file->pMethods->xRead(db_file, out, static_cast<int>(ps), static_cast<sqlite3_int64>(pgno - 1) * ps);
    if (rc != SQLITE_OK)  // a short read (SQLITE_IOERR_SHORT_READ) too: the snapshot says the page exists
      return make_error(Errc::conflict, "cannot read page " + std::to_string(pgno) + " of primary " + primary_.string() +
                                            " (SQLite error " + std::to_string(rc) + ")");
    return ok_status();
  };
  auto still_anchored = [&]() -> Status {
    if (newest.empty()) return ok_status();
    auto h = wal_.read_header();
    if (!h) return h.error();
    if (!*h || (*h)->salt1 != salt1 || (*h)->salt2 != salt2)
      return make_error(Errc::conflict, "the primary's WAL was restarted while its snapshot was read");
    return ok_status();
  };
  return patch_standby(s.path, ps, static_cast<std::uint32_t>(*count), source, still_anchored);
}

Status SqliteReplicator::seed(Standby& s, StepReport& rep) {
  auto fail = [&](const Error& e) {
    s.last_error = e.message;
    s.next_seed_attempt = Clock::now() + opts_.reseed_retry;
    rep.notes.push_back("seeding standby " + s.path.string() + " failed: " + e.message);
    return Status(e);
  };
  if (!may_seed(s, rep)) return make_error(Errc::refused, s.last_error);
  // Decided before the position file goes: it is what says drd left the file as it is.
  const bool in_place = opts_.incremental_seed && left_by_drd(s.path);
  // Without a position file a crash mid-seed leads to another seed, never to
  // continuing from a stale position.
  if (auto st = remove_if_exists(position_path(s.path)); !st) return fail(st.error());
  if (s.path.has_parent_path()) {
    std::error_code ec;
    fs::create_directories(s.path.parent_path(), ec);
  }
  std::string how;
  std::uint64_t written = 0;
  bool incremental = false;
  if (in_place) {
    auto patched = patch_from_pin(s);
    if (patched) {
      incremental = true;
      written = patched->bytes_written;
      how = " by rewriting " + std::to_string(patched->pages_written) + " of its " + std::to_string(patched->pages) +
            " pages (" + std::to_string(written) + " bytes; the rest already matched)";
    } else {
      rep.notes.push_back("standby " + s.path.string() + " could not be brought up to date page by page (" +
                          patched.error().message + "); copying the whole snapshot instead");
    }
  }
  if (!incremental) {
    if (auto st = seed_from_connection(pin_.get(), primary_.string(), s.path); !st) return fail(st.error());
    std::error_code ec;
    written = fs::file_size(s.path, ec);
    how = " by copying the whole database (" + std::to_string(written) + " bytes)";
  }
  s.pos = position_here();
  if (auto f = file_stamp(s.path)) s.pos.file = *f;
  if (auto st = save_position(s.path, s.pos); !st) return fail(st.error());
  if (opts_.manage_history) {
    auto h = read_history(pin_.get(), primary_.string());  // the snapshot just copied
    s.history_known = h.ok();
    if (h) s.history = std::move(*h);
  }
  s.refused.clear();
  if (s.ever_seeded) s.reseeds += 1;
  (incremental ? s.incremental_seeds : s.full_seeds) += 1;
  s.seed_bytes_written += written;
  s.ever_seeded = true;
  s.seeded = true;
  s.needs_seed = false;
  s.last_error.clear();
  rep.reseeded = true;
  rep.notes.push_back("seeded standby " + s.path.string() + " from a snapshot of the primary at WAL frame " +
                      std::to_string(committed_.frames) + how);
  return ok_status();
}

void SqliteReplicator::ship(Standby& s, StepReport& rep) {
  if (s.needs_seed) return;
  if (s.pos.file) {
    // Even with nothing to apply: a copy put in its place by hand must not keep passing
    // for an up-to-date standby (and be promoted as one).
    auto now = file_stamp(s.path);
    if ((!now || !(*now == *s.pos.file)) && !pending_wal(s.path)) {
      s.needs_seed = true;
      s.seeded = false;
      rep.warnings.push_back("standby " + s.path.string() +
                             (now ? " was changed by someone else since drd last wrote it" : " is gone") +
                             "; its position is not trusted");
      return;
    }
  }
  if (!same_gen(s.pos) || s.pos.chain.frames > committed_.frames) {
    s.needs_seed = true;
    s.seeded = false;
    rep.notes.push_back("standby " + s.path.string() + " cannot continue in the primary's WAL; re-seeding it");
    return;
  }
  if (s.pos.chain.frames == committed_.frames) return;
  auto st = apply(s);
  if (!st) {
    s.last_error = st.error().message;
    if (st.error().code == Errc::corrupt) {
      s.needs_seed = true;
      s.seeded = false;
      rep.notes.push_back("standby " + s.path.string() + ": " + st.error().message + "; re-seeding it");
    }
    return;
  }
  s.last_error.clear();
}

Status SqliteReplicator::apply(Standby& s) {
  if (s.pos.file && !pending_wal(s.path)) {
    auto now = file_stamp(s.path);
    if (!now || !(*now == *s.pos.file))
      return make_error(Errc::corrupt, "standby " + s.path.string() +
                                           " was changed by someone else since drd last wrote it (another file, size or "
                                           "modification time); its position is not trusted");
  }
  if (auto st = recover_standby(s.path); !st) return st;
  auto info = read_db_header(s.path);
  if (!info) return info.error();
  if (info->page_size != page_size_ || !info->wal_mode)
    return make_error(Errc::corrupt, "standby " + s.path.string() + " has page size " +
                                         std::to_string(info->page_size) + (info->wal_mode ? "" : " and is not in WAL mode") +
                                         ", primary has " + std::to_string(page_size_));
  auto w = StandaloneWalWriter::create(with_suffix(s.path, "-wal"), page_size_);
  if (!w) return w.error();
  Status rd = wal_.read_frames(s.pos.chain, committed_.frames, [&](const FrameHeader& fh, const unsigned char* page) {
    return w->append(fh.page, fh.commit_size, page);
  });
  if (!rd) {
    w->abandon();
    return rd;
  }
  if (auto st = w->finish(); !st) {
    w->abandon();
    return st;
  }
  if (auto st = checkpoint_standby(s.path, w->frames()); !st) return st;
  s.pos = position_here();
  if (auto f = file_stamp(s.path)) s.pos.file = *f;
  if (opts_.manage_history) read_standby_history(s);
  return save_position(s.path, s.pos);
}

bool SqliteReplicator::needs_locked_sync() const {
  if (reset_needed_ || !scanned_) return true;
  const auto now = Clock::now();
  return std::any_of(standbys_.begin(), standbys_.end(),
                     [&](const Standby& s) { return s.needs_seed && now >= s.next_seed_attempt; });
}

Status SqliteReplicator::check_identity(StepReport& rep) {
  auto id = file_id(primary_);
  if (!id) {
    Error e = id.error();
    if (e.code == Errc::not_found) {
      // The path is gone but the inode is not: applications still connected keep
      // committing into it until drd fences it, so keep shipping through the open
      // descriptors (that is less for a failover to salvage).
      if (!path_gone_noted_) {
        rep.notes.push_back("primary database " + primary_.string() +
                            " is gone from its path (renamed or deleted); shipping through the open file");
        path_gone_noted_ = true;
      }
      return ok_status();
    }
    return e;
  }
  path_gone_noted_ = false;
  if (!(*id == db_id_) && !lost_.empty()) return ok_status();  // already lost: keep the open file
  if (!(*id == db_id_) && opts_.manage_history) {
    // Only a file that continues the history drd followed may take the primary's place;
    // anything else (an empty file an application created through a dangling link, an
    // older copy, another database) is a lost primary, never a source for the standbys.
    auto other = read_history_file(primary_);
    // Even the same stamp is not enough: the copy may lack what was committed after it.
    const Lineage l = other ? compare_lineage(primary_history_, *other) : Lineage::diverged;
    if (l != Lineage::target_ahead) {
      note_lost("primary " + primary_.string() + " was replaced by another file (" +
                    (other ? describe_history(*other) : "unreadable: " + other.error().message) +
                    "; drd followed " + describe_history(primary_history_) + ")",
                rep);
      return ok_status();
    }
  }
  if (!(*id == db_id_)) {
    rep.notes.push_back("primary " + primary_.string() + " was replaced by a different file; re-opening it");
    const std::uint64_t total = bytes_at(committed_.frames);
    if (fenced_) {
      (void)lock_.exec("ROLLBACK");
      fenced_ = false;
    }
    end_pin();
    lock_.close();
    pin_.close();
    tap_gap("the primary " + primary_.string() + " was replaced by a different file");
    if (auto s = open_primary(rep); !s) return s;
    if (opts_.manage_history) {
      auto h = read_history(pin_.get(), primary_.string());
      if (!h) return h.error();
      primary_history_ = std::move(*h);
    }
    gen_base_bytes_ = total;
    for (auto& s : standbys_) {
      s.needs_seed = true;
      s.seeded = false;
    }
    return ok_status();
  }
  auto wid = file_id(with_suffix(primary_, "-wal"));
  if (!wid || !(*wid == wal_id_)) {
    mark_reset(rep, "primary WAL file " + wal_.path().string() + " was replaced or removed");
    auto w = WalFile::open(with_suffix(primary_, "-wal"));
    if (!w) return w.error();
    wal_ = std::move(*w);
    auto nid = wal_.id();
    if (!nid) return nid.error();
    wal_id_ = *nid;
  }
  return ok_status();
}

Result<StepReport> SqliteReplicator::step() {
  if (!started_) return make_error(Errc::unavailable, "SQLite replicator for " + primary_.string() + " is not started");
  StepReport rep;
  if (auto s = check_identity(rep); !s) return s.error();
  if (auto s = refresh(rep); !s) return s.error();
  maybe_stamp(rep, false);
  if (needs_locked_sync()) {
    if (auto s = locked_sync(false, rep); !s) return s.error();
  } else {
    for (auto& s : standbys_) ship(s, rep);
  }
  // Forget commit times every standby has applied.
  std::uint64_t min_applied = bytes_at(committed_.frames);
  for (const auto& s : standbys_)
    if (s.seeded && !s.needs_seed) min_applied = std::min(min_applied, s.pos.applied_bytes);
  while (!commits_seen_.empty() && commits_seen_.front().first <= min_applied) commits_seen_.pop_front();
  if (!taps_.empty()) {
    const auto now = std::chrono::system_clock::now();
    for (auto& t : taps_) t->after_step(now);
    taps_.erase(std::remove_if(taps_.begin(), taps_.end(), [](const auto& t) { return t->finished(); }), taps_.end());
  }
  return rep;
}

Status SqliteReplicator::checkpoint(bool truncate) {
  if (!started_) return make_error(Errc::unavailable, "SQLite replicator for " + primary_.string() + " is not started");
  StepReport rep;
  if (auto s = check_identity(rep); !s) return s;
  // The no-op write that restarts the WAL is drd's own: it needs no stamp of its own
  // (stamping it would write again, and the idle truncation would never end).
  const bool all_stamped = stamped_bytes_ >= bytes_at(committed_.frames);
  Status st = locked_sync(truncate, rep);
  if (st && truncate && all_stamped && refresh(rep)) stamped_bytes_ = bytes_at(committed_.frames);
  return st;
}

std::vector<StandbyStatus> SqliteReplicator::standbys() const {
  std::vector<StandbyStatus> out;
  const std::uint64_t end = bytes_at(committed_.frames);
  const auto now = Clock::now();
  for (const auto& s : standbys_) {
    StandbyStatus st;
    st.path = s.path.string();
    st.seeded = s.seeded && !s.needs_seed;
    st.applied_bytes = st.seeded ? s.pos.applied_bytes : 0;
    st.lag_bytes = end > st.applied_bytes ? end - st.applied_bytes : 0;
    for (const auto& [bytes, seen] : commits_seen_) {
      if (bytes > st.applied_bytes) {
        st.lag_ms = std::chrono::duration<double, std::milli>(now - seen).count();
        break;
      }
    }
    st.last_error = s.last_error;
    st.reseeds = s.reseeds;
    st.full_seeds = s.full_seeds;
    st.incremental_seeds = s.incremental_seeds;
    st.seed_bytes_written = s.seed_bytes_written;
    st.refused = s.refused;
    st.history_known = s.history_known;
    st.history = s.history;
    out.push_back(std::move(st));
  }
  return out;
}

std::uint64_t SqliteReplicator::primary_wal_end_bytes() const { return bytes_at(committed_.frames); }

Result<std::uint64_t> SqliteReplicator::read_committed_end() {
  if (!started_) return make_error(Errc::unavailable, "SQLite replicator for " + primary_.string() + " is not started");
  StepReport rep;
  if (auto st = refresh(rep); !st) return st.error();
  return bytes_at(committed_.frames);
}

Status SqliteReplicator::fence_primary() {
  if (!started_) return make_error(Errc::unavailable, "SQLite replicator for " + primary_.string() + " is not started");
  if (fenced_) return ok_status();
  if (auto s = lock_.exec("BEGIN IMMEDIATE"); !s) {
    Error e = s.error();
    e.message = "cannot fence primary " + primary_.string() + ": " + e.message;
    return e;
  }
  fenced_ = true;
  return ok_status();
}

Status SqliteReplicator::release_fence() {
  if (!fenced_) return ok_status();
  fenced_ = false;
  return lock_.exec("ROLLBACK");
}

Result<std::uint64_t> SqliteReplicator::salvage_into(const fs::path& standby) {
  if (!started_) return make_error(Errc::unavailable, "SQLite replicator for " + primary_.string() + " is not started");
  auto it = std::find_if(standbys_.begin(), standbys_.end(), [&](const Standby& s) {
    return s.path == standby || s.path.lexically_normal() == standby.lexically_normal();
  });
  if (it == standbys_.end())
    return make_error(Errc::invalid_argument, standby.string() + " is not a standby of " + primary_.string());
  Standby& s = *it;
  if (s.needs_seed || !s.seeded)
    return make_error(Errc::refused, "standby " + s.path.string() + " has no valid position to salvage into");
  const std::uint64_t before = s.pos.applied_bytes;
  StepReport rep;
  // Through the open descriptor: the primary's path may be gone already.
  if (auto st = refresh(rep); !st) return st.error();
  if (reset_needed_)
    return make_error(Errc::conflict, "primary WAL " + wal_.path().string() +
                                          " was reset; frames past the standby's position are gone");
  ship(s, rep);
  if (!s.last_error.empty()) return make_error(Errc::io, "salvage into " + s.path.string() + " failed: " + s.last_error);
  if (s.needs_seed) return make_error(Errc::conflict, "standby " + s.path.string() + " cannot continue in the primary's WAL");
  return s.pos.applied_bytes - before;
}

}  // namespace drd::replication
