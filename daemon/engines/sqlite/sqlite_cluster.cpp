#include "daemon/engines/sqlite/sqlite_cluster.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "common/crash_point.hpp"
#include "daemon/engines/sqlite/sqlite_fence.hpp"
#include "daemon/engines/sqlite/replication/history_table.hpp"
#include "daemon/engines/sqlite/replication/position_file.hpp"
#include "daemon/engines/sqlite/replication/sqlite_util.hpp"
#include "daemon/engines/sqlite/replication/standby_ops.hpp"

namespace drd {

namespace {

using Clock = std::chrono::steady_clock;
constexpr std::uint64_t kCheckpointEvery = 4u << 20;  // WAL bytes between drd's own checkpoints
constexpr auto kIdleTruncateAfter = std::chrono::seconds(10);
constexpr auto kRetryEvery = std::chrono::seconds(1);

Status fsync_dir(const std::filesystem::path& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return make_error(Errc::io, "cannot open " + dir.string() + ": " + std::strerror(errno));
  int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) return make_error(Errc::io, "cannot fsync " + dir.string() + ": " + std::strerror(errno));
  return ok_status();
}

// `<target>.drd-promoting`: a copy of the promotion target's standby position, kept from
// just before finalize_standby_for_promotion() (which removes the position file) until
// current_link names the target. A drd killed in that window leaves no position file, yet
// the link still sends applications to the former primary, which nothing fences while drd
// is down: the marker lets the next start see the promotion as unfinished and ship what
// they committed there (attach()).
std::filesystem::path promoting_marker(const std::filesystem::path& target) {
  return target.string() + ".drd-promoting";
}

// Copies `from` to `to` atomically (tmp file, fsync, rename, folder fsync).
Status copy_atomically(const std::filesystem::path& from, const std::filesystem::path& to) {
  std::ifstream in(from, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  if (!in) return make_error(Errc::io, "cannot read " + from.string());
  const auto tmp = to.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text.str();
    out.flush();
    if (!out) return make_error(Errc::io, "cannot write " + tmp);
  }
  if (auto st = replication::fsync_path(tmp); !st) return st;
  if (::rename(tmp.c_str(), to.c_str()) != 0)
    return make_error(Errc::io, "cannot rename " + tmp + " to " + to.string() + ": " + std::strerror(errno));
  return fsync_dir(to.parent_path().empty() ? std::filesystem::path(".") : to.parent_path());
}

// current_link points at `db` (always true without a link: nothing sends applications elsewhere).
bool link_names(const std::optional<std::filesystem::path>& link, const std::filesystem::path& db) {
  if (!link) return true;
  std::error_code ec;
  auto current = std::filesystem::read_symlink(*link, ec);
  return !ec && current == db;
}

// Before finalizing `target`: keep its position as the marker (no position file: nothing to keep).
Status keep_promotion_marker(const std::filesystem::path& target) {
  const auto pos = replication::position_path(target);
  std::error_code ec;
  if (!std::filesystem::exists(pos, ec)) return ok_status();
  return copy_atomically(pos, promoting_marker(target));
}

}  // namespace

SqliteCluster::SqliteCluster(const Config& cfg) : nodes_(cfg.nodes), link_(cfg.current_link) {}

SqliteCluster::~SqliteCluster() { detach(); }

const NodeConfig* SqliteCluster::node(const std::string& name) const {
  for (auto& n : nodes_)
    if (n.name == name) return &n;
  return nullptr;
}

