#include "daemon/engines/sqlite_cluster.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "common/crash_point.hpp"
#include "daemon/replication/position_file.hpp"
#include "daemon/replication/sqlite_util.hpp"
#include "daemon/replication/standby_ops.hpp"

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
  if (auto st = repoint_link(primary_); !st) return st;
  // Applications may write to it from now on: a position file a failed finalize left
  // would make the next start apply the former primary's frames over their commits.
  if (interrupted) (void)replication::remove_if_exists(replication::position_path(path));
  (void)replication::remove_if_exists(promoting_marker(path));
  needs_start_ = true;
  next_start_attempt_ = {};
  return start_replicator();
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
    paths.push_back(n.sqlite_path);
    repl_standbys_.push_back(n.name);
  }
  auto r = std::make_unique<replication::SqliteReplicator>(node(primary_)->sqlite_path, paths);
  replication::StepReport rep;
  Status st = r->start(&rep);
  for (auto& note : rep.notes) spdlog::info("replication from {}: {}", primary_, note);
  if (!st) {
    next_start_attempt_ = Clock::now() + kRetryEvery;
    if (st.error().message != last_start_error_)
      spdlog::error("cannot replicate from {}: {}", primary_, st.error().message);
    last_start_error_ = st.error().message;
    return st;
  }
  last_start_error_.clear();
  repl_ = std::move(r);
  needs_start_ = false;
  last_checkpoint_ = last_change_ = Clock::now();
  checkpointed_at_bytes_ = last_end_bytes_ = repl_->primary_wal_end_bytes();
  publish();
  return ok_status();
}

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
      snap[repl_standbys_[i]] = info;
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
  if (repl_) retired_.push_back(std::move(repl_));
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
  for (auto& note : step->notes) spdlog::info("replication from {}: {}", primary_, note);
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
  } else if (end != checkpointed_at_bytes_ && now - last_change_ > kIdleTruncateAfter) {
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
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(n->sqlite_path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
    sqlite3_close(db);
    return;
  }
  sqlite3_busy_timeout(db, 100);
  if (sqlite3_exec(db, "PRAGMA wal_autocheckpoint=0; BEGIN IMMEDIATE", nullptr, nullptr, nullptr) != SQLITE_OK) {
    sqlite3_close(db);  // a writer holds it right now; try again next second
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
  auto r = std::make_unique<replication::SqliteReplicator>(old, std::vector<std::filesystem::path>{target});
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
  for (auto& f : fenced_) hold_fence_by_path(f);
}

// crash_point(): test-only (common/crash_point.hpp). The e2e tests set DRD_TEST_CRASH_AT to
// one of the sqlite_* names below to kill drd at that step of a promotion.
Result<PromoteOutcome> SqliteCluster::promote(const PromoteRequest& req) {
  PromoteOutcome out;
  const NodeConfig* target = node(req.target);
  if (!target) return make_error(Errc::not_found, "no node named '" + req.target + "'");
  std::uint64_t target_lag = 0;
  if (auto snap = replicas(); snap.count(req.target)) target_lag = snap[req.target].lag_bytes;

  if (repl_ && primary_ == req.old_primary) {
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
    // 2. Ship what is left: every committed frame when fenced, else whatever can still be read.
    auto before = replicas();
    auto step = repl_->step();
    if (!step) out.notes.push_back("last shipping from " + req.old_primary + " failed: " + step.error().message);
    auto salvaged = repl_->salvage_into(target->sqlite_path);
    if (salvaged) out.salvaged_bytes = *salvaged;
    else out.notes.push_back("salvage: " + salvaged.error().message);
    publish();
    auto after = replicas();
    if (after.count(req.target)) target_lag = after[req.target].lag_bytes;
    if (req.switchover && target_lag > 0) {
      (void)repl_->release_fence();
      return make_error(Errc::refused, "switchover aborted before promotion: " + req.target + " is still " +
                                           std::to_string(target_lag) + " bytes behind after the last shipping");
    }
    // 3. The old replicator stays alive as the holder of the old primary's lock.
    retired_.push_back(std::move(repl_));
    if (fenced) held_by_retired_.insert(req.old_primary);
  }
  out.lag_bytes = target_lag;
  crash_point("sqlite_shipped");
  // 4. Make the target a clean primary and point applications at it. The marker keeps
  //    its position until the link moved (attach() finishes a promotion killed in between).
  if (auto st = keep_promotion_marker(target->sqlite_path); !st)  // only a kill in the next ms would need it
    out.notes.push_back("cannot keep the promotion marker: " + st.error().message);
  if (auto st = replication::finalize_standby_for_promotion(target->sqlite_path); !st) return st.error();
  crash_point("sqlite_finalized");
  primary_ = req.target;
  if (!req.switchover) fenced_.insert(req.old_primary);
  else fenced_.erase(req.old_primary);
  fenced_.erase(primary_);
  if (auto st = repoint_link(primary_); !st) return st.error();
  crash_point("sqlite_link_moved");
  (void)replication::remove_if_exists(promoting_marker(target->sqlite_path));
  out.notes.push_back(link_ ? "current_link now points at " + target->sqlite_path.string() : "no current_link configured");
  // 5. Replication from the new primary starts on the next tick (it may seed standbys: not on the failover path).
  needs_start_ = true;
  next_start_attempt_ = {};
  publish();
  return out;
}

Status SqliteCluster::rejoin(const std::string& name, bool reclone) {
  (void)reclone;  // every SQLite rejoin is a reseed from the current primary
  if (!node(name)) return make_error(Errc::not_found, "no node named '" + name + "'");
  // Any lock we hold by path on this file is released by the reseed's rename
  // making it an orphan inode; keep holding the old inode (see the header).
  fenced_.erase(name);
  held_by_retired_.erase(name);  // the path gets a new inode, which no retired holder locks
  needs_start_ = true;
  next_start_attempt_ = {};
  if (auto st = start_replicator(); !st) {
    fenced_.insert(name);
    return st;
  }
  auto st = repl_->standbys();
  for (std::size_t i = 0; i < st.size() && i < repl_standbys_.size(); ++i)
    if (repl_standbys_[i] == name && !st[i].seeded)
      return make_error(Errc::io, "rejoin of " + name + " could not seed it: " + st[i].last_error);
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