Status SqliteCluster::repoint_link(const std::string& primary) {
  if (!link_) return ok_status();
  const NodeConfig* p = node(primary);
  if (!p) return make_error(Errc::not_found, "no node named '" + primary + "'");
  std::error_code ec;
  auto current = std::filesystem::read_symlink(*link_, ec);
  if (!ec && current == p->sqlite_path) return ok_status();
  // Only a symlink (or nothing) is ever replaced: a regular file there may be the
  // application's own database (drd refuses to start on it; this catches one made since).
  const auto status = std::filesystem::symlink_status(*link_, ec);
  const bool missing = status.type() == std::filesystem::file_type::not_found;
  if (!missing && status.type() != std::filesystem::file_type::symlink)
    return make_error(Errc::refused, "current_link " + link_->string() + " is not a symlink; drd does not replace it",
                      "move it away, or set current_link to another path");
  std::filesystem::create_directories(link_->parent_path(), ec);
  auto tmp = link_->string() + ".drd-tmp";
  ::unlink(tmp.c_str());
  if (::symlink(p->sqlite_path.c_str(), tmp.c_str()) != 0)
    return make_error(Errc::io, "cannot create link " + tmp + ": " + std::strerror(errno));
  if (::rename(tmp.c_str(), link_->c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return make_error(Errc::io, "cannot repoint " + link_->string() + ": " + std::strerror(err));
  }
  if (missing) spdlog::info("created current_link {} pointing at {}", link_->string(), p->sqlite_path.string());
  return fsync_dir(link_->parent_path());
}

Status SqliteCluster::attach(const std::string& primary, const std::vector<std::string>& fenced) {
  primary_ = primary;
  fenced_ = {fenced.begin(), fenced.end()};
  fenced_.erase(primary_);
  if (!node(primary_)) return make_error(Errc::not_found, "no node named '" + primary_ + "'");
  // A promotion interrupted by a crash leaves the target's standby position file
  // behind (finalize removes it), or, killed after finalize but before current_link
  // moved, the promotion marker: finish the promotion. Never touch a live primary's
  // -wal/-shm otherwise: applications have it open.
  const auto& path = node(primary_)->sqlite_path;
  std::error_code ec;
  bool interrupted = std::filesystem::exists(replication::position_path(path), ec);
  if (!interrupted && std::filesystem::exists(promoting_marker(path), ec)) {
    if (link_names(link_, path)) {
      // The link moved: applications may have written to the target since, so the
      // former primary's frames must never be applied over it. The promotion is done.
      (void)replication::remove_if_exists(promoting_marker(path));
    } else if (auto st = copy_atomically(promoting_marker(path), replication::position_path(path)); st) {
      // Finalized, but applications still reach the former primary through the link:
      // the target is still exactly at the kept position (nothing writes to it).
      spdlog::warn("the promotion of {} stopped after finalizing it and before current_link moved; finishing it",
                   primary_);
      interrupted = true;
    } else {
      spdlog::error("finishing the promotion of {}: {}", primary_, st.error().message);
    }
  }
  if (interrupted) salvage_interrupted_promotion(path);
  // Fences are locks held by this process, so a restart begins without them: take
  // them again before the link or anything else, to keep the window in which an
  // application still connected to a former primary could commit there as short
  // as drd's own downtime (the chaos suite measures it).
  fence_reappeared();
  next_fence_attempt_ = Clock::now() + kRetryEvery;
  if (interrupted) {
    if (auto st = keep_promotion_marker(path); !st)
      spdlog::warn("finishing the promotion of {}: {}", primary_, st.error().message);
    if (auto st = replication::finalize_standby_for_promotion(path); !st)
      spdlog::warn("finishing the promotion of {}: {}", primary_, st.error().message);
  }
  // Replication starts first: it checks that the primary is the most advanced copy. The
  // link moves only to a primary that is (never to a stale file that a lost state folder or
  // the configuration named: applications would write there).
  needs_start_ = true;
  next_start_attempt_ = {};
  Status started = start_replicator();
  if (!primary_problem().empty()) {
    // Not the most advanced copy: hold its write lock now, before the failover that follows,
    // so an application still connected to it cannot commit there meanwhile.
    hold_fence_by_path(primary_);
    return started;
  }
  if (auto st = repoint_link(primary_); !st) return st;
  // Applications may write to it from now on: a position file a failed finalize left
  // would make the next start apply the former primary's frames over their commits.
  if (interrupted) (void)replication::remove_if_exists(replication::position_path(path));
  (void)replication::remove_if_exists(promoting_marker(path));
  return started;
}

Status SqliteCluster::start_replicator() {
  if (!needs_start_ || Clock::now() < next_start_attempt_) return ok_status();
  if (repl_) {
    repl_->stop();
    repl_.reset();
  }
  std::vector<std::filesystem::path> paths;
  repl_standbys_.clear();
  for (auto& n : nodes_) {
    if (n.name == primary_ || fenced_.count(n.name)) continue;
    if (sqlite_fence::fenced_on_disk(n.sqlite_path)) {
      // Fenced by a drd whose record of it was lost (state folder): still a fenced copy,
      // never a standby to ship to, until `drctl rejoin` lifts it.
      spdlog::warn("{} carries a fence record ({}); treating it as fenced until it is rejoined", n.name,
                   sqlite_fence::record_path(n.sqlite_path).string());
      fenced_.insert(n.name);
      continue;
    }
    paths.push_back(n.sqlite_path);
    repl_standbys_.push_back(n.name);
  }
  auto r = std::make_unique<replication::SqliteReplicator>(node(primary_)->sqlite_path, paths, replicator_options());
  replication::StepReport rep;
  Status st = r->start(&rep);
  log_report(rep);
  if (!st) {
    next_start_attempt_ = Clock::now() + kRetryEvery;
    if (st.error().message != last_start_error_)
      spdlog::error("cannot replicate from {}: {}", primary_, st.error().message);
    last_start_error_ = st.error().message;
    if (!r->primary_lost().empty()) {
      note_primary_problem(r->primary_lost());
      // Positions mean nothing without a running replicator: the files' own histories
      // tell the failover which copy is the most advanced.
      idle_histories_.clear();
      for (std::size_t i = 0; i < paths.size(); ++i)
        if (auto h = replication::read_history_file(paths[i])) idle_histories_[repl_standbys_[i]] = *h;
      publish();
    }
    return st;
  }
  last_start_error_.clear();
  idle_histories_.clear();
  repl_ = std::move(r);
  needs_start_ = false;
  last_checkpoint_ = last_change_ = Clock::now();
  checkpointed_at_bytes_ = last_end_bytes_ = repl_->primary_wal_end_bytes();
  publish();
  return ok_status();
}

replication::ReplicatorOptions SqliteCluster::replicator_options() const {
  replication::ReplicatorOptions o;
  o.term = term_;
  o.node = primary_;
  o.base_bytes = promoted_at_bytes_;
  for (auto& name : discard_)
    if (const NodeConfig* n = node(name)) o.discard.push_back(n->sqlite_path);
  return o;
}

void SqliteCluster::note_primary_problem(const std::string& why) {
  std::lock_guard g(mu_);
  if (primary_problem_ == why) return;
  primary_problem_ = why;
  if (!why.empty()) spdlog::warn("primary {} is lost: {}", primary_, why);
}

std::string SqliteCluster::primary_problem() const {
  std::lock_guard g(mu_);
  return primary_problem_;
}

void SqliteCluster::log_report(const replication::StepReport& rep) {
  for (auto& note : rep.notes) spdlog::info("replication from {}: {}", primary_, note);
  for (auto& w : rep.warnings) spdlog::warn("replication from {}: {}", primary_, w);
}

void SqliteCluster::allow_discard(const std::string& name) { discard_.insert(name); }

void SqliteCluster::publish() {
  std::map<std::string, ReplicaInfo> snap;
  if (repl_) {
    auto st = repl_->standbys();
    for (std::size_t i = 0; i < st.size() && i < repl_standbys_.size(); ++i) {
      ReplicaInfo info;
      info.position = st[i].seeded ? std::optional<std::uint64_t>(st[i].applied_bytes) : std::nullopt;
      info.lag_bytes = st[i].lag_bytes;
      info.lag_ms = st[i].lag_ms;
      info.streaming = st[i].seeded && st[i].last_error.empty();
      info.note = st[i].last_error.empty() ? (st[i].seeded ? "" : "waiting for seed") : st[i].last_error;
      info.apply_failing = !st[i].last_error.empty() || !st[i].seeded;
      info.history_problem = st[i].refused;
      // An apply that fails loses redundancy: say so once per new error, as a warning.
      std::string& logged = apply_errors_logged_[repl_standbys_[i]];
      if (st[i].last_error != logged && st[i].refused.empty() && !st[i].last_error.empty() &&
          st[i].last_error.rfind("waiting", 0) != 0)
        spdlog::warn("standby {} cannot apply the primary's changes: {}", repl_standbys_[i], st[i].last_error);
      logged = st[i].last_error;
      if (st[i].history_known && st[i].history.stamped) {
        info.history_known = true;
        info.history_term = st[i].history.last_term();
        info.history_epoch = st[i].history.epoch;
      }
      snap[repl_standbys_[i]] = info;
    }
  }
  for (auto& [name, h] : idle_histories_) {
    ReplicaInfo& info = snap[name];
    info.note = "replication stopped: the primary is lost";
    if (h.stamped) {
      info.history_known = true;
      info.history_term = h.last_term();
      info.history_epoch = h.epoch;
    }
  }
  for (auto& f : fenced_) {
    ReplicaInfo info;
    info.note = path_fences_.count(f) || !retired_.empty() ? "fenced: drd holds its write lock" : "fenced";
    snap[f] = info;
  }
  std::lock_guard g(mu_);
  snapshot_ = std::move(snap);
}

std::map<std::string, ReplicaInfo> SqliteCluster::replicas() const {
  std::lock_guard g(mu_);
  return snapshot_;
}

Status SqliteCluster::add_wal_tap(std::shared_ptr<replication::WalTap> tap) {
  if (!repl_ || needs_start_ || restoring_)
    return make_error(Errc::unavailable, "replication from " + primary_ + " is not running, so its WAL cannot be archived");
  repl_->add_tap(std::move(tap));
  return ok_status();
}

Status SqliteCluster::begin_primary_restore() {
  if (restoring_) return make_error(Errc::conflict, "a restore onto " + primary_ + " is already running");
  if (!repl_ || needs_start_)
    return make_error(Errc::unavailable, "replication from " + primary_ + " is not running, so drd cannot fence it");
  if (auto st = repl_->fence_primary(); !st) return st;
  repl_->end_taps("the primary " + primary_ + " is being restored from a backup");
  restoring_ = true;
  return ok_status();
}

Status SqliteCluster::end_primary_restore(bool replaced) {
  if (!restoring_) return ok_status();
  restoring_ = false;
  if (!replaced) return repl_ ? repl_->release_fence() : ok_status();
  // The fenced replicator keeps its write lock on the old inode: an application still
  // connected to it gets SQLITE_BUSY instead of writing into a file nobody reads.
  if (repl_) {
    repl_->retire();
    retired_.push_back(std::move(repl_));
  }
  // The restored file is the operator's choice: it begins a term of its own (the standbys
  // hold the history it rolled back from), and every standby may be overwritten with it.
  if (auto db = replication::SqliteDb::open(node(primary_)->sqlite_path, SQLITE_OPEN_READWRITE)) {
    db->busy_timeout(5000);
    auto h = replication::read_history(db->get(), node(primary_)->sqlite_path.string());
    if (h && h->stamped)
      if (auto st = replication::begin_term(db->get(), node(primary_)->sqlite_path.string(), term_, primary_); !st)
        spdlog::warn("restored primary {}: cannot begin a term in its history: {}", primary_, st.error().message);
  }
  for (auto& name : repl_standbys_) discard_.insert(name);
  // Standby positions describe the old file: every standby is seeded from the restored one.
  for (auto& name : repl_standbys_)
    if (auto st = replication::remove_if_exists(replication::position_path(node(name)->sqlite_path)); !st)
      spdlog::warn("cannot remove the position of standby {}: {}", name, st.error().message);
  needs_start_ = true;
  next_start_attempt_ = {};
  return start_replicator();
}

Status SqliteCluster::tick() {
  if (restoring_) return ok_status();
  if (needs_start_) {
    if (auto st = start_replicator(); !st) return st;
  }
  if (!repl_) return ok_status();
  auto step = repl_->step();
  if (!step) {
    publish();
    return step.error();
  }
  log_report(*step);
  if (!repl_->primary_lost().empty() && primary_problem().empty()) {
    note_primary_problem(repl_->primary_lost());
    // Whatever now stands at the primary's path is not the database: hold its write lock at
    // once, so an application that reopened the path cannot go on committing into it.
    hold_fence_by_path(primary_);
  }
  if (!discard_.empty()) {  // an overwrite the operator allowed is done once the copy follows
    auto st = repl_->standbys();
    for (std::size_t i = 0; i < st.size() && i < repl_standbys_.size(); ++i)
      if (st[i].seeded && st[i].refused.empty()) discard_.erase(repl_standbys_[i]);
  }
  auto end = repl_->primary_wal_end_bytes();
  auto now = Clock::now();
  if (end != last_end_bytes_) {
    last_end_bytes_ = end;
    last_change_ = now;
  }
  // drd's own checkpoints keep the WAL short (application auto-checkpoints can't restart it while pinned).
  if (end - checkpointed_at_bytes_ >= kCheckpointEvery) {
    if (auto st = repl_->checkpoint(false); !st) spdlog::warn("checkpoint of {}: {}", primary_, st.error().message);
    checkpointed_at_bytes_ = end;
    last_checkpoint_ = now;
  } else if (end != checkpointed_at_bytes_ && now - last_change_ > kIdleTruncateAfter && last_change_ - last_checkpoint_ > std::chrono::seconds(1)) {
    if (auto st = repl_->checkpoint(true); !st) spdlog::warn("checkpoint of {}: {}", primary_, st.error().message);
    checkpointed_at_bytes_ = end;
    last_checkpoint_ = now;
  }
  if (now >= next_fence_attempt_) {
    fence_reappeared();
    next_fence_attempt_ = now + kRetryEvery;
    // A standby file that disappeared while the primary is idle would otherwise
    // wait for the next write to be noticed: restart replication to re-seed it.
    for (auto& name : repl_standbys_) {
      std::error_code ec;
      if (!std::filesystem::exists(node(name)->sqlite_path, ec) && !ec) {
        spdlog::warn("standby {} is missing ({}); re-seeding it", name, node(name)->sqlite_path.string());
        needs_start_ = true;
        next_start_attempt_ = {};
        break;
      }
    }
  }
  publish();
  return ok_status();
}

void SqliteCluster::hold_fence_by_path(const std::string& name) {
  const NodeConfig* n = node(name);
  if (!n || path_fences_.count(name) || held_by_retired_.count(name)) return;
  std::error_code ec;
  if (!std::filesystem::exists(n->sqlite_path, ec)) return;
  // A file fenced on disk is read-only: a drd not running as root needs its owner's write
  // bit back for the moment it opens its lock connection (persist_fence() clears it again).
  const bool on_disk = sqlite_fence::fenced_on_disk(n->sqlite_path);
  if (on_disk && ::access(n->sqlite_path.c_str(), W_OK) != 0) sqlite_fence::allow_owner_write(n->sqlite_path);
  sqlite3* db = nullptr;
  bool locked = sqlite3_open_v2(n->sqlite_path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) == SQLITE_OK;
  if (locked) {
    sqlite3_busy_timeout(db, 100);
    // Fails when a writer holds it right now: try again next second.
    locked = sqlite3_exec(db, "PRAGMA wal_autocheckpoint=0; BEGIN IMMEDIATE", nullptr, nullptr, nullptr) == SQLITE_OK;
  }
  if (on_disk) persist_fence(name, "fenced");
  if (!locked) {
    sqlite3_close(db);
    return;
  }
  spdlog::warn("fenced node {} is reachable again at {}; drd holds its write lock", name, n->sqlite_path.string());
  path_fences_[name] = db;
}

void SqliteCluster::salvage_interrupted_promotion(const std::filesystem::path& target) {
  // drd stopped between claiming the new term and finishing the promotion (fence,
  // ship the tail, finalize, repoint the link). Nothing fenced the former primary
  // while drd was down and current_link may still name it, so applications may have
  // committed there since: fence it now and ship its committed tail into the target
  // first, as promote() does, or those acknowledged commits would be dropped.
  auto pos = replication::load_position(target);
  if (!pos || !pos.value()) return;
  const std::filesystem::path old = pos.value()->primary;
  std::error_code ec;
  if (!std::filesystem::exists(old, ec)) {
    spdlog::warn("finishing the promotion of {}: its former primary {} is gone; nothing to salvage", primary_,
                 old.string());
    return;
  }
  replication::ReplicatorOptions ro;
  ro.manage_history = false;  // it only reads the former primary; never stamps it
  auto r = std::make_unique<replication::SqliteReplicator>(old, std::vector<std::filesystem::path>{target}, ro);
  replication::StepReport rep;
  if (auto st = r->start(&rep); !st) {
    spdlog::error("finishing the promotion of {}: cannot read its former primary {}: {}", primary_, old.string(),
                  st.error().message);
    return;
  }
  auto fenced = r->fence_primary();
  if (!fenced) spdlog::error("finishing the promotion of {}: cannot fence {}: {}", primary_, old.string(),
                             fenced.error().message);
  // Ship until the target holds every committed frame. An apply can fail for a moment
  // (a probe reading the target keeps its WAL from being truncated), so retry briefly.
  std::string problem;
  bool complete = false;
  for (int attempt = 0; attempt < 100 && !complete; ++attempt) {
    if (attempt) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    auto step = r->step();
    auto salvaged = r->salvage_into(target);
    auto st = r->standbys();
    complete = step && salvaged && !st.empty() && st[0].seeded && st[0].lag_bytes == 0;
    if (!complete)
      problem = !step ? step.error().message
                : !salvaged ? salvaged.error().message
                : st.empty() ? "no standby" : st[0].last_error.empty() ? "still behind" : st[0].last_error;
  }
  std::string old_name = old.string();
  for (auto& n : nodes_) {
    if (n.name == primary_) continue;
    if (std::filesystem::weakly_canonical(n.sqlite_path, ec) == std::filesystem::weakly_canonical(old, ec)) {
      old_name = n.name;
      fenced_.insert(n.name);
      if (fenced) held_by_retired_.insert(n.name);
    }
  }
  if (complete)
    spdlog::warn("finished the interrupted promotion of {}: {} {} and shipped all its commits", primary_,
                 fenced ? "fenced" : "could not fence", old_name);
  else
    spdlog::error("finishing the interrupted promotion of {}: {} {}, but could not ship all its commits: {}",
                  primary_, fenced ? "fenced" : "could not fence", old_name, problem);
  retired_.push_back(std::move(r));  // holds the former primary's write lock from now on
}

void SqliteCluster::fence_reappeared() {
  for (auto& f : fenced_) {
    hold_fence_by_path(f);
    // On disk too (again every second: a -wal created since, a chmod by hand). At start
    // this re-applies the fence of every node the store names as fenced.
    persist_fence(f, "fenced node");
  }
}

void SqliteCluster::persist_fence(const std::string& name, const std::string& reason) {
  if (const NodeConfig* n = node(name)) persist_fence_at(n->sqlite_path, name + ": " + reason);
}

void SqliteCluster::persist_fence_at(const std::filesystem::path& file, const std::string& reason) {
  const bool was_on_disk = sqlite_fence::fenced_on_disk(file);
  auto st = sqlite_fence::apply(file, reason);
  std::string& logged = fence_errors_logged_[file.string()];
  if (!st) {
    if (st.error().message != logged)
      spdlog::error("cannot make the fence of {} persistent (it holds only while drd runs): {}", file.string(),
                    st.error().message);
    logged = st.error().message;
    return;
  }
  logged.clear();
  if (!was_on_disk && sqlite_fence::fenced_on_disk(file))
    spdlog::warn("{} is fenced on disk: read-only, original modes in {} ({})", file.string(),
                 sqlite_fence::record_path(file).string(), reason);
}

// A primary removed from the configuration is still a file applications may have open:
// find it through the standbys' position files (they name the primary they followed) and
// hold its write lock like any fenced node's, before anything else is promoted.
void SqliteCluster::fence_removed_primary(const std::string& name, PromoteOutcome& out) {
  std::set<std::string> configured;
  std::error_code ec;
  for (auto& n : nodes_) configured.insert(std::filesystem::weakly_canonical(n.sqlite_path, ec).string());
  for (auto& n : nodes_) {
    auto pos = replication::load_position(n.sqlite_path);
    if (!pos || !pos.value() || configured.count(pos.value()->primary)) continue;
    const std::string path = pos.value()->primary;
    if (path_fences_.count(name)) return;
    sqlite3* db = nullptr;
    if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) == SQLITE_OK) {
      sqlite3_busy_timeout(db, 2000);
      if (sqlite3_exec(db, "PRAGMA wal_autocheckpoint=0; BEGIN IMMEDIATE", nullptr, nullptr, nullptr) == SQLITE_OK) {
        path_fences_[name] = db;
        spdlog::warn("{} is no longer in the configuration; drd holds the write lock of its file {} (named by {}'s "
                     "position)", name, path, n.name);
        // Not a node any more: no rejoin lifts it; its record says how (docs/sqlite-replication.md).
        persist_fence_at(path, name + ": removed from the configuration");
        out.notes.push_back("fenced " + path + ", the file of the removed node " + name);
        return;
      }
    }
    sqlite3_close(db);
    spdlog::error("{} is no longer in the configuration and its file {} could not be fenced", name, path);
    return;
  }
  spdlog::warn("{} is no longer in the configuration and no standby's position names its file: nothing to fence", name);
}

// crash_point(): test-only (common/crash_point.hpp). The e2e tests set DRD_TEST_CRASH_AT to
// one of the sqlite_* names below to kill drd at that step of a promotion.
Result<PromoteOutcome> SqliteCluster::promote(const PromoteRequest& req) {
  PromoteOutcome out;
  const NodeConfig* target = node(req.target);
  if (!target) return make_error(Errc::not_found, "no node named '" + req.target + "'");
  if (!req.old_primary.empty() && !node(req.old_primary)) fence_removed_primary(req.old_primary, out);
  std::uint64_t target_lag = 0;
  std::optional<std::uint64_t> target_position;
  if (auto snap = replicas(); snap.count(req.target)) {
    target_lag = snap[req.target].lag_bytes;
    target_position = snap[req.target].position;
  }
  // The history row says how far behind the target was when the failover began (what the
  // last shipping and the salvage had to bring over) and where it was promoted: the figures
  // after the shipping alone would read "lag 0" for any target the salvage caught up.
  std::uint64_t lag_at_start = target_lag;

  // The file drd replicates from. Normally the request's old primary; after a promotion
  // that failed (the store then names the failed target) it is still the file before it.
  const std::string was = primary_;
  if (repl_ && (was == req.old_primary || (!req.switchover && was != req.target))) {
    // 1. Fence: hold the old primary's write lock through the connection drd already has.
    auto fenced = repl_->fence_primary();
    out.old_primary_fenced = fenced.ok();
    if (!fenced) {
      if (req.switchover)
        return make_error(Errc::refused, "switchover aborted before promotion: cannot fence " + req.old_primary +
                                             ": " + fenced.error().message);
      out.notes.push_back("could not fence " + req.old_primary + ": " + fenced.error().message);
    } else {
      out.notes.push_back("holding the write lock of " + req.old_primary);
    }
    crash_point("sqlite_fenced");
    // What the target lacks right now, commits no tick has seen yet included.
    if (auto end = repl_->read_committed_end())
      for (auto& st : repl_->standbys())
        if (std::filesystem::path(st.path) == target->sqlite_path && st.seeded && *end > st.applied_bytes)
          lag_at_start = std::max(lag_at_start, *end - st.applied_bytes);
    // 2. Ship what is left: every committed frame when fenced, else whatever can still be read.
    auto before = replicas();
    auto step = repl_->step();
    if (!step) out.notes.push_back("last shipping from " + req.old_primary + " failed: " + step.error().message);
    auto salvaged = repl_->salvage_into(target->sqlite_path);
    if (salvaged) out.salvaged_bytes = *salvaged;
    else out.notes.push_back("salvage: " + salvaged.error().message);
    publish();
    auto after = replicas();
    if (after.count(req.target)) {
      target_lag = after[req.target].lag_bytes;
      if (after[req.target].position) target_position = after[req.target].position;
    }
    // Only a standby that holds a copy drd knows (its file as drd left it) may be promoted.
    for (auto& st : repl_->standbys())
      if (std::filesystem::path(st.path) == target->sqlite_path && !st.seeded) {
        if (fenced && req.switchover) (void)repl_->release_fence();  // a failover keeps the old one fenced
        return make_error(Errc::refused, "cannot promote " + req.target + ": it holds no copy drd can vouch for (" +
                                             (st.last_error.empty() ? "waiting for a seed" : st.last_error) + ")");
      }
    if (req.switchover && target_lag > 0) {
      (void)repl_->release_fence();
      return make_error(Errc::refused, "switchover aborted before promotion: " + req.target + " is still " +
                                           std::to_string(target_lag) + " bytes behind after the last shipping");
    }
    // 3. The old replicator stays alive as the holder of the old primary's lock.
    // A primary lost to another file at its path: that file is fenced by path too.
    const bool replaced_at_path = !repl_->primary_lost().empty();
    repl_->retire();
    retired_.push_back(std::move(repl_));
    if (fenced && !replaced_at_path) held_by_retired_.insert(was);
  }
  out.lag_bytes = lag_at_start;
  out.position = target_position;
  if (lag_at_start > 0 || target_lag > 0)
    out.notes.push_back(req.target + " was " + std::to_string(lag_at_start) + " bytes behind when the failover began; " +
                        (target_lag == 0 ? std::string("the last shipping brought it up to date")
                                         : std::to_string(target_lag) + " bytes of the former primary's WAL never reached it") +
                        (target_position ? " (promoted at position " + std::to_string(*target_position) + ")" : ""));
  crash_point("sqlite_shipped");
  // The node promoted is not fenced any more (a forced promotion of a fenced node). A record
  // drd cannot read does not stop the failover; the note tells the operator to fix the mode.
  if (sqlite_fence::fenced_on_disk(target->sqlite_path)) {
    auto lifted = sqlite_fence::lift(target->sqlite_path);
    out.notes.push_back(lifted ? "lifted the on-disk fence of " + req.target
                               : "cannot lift the on-disk fence of " + req.target + " (it stays read-only): " +
                                     lifted.error().message);
  }
  // 4. Make the target a clean primary and point applications at it. The marker keeps
  //    its position until the link moved (attach() finishes a promotion killed in between).
  //    A target that already is the primary of its own term (drd lost its state after
  //    promoting it: no position file, its history's last term begun by itself) is live,
  //    with applications connected: it is not a standby to finalize.
  if (!already_primary(req.target)) {
    if (auto st = keep_promotion_marker(target->sqlite_path); !st)  // only a kill in the next ms would need it
      out.notes.push_back("cannot keep the promotion marker: " + st.error().message);
    if (auto st = replication::finalize_standby_for_promotion(target->sqlite_path); !st) return st.error();
  }
  crash_point("sqlite_finalized");
  primary_ = req.target;
  if (!req.switchover) {
    fenced_.insert(req.old_primary);
    if (!was.empty() && node(was)) fenced_.insert(was);
    // The lock dies with drd: make the fence persistent before applications are sent away.
    const std::string why = "failover to " + req.target + (req.term > 0 ? " (term " + std::to_string(req.term) + ")" : "");
    persist_fence(req.old_primary, why);
    if (was != req.old_primary && node(was)) persist_fence(was, why);
  }
  else fenced_.erase(req.old_primary);
  fenced_.erase(primary_);
  if (auto st = repoint_link(primary_); !st) return st.error();
  crash_point("sqlite_link_moved");
  (void)replication::remove_if_exists(promoting_marker(target->sqlite_path));
  // Its own history begins a term only now: before the link moved, a restart may still ship
  // the former primary's frames into it (attach()), which must land on the file as it was.
  // If this fails, the replicator's start begins the term (the last term is not its own).
  if (req.term > 0) term_ = req.term;
  // Positions under the new primary continue from its own (replicator_options()).
  if (target_position) promoted_at_bytes_ = *target_position;
  if (auto st = begin_primary_term(req.target); !st)
    out.notes.push_back("recording term " + std::to_string(term_) + " in " + req.target + "'s history: " +
                        st.error().message + " (retried when replication starts)");
  {
    std::lock_guard g(mu_);
    if (!primary_problem_.empty()) out.notes.push_back("the former primary was lost: " + primary_problem_);
    primary_problem_.clear();
  }
  out.notes.push_back(link_ ? "current_link now points at " + target->sqlite_path.string() : "no current_link configured");
  // 5. Replication from the new primary starts on the next tick (it may seed standbys: not on the failover path).
  needs_start_ = true;
  next_start_attempt_ = {};
  publish();
  return out;
}

bool SqliteCluster::already_primary(const std::string& name) const {
  const NodeConfig* n = node(name);
  std::error_code ec;
  if (!n || std::filesystem::exists(replication::position_path(n->sqlite_path), ec)) return false;
  auto h = replication::read_history_file(n->sqlite_path);
  return h && h->stamped && h->last_node == name;
}

Status SqliteCluster::begin_primary_term(const std::string& name) {
  const NodeConfig* n = node(name);
  if (!n) return make_error(Errc::not_found, "no node named '" + name + "'");
  auto db = replication::SqliteDb::open(n->sqlite_path, SQLITE_OPEN_READWRITE);
  if (!db) return db.error();
  db->busy_timeout(5000);
  auto h = replication::read_history(db->get(), n->sqlite_path.string());
  if (!h) return h.error();
  if (!h->stamped || h->last_node == name) return ok_status();  // nothing to continue / already begun
  return replication::begin_term(db->get(), n->sqlite_path.string(), term_, name);
}

Status SqliteCluster::rejoin(const std::string& name, bool reclone) {
  (void)reclone;  // every SQLite rejoin is a reseed from the current primary
  if (!node(name)) return make_error(Errc::not_found, "no node named '" + name + "'");
  const auto& path = node(name)->sqlite_path;
  // The on-disk fence goes first: the re-seed must not leave read-only -wal/-shm behind,
  // and a file carrying a fence record is never shipped to.
  auto lifted = sqlite_fence::lift(path);
  if (!lifted)
    return make_error(lifted.error().code, "cannot lift the fence of " + name + ": " + lifted.error().message,
                      "fix or remove " + sqlite_fence::record_path(path).string() + " (it records the file's original mode)");
  if (*lifted) spdlog::info("lifted the on-disk fence of {} (fenced since {})", name, (*lifted)->since);
  const bool was_fenced = fenced_.count(name) > 0 || lifted->has_value();
  // Any lock we hold by path on this file is released by the reseed's rename
  // making it an orphan inode; keep holding the old inode (see the header).
  fenced_.erase(name);
  held_by_retired_.erase(name);  // the path gets a new inode, which no retired holder locks
  needs_start_ = true;
  next_start_attempt_ = {};
  if (auto st = start_replicator(); !st) {
    fenced_.insert(name);  // as before: the store still names it fenced
    if (was_fenced) persist_fence(name, "rejoin failed");
    return st;
  }
  auto st = repl_->standbys();
  for (std::size_t i = 0; i < st.size() && i < repl_standbys_.size(); ++i) {
    if (repl_standbys_[i] != name || st[i].seeded) continue;
    // Not rejoined: a fenced node stays fenced in the store, so its file stays fenced on disk too.
    if (was_fenced) persist_fence(name, "rejoin did not re-seed it");
    if (!st[i].refused.empty())
      return make_error(Errc::refused, "rejoin of " + name + " refused: " + st[i].refused,
                        "both files are kept; `drctl rejoin " + name + " --discard` overwrites " + name +
                            "'s copy (copy it aside first if it holds anything you need)");
    return make_error(Errc::io, "rejoin of " + name + " could not seed it: " + st[i].last_error);
  }
  discard_.erase(name);  // it holds the primary's history now
  // The re-seed made a new file: give it the mode it had before it was fenced.
  if (*lifted)
    if (auto restored = sqlite_fence::restore_modes(path, **lifted); !restored)
      spdlog::warn("rejoin of {}: {}", name, restored.error().message);
  return ok_status();
}

Status SqliteCluster::clone(const std::string& name) { return rejoin(name, true); }

void SqliteCluster::detach() {
  if (repl_) repl_->stop();
  repl_.reset();
  for (auto& r : retired_) r->stop();
  retired_.clear();
  for (auto& [name, db] : path_fences_) {
    sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    sqlite3_close(db);
  }
  path_fences_.clear();
}

}  // namespace drd
