#pragma once
// Daemon::BackupRuntime, the state behind backups, verify and restore through the control
// socket (see daemon_backup.cpp for the threading rules), shared by daemon_backup.cpp and
// daemon_restore.cpp. Private to those two files.
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <set>

#include "common/log.hpp"
#include "daemon/backup/catalog.hpp"
#include "daemon/backup/catalog_json.hpp"
#include "daemon/backup/incremental.hpp"
#include "daemon/backup/retention.hpp"
#include "daemon/backup/pg_wal.hpp"
#include "daemon/backup/schedule.hpp"
#include "daemon/backup/util.hpp"
#include "daemon/backup/service/backup_pg_runtime.hpp"
#include "daemon/backup/service/backup_runtime.hpp"
#include "daemon/daemon.hpp"
#include "daemon/rpc/params.hpp"

namespace drd {

namespace fs = std::filesystem;

// Parameter parsing and progress forwarding for the backup RPCs.
namespace backup_rpc {

constexpr std::chrono::seconds kScheduleRecheck{30};       // notices reloads and wall-clock steps
constexpr std::chrono::milliseconds kProgressEvery{100};   // at most ~10 progress notifications/s

using rpc::flag_param;
using rpc::text_param;

// Forwards progress from a worker thread: rate-limited there, delivered on the control strand.
inline backup::Progress forward_progress(ProgressSink sink, asio::strand<asio::io_context::executor_type> strand) {
  if (!sink) return {};
  auto last = std::make_shared<std::chrono::steady_clock::time_point>();
  return [sink = std::move(sink), strand, last](std::uint64_t done, std::uint64_t total, const char* phase) {
    auto now = std::chrono::steady_clock::now();
    if (now - *last < kProgressEvery && done != total) return;
    *last = now;
    json::object p{{"done", done}, {"total", total ? json::value(total) : json::value(nullptr)}, {"phase", phase}};
    asio::post(strand, [sink, p = std::move(p)]() mutable { sink(std::move(p)); });
  };
}

// id or path, as both verify and restore take them.
struct RefParams {
  std::string id, path;
};
inline Result<RefParams> ref_params(const json::object& params) {
  RefParams r;
  auto id = text_param(params, "id");
  if (!id) return id.error();
  auto path = text_param(params, "path");
  if (!path) return path.error();
  r.id = *id;
  r.path = *path;
  if (r.id.empty() && r.path.empty()) return make_error(Errc::invalid_argument, "missing parameter \"id\" (or \"path\")");
  if (!r.id.empty() && !r.path.empty()) return make_error(Errc::invalid_argument, "give \"id\" or \"path\", not both");
  if (!r.path.empty() && fs::path(r.path).is_relative())
    return make_error(Errc::invalid_argument, "parameter \"path\" must be an absolute path, got '" + r.path + "'");
  return r;
}

// Under the store's lock, released before anyone replies (the reply writes the audit log).
// A WAL segment's id stands for its full backup (verified and restored together).
inline Result<backup::CatalogEntry> catalog_entry(SqliteStateStore& store, const std::string& id) {
  auto lk = store.lock();
  auto e = backup::catalog_get(store.raw(), id);
  if (e && backup::is_wal_segment(e->manifest)) return backup::catalog_get(store.raw(), e->manifest.parent);
  return e;
}

}  // namespace backup_rpc

struct Daemon::BackupRuntime {
  explicit BackupRuntime(Daemon& daemon)
      : d(daemon), strand(daemon.control_), timer(std::make_unique<asio::steady_timer>(daemon.control_)),
        worker(std::make_unique<BlockingWorker>()), checker(std::make_unique<BlockingWorker>()) {}

  Daemon& d;
  asio::strand<asio::io_context::executor_type> strand;  // a copy: jobs may outlive the Daemon
  std::unique_ptr<asio::steady_timer> timer;  // reset at stop: never destroyed after the io_context
  std::unique_ptr<BlockingWorker> worker, checker;
  std::shared_ptr<std::atomic<bool>> cancel = std::make_shared<std::atomic<bool>>(false);
  bool stopped = false;
  bool prepared = false;                    // prepare_directory() has run
  std::optional<Error> prepare_error;       // ... and failed: every backup reports it
  std::set<std::string> running;            // nodes with a backup in progress
  std::set<std::string> restoring;          // PostgreSQL nodes a backup is being restored onto
  // Schedule (control strand).
  std::string schedule_text;                // as armed; compared with the live config
  std::optional<backup::Schedule> schedule;
  std::optional<SysTime> next_due;
  bool prune_running = false, prune_again = false;

  struct Request {
    std::string name, node, kind;
    bool scheduled = false;
    bool require_archive = false;  // a new base for point-in-time coverage: nothing without WAL archiving
  };

  // ---- control strand ----------------------------------------------------

  void post_result(std::function<void()> fn) {
    asio::post(strand, std::move(fn));
  }

  // A standby's data prepared from a backup (bkrt::prepare_standby_restore): the swap runs on
  // the cluster worker, so it never overlaps tick()/promote().
  void swap_standby(bkrt::PreparedStandby prep, Reply reply);
  // Its outcome, once the folders to discard were removed (`left`: those that could not be).
  void finish_standby(const bkrt::PreparedStandby& prep, Result<StandbyRestoreOutcome> out,
                      const std::vector<std::string>& discard, const std::vector<std::string>& left,
                      const Reply& reply);
  // The primary's data prepared from a backup (bkrt::prepare_primary_restore, safety backup
  // `safety_id` taken): automatic failover paused, the swap and the standbys' re-clones on the
  // cluster worker, then a round of probes before failover may act again.
  void swap_primary(bkrt::PreparedPrimary prep, std::string safety_id, Reply reply);
  // Enters a safety backup taken before a restore in the catalog (logged either way).
  void insert_safety(const backup::Manifest& safety, const BackupConfig& cfg);
  void finish_primary(const bkrt::PreparedPrimary& prep, const std::string& safety_id,
                      Result<PrimaryRestoreOutcome> out, const std::vector<std::string>& discard,
                      const std::vector<std::string>& left, const Reply& reply);
  // Removes `dirs` as `os_user` on the checker worker (a whole data folder can take minutes),
  // then calls `then(left)` on the strand with those that could not be removed; nothing once
  // stopped.
  void discard_folders(std::vector<std::string> dirs, std::optional<std::string> os_user,
                       std::function<void(std::vector<std::string>)> then);

  Result<std::string> choose_node(const std::string& requested) const {
    if (!requested.empty()) return requested;
    if (d.state_.primary().empty())
      return make_error(Errc::unavailable, "no primary has been chosen yet (drd is starting, or no node is healthy)",
                        "retry in a moment, or name a node with --node");
    if (d.config_.backup.prefer_standby) {
      for (auto& name : d.probes_->names()) {
        if (name == d.state_.primary() || is_fenced(name)) continue;
        if (d.probes_->is(name, Health::up)) return name;
      }
    }
    return d.state_.primary();
  }

  bool is_fenced(const std::string& name) const {
    return d.state_.is_fenced(name);
  }

  void launch(Request req, Reply reply, ProgressSink progress) {
    const BackupConfig& cfg = d.config_.backup;
    if (cfg.directory.empty())
      return reply(make_error(Errc::refused, "backups are not configured",
                              "set disaster_recovery.backup.directory in " + d.config_.file.string()));
    auto node = choose_node(req.node);
    if (!node) return reply(node.error());
    const NodeConfig* nc = d.config_.find_node(*node);
    if (!nc) return reply(make_error(Errc::not_found, "no node named '" + *node + "'"));
    const bool pg = nc->engine == Engine::postgresql;
    if (req.kind == "logical" && !pg)
      return reply(make_error(Errc::unsupported, "logical dumps are for PostgreSQL; SQLite backups are full copies",
                              "omit --kind or use --kind full"));
    if (!req.kind.empty() && req.kind != "full" && req.kind != "logical" && !(pg && req.kind == "physical"))
      return reply(make_error(Errc::invalid_argument, "parameter \"kind\" must be \"full\" or \"logical\", got '" + req.kind + "'"));
    if (is_fenced(*node))
      return reply(make_error(Errc::refused, *node + " is fenced and may hold stale data; not backing it up",
                              "back up the primary " + d.state_.primary() + " instead"));
    if (d.probes_->is(*node, Health::down))
      return reply(make_error(Errc::refused, *node + " is down; not backing it up",
                              "check `drctl status`; back up another node with --node"));
    if (running.count(*node))
      return reply(make_error(Errc::conflict, "a backup of " + *node + " is already running", "wait for it to finish"));
    // Before prepare_directory() has finished is fine: it runs first on the same worker.
    if (prepare_error) return reply(*prepare_error);

    running.insert(*node);
    backup::NewBackup info;
    info.name = !req.name.empty() ? req.name : (req.scheduled ? "scheduled" : "manual");
    info.node = *node;
    info.kind = "full";
    info.now = d.clock_.now();
    const bool standby = *node != d.state_.primary();
    auto started = d.clock_.steady();
    auto done = [this, node = *node, reply, started](Result<backup::Manifest> m) {
      finish_backup(node, std::move(m), started, reply);
    };
    if (pg) {  // pg_basebackup / pg_dump reads a standby as safely as the primary
      run_pg_backup(cfg, *nc, std::move(info), req.kind == "logical", backup_rpc::forward_progress(progress, strand), done);
      return;
    }
    if (!standby) {
      // WAL archiving (point-in-time restore) starts before the snapshot does.
      auto self = d.backup_;
      d.archive_arm(*node, [self, cfg, db = nc->sqlite_path, info = std::move(info), progress, done,
                            require = req.require_archive, node = *node,
                            reply](std::shared_ptr<backup::WalArchiver> arch) mutable {
        if (self->stopped) return;
        if (!arch && require) {  // not a failed backup: retried once replication runs
          self->running.erase(node);
          return reply(make_error(Errc::unavailable, "WAL archiving cannot start on " + node + " yet"));
        }
        auto after = [self, arch, done](Result<backup::Manifest> m) {
          self->d.archive_full_done(arch, m);
          done(std::move(m));
        };
        self->run_backup(cfg, db, std::move(info), backup_rpc::forward_progress(progress, self->strand), after, {});
      }, req.require_archive);
      return;
    }
    // A standby: copy it between replication steps, then stream the copy like a primary.
    // The copy goes into the backup directory from another worker, so only once it is prepared.
    if (!prepared) {
      running.erase(*node);
      return reply(make_error(Errc::unavailable, "the backup directory is still being prepared; retry in a moment"));
    }
    fs::path snap = cfg.directory / (backup::new_backup_id(info.now, *node) + ".standby.snapshot.tmp");
    if (progress) progress(json::object{{"done", 0}, {"total", nullptr}, {"phase", "snapshot"}});
    fs::path src = nc->sqlite_path;
    auto self = d.backup_;
    bool posted = d.cluster_worker_ && d.cluster_worker_->post([self, src, snap, cfg, info, progress, done]() mutable {
      Status st = bkrt::snapshot_sqlite(src, snap);
      self->post_result([self, st = std::move(st), cfg, snap, info = std::move(info), progress, done]() mutable {
        if (self->stopped) return;
        if (!st) {
          std::error_code ec;
          fs::remove(snap, ec);
          return done(st.error());
        }
        self->run_backup(cfg, snap, std::move(info), backup_rpc::forward_progress(progress, self->strand), done, snap);
      });
    });
    if (!posted) done(make_error(Errc::unavailable, "drd is stopping"));
  }

  // Streams `db` into a new backup on the worker; `remove_after` (a standby snapshot) is deleted.
  void run_backup(const BackupConfig& cfg, const fs::path& db, backup::NewBackup info, backup::Progress progress,
                  std::function<void(Result<backup::Manifest>)> done, fs::path remove_after) {
    auto self = d.backup_;
    auto cancel = this->cancel;
    bool posted = worker->post([self, cfg, db, info = std::move(info), progress = std::move(progress), done, remove_after,
                                cancel]() mutable {
      auto m = bkrt::take_sqlite_backup(cfg, db, std::move(info), progress, cancel.get());
      if (!remove_after.empty()) {
        std::error_code ec;
        for (const char* suf : {"", "-wal", "-shm", "-journal"}) fs::remove(remove_after.string() + suf, ec);
      }
      self->post_result([self, m = std::move(m), done]() mutable {
        if (self->stopped) return;
        done(std::move(m));
      });
    });
    if (!posted) done(make_error(Errc::unavailable, "drd is stopping"));
  }

  // Enters complete backups found in the directory but missing from the catalog (see
  // backup_start). Backups deleted by retention lose their manifest first, so none comes back.
  void adopt_uncatalogued(const std::vector<backup::CatalogEntry>& found) {
    auto lk = d.store_->lock();
    for (auto& e : found) {
      auto have = backup::catalog_get(d.store_->raw(), e.manifest.id);
      if (have || have.error().code != Errc::not_found) continue;
      if (auto st = backup::catalog_insert(d.store_->raw(), e.manifest, e.directory); !st) {
        spdlog::error("backup {} in {} is complete but could not be entered in the catalog: {}", e.manifest.id,
                      e.directory.string(), st.error().message);
        continue;
      }
      log::event(spdlog::level::warn, "backup", {{"NODE", e.manifest.node}, {"BACKUP_ID", e.manifest.id}},
                 "backup " + e.manifest.id + " was complete but not in the catalog (drd stopped before entering "
                 "it); entered now");
    }
  }

  void run_pg_backup(const BackupConfig& cfg, const NodeConfig& nc, backup::NewBackup info, bool logical,
                     backup::Progress progress, std::function<void(Result<backup::Manifest>)> done) {
    auto self = d.backup_;
    auto cancel = this->cancel;
    ProcessRunner* runner = &d.runner_;  // stateless, outlives the daemon (main owns it)
    bool posted = worker->post([self, cfg, nc, info = std::move(info), logical, progress = std::move(progress), done,
                                cancel, runner]() mutable {
      auto m = bkrt::take_pg_backup(cfg, *runner, nc, std::move(info), logical, progress, cancel.get());
      self->post_result([self, m = std::move(m), done]() mutable {
        if (self->stopped) return;
        done(std::move(m));
      });
    });
    if (!posted) done(make_error(Errc::unavailable, "drd is stopping"));
  }

  void finish_backup(const std::string& node, Result<backup::Manifest> m, SteadyTime started, const Reply& reply) {
    running.erase(node);
    d.mon_->on_backup(d.clock_.now(), m.ok(), m.ok() ? m->size_bytes : 0);  // backup_age / backup_failed alerts
    if (!m) {
      log::event(spdlog::level::err, "backup", {{"NODE", node}}, "backup of " + node + " failed: " + m.error().message);
      return reply(m.error());
    }
    const fs::path dir = d.config_.backup.directory;
    Result<backup::CatalogEntry> entry = make_error(Errc::internal, "");
    {
      auto lk = d.store_->lock();
      if (auto st = backup::catalog_insert(d.store_->raw(), *m, dir); !st) entry = st.error();
      else entry = backup::catalog_get(d.store_->raw(), m->id);
    }
    if (!entry) {
      std::string msg = "backup " + m->id + " of " + node + " is complete in " + dir.string() +
                        " but could not be entered in the catalog: " + entry.error().message;
      log::event(spdlog::level::err, "backup", {{"NODE", node}, {"BACKUP_ID", m->id}}, msg);
      return reply(make_error(Errc::io, msg, "verify or restore it by path"));
    }
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(d.clock_.steady() - started).count();
    log::event(spdlog::level::info, "backup", {{"NODE", node}, {"BACKUP_ID", m->id}},
               "backup " + m->id + " of " + node + " done in " + std::to_string(ms) + " ms: " +
                   backup::human_bytes(m->size_bytes) + " from " + backup::human_bytes(m->source_bytes) +
                   (m->encrypted ? ", encrypted" : ""));
    reply(json::value(backup::backup_to_json(*entry)));
    prune();
  }

  // Retention: decided here, files deleted on the worker, rows removed and audited here.
  void prune() {
    if (prune_running) {
      prune_again = true;
      return;
    }
    const BackupConfig& cfg = d.config_.backup;
    Result<std::vector<backup::CatalogEntry>> list = make_error(Errc::internal, "");
    {
      auto lk = d.store_->lock();
      list = backup::catalog_list(d.store_->raw());
    }
    if (!list) {
      spdlog::error("backup retention skipped: {}", list.error().message);
      return;
    }
    std::vector<backup::RetentionItem> items;
    for (auto& e : *list)
      if (!backup::is_wal_segment(e.manifest))  // segments go with their full backup
      items.push_back({e.manifest.id, e.manifest.created_at, e.verified.value_or(false), e.manifest.kind,
                       e.manifest.parent, e.manifest.node});
    backup::RetentionPolicy policy{cfg.keep_last, cfg.keep_daily, cfg.keep_weekly, cfg.keep_monthly};
    auto decision = backup::apply_retention(items, policy, d.clock_.now());
    std::vector<backup::CatalogEntry> doomed;
    for (auto& id : decision.remove)
      for (auto& e : *list)
        if (e.manifest.id == id) doomed.push_back(e);
    {  // PostgreSQL's archived WAL: deleted once no kept base backup needs it
      std::set<std::string> removed(decision.remove.begin(), decision.remove.end());
      std::vector<backup::PgBase> kept;
      std::vector<backup::PgWalSeg> segs;
      for (auto& e : *list) {
        if (auto b = backup::pg_base_of(e.manifest); b && !removed.count(e.manifest.id)) kept.push_back(*b);
        if (auto sg = backup::pg_wal_seg(e.manifest)) segs.push_back(*sg);
      }
      for (auto& id : backup::pg_wal_unneeded(kept, segs))
        for (auto& e : *list)
          if (e.manifest.id == id) doomed.push_back(e);
    }
    std::vector<std::string> doomed_segments;  // rows only: the files go with the full's folder
    for (auto& id : decision.remove)
      for (auto& e : *list)
        if (backup::is_wal_segment(e.manifest) && e.manifest.parent == id) doomed_segments.push_back(e.manifest.id);
    if (doomed.empty()) return;
    std::string why = "retention keep_last=" + std::to_string(policy.keep_last) + " keep_daily=" +
                      std::to_string(policy.keep_daily) + " keep_weekly=" + std::to_string(policy.keep_weekly) +
                      " keep_monthly=" + std::to_string(policy.keep_monthly);
    prune_running = true;
    auto self = d.backup_;
    bool posted = worker->post([self, doomed, doomed_segments, why] {
      std::vector<Status> results;
      for (auto& e : doomed) results.push_back(backup::remove_backup_files(e.directory, e.manifest));
      self->post_result([self, doomed, doomed_segments, why, results = std::move(results)] {
        if (self->stopped) return;
        self->finish_prune(doomed, results, why, doomed_segments);
      });
    });
    if (!posted) prune_running = false;
  }

  void finish_prune(const std::vector<backup::CatalogEntry>& doomed, const std::vector<Status>& results,
                    const std::string& why, const std::vector<std::string>& doomed_segments) {
    prune_running = false;
    for (auto& id : doomed_segments) {
      bool parent_gone = false;
      for (std::size_t i = 0; i < doomed.size(); ++i)
        if (results[i] && id.rfind(doomed[i].manifest.id + ".seg-", 0) == 0)
          parent_gone = true;
      if (!parent_gone) continue;
      auto lk = d.store_->lock();
      (void)backup::catalog_remove(d.store_->raw(), id);
    }
    for (std::size_t i = 0; i < doomed.size(); ++i) {
      const auto& m = doomed[i].manifest;
      if (!results[i]) {  // the row stays so the next pass retries
        log::event(spdlog::level::err, "backup_prune", {{"NODE", m.node}, {"BACKUP_ID", m.id}},
                   "cannot delete backup " + m.id + ": " + results[i].error().message);
        continue;
      }
      Status st = ok_status();
      {
        auto lk = d.store_->lock();
        st = backup::catalog_remove(d.store_->raw(), m.id);
      }
      if (!st && st.error().code != Errc::not_found)
        spdlog::error("backup {} deleted but still in the catalog: {}", m.id, st.error().message);
      log::event(spdlog::level::info, "backup_prune", {{"NODE", m.node}, {"BACKUP_ID", m.id}},
                 "deleted backup " + m.id + " of " + backup::format_time_utc(m.created_at) + " (" + why + ")");
      json::object params{{"id", m.id}, {"node", m.node}, {"created_at", backup::format_time_utc(m.created_at)}};
      AuditRecord a{to_unix_ms(d.clock_.now()), 0, static_cast<std::int64_t>(::getpid()), "backup.prune",
                    json::serialize(params), true, "deleted by " + why};
      if (auto au = d.store_->append_audit(a); !au) spdlog::error("cannot write audit log: {}", au.error().message);
    }
    if (prune_again) {
      prune_again = false;
      prune();
    }
  }

  // Re-reads the schedule from the live config (reload may change it), runs a due backup,
  // and re-arms the timer. `startup`: also take one backup when a run was missed while down.
  void tick(bool startup) {
    if (stopped) return;
    const BackupConfig& cfg = d.config_.backup;
    const std::string text = cfg.enabled && !cfg.directory.empty() ? cfg.schedule : std::string();
    const SysTime now = d.clock_.now();
    if (text != schedule_text) {
      schedule_text = text;
      schedule.reset();
      next_due.reset();
      if (!text.empty()) {
        auto s = backup::parse_schedule(text);
        if (!s) {
          spdlog::error("backup.schedule '{}' is not usable: {}; no scheduled backups", text, s.error().message);
        } else {
          schedule = s.value();
          next_due = backup::next_run(*schedule, now);
          if (next_due)
            spdlog::info("backups scheduled '{}' (UTC); next at {}", text, backup::format_time_utc(*next_due));
        }
      }
      if (startup && schedule) {
        std::optional<SysTime> last;
        {
          auto lk = d.store_->lock();
          if (auto l = backup::catalog_list(d.store_->raw()); l)
            for (auto& e : *l)
              if (!backup::is_wal_segment(e.manifest)) {
                last = e.manifest.created_at;
                break;
              }
        }
        if (backup::missed_run(*schedule, last, now)) {
          spdlog::info("a scheduled backup was due while drd was down (last backup {}); taking one now",
                       backup::format_time_utc(*last));
          run_scheduled();
        }
      }
    } else if (schedule && next_due && now >= *next_due) {
      run_scheduled();
      next_due = backup::next_run(*schedule, now);
    }
    auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(backup_rpc::kScheduleRecheck);
    if (next_due) {
      auto until = std::chrono::duration_cast<std::chrono::milliseconds>(*next_due - now);
      wait = std::max(std::chrono::milliseconds(10), std::min(wait, until));
    }
    timer->expires_after(wait);
    timer->async_wait([self = d.backup_](const boost::system::error_code& ec) {
      if (!ec && !self->stopped) self->tick(false);
    });
  }

  void run_scheduled() {
    if (!d.acts()) return;  // multi-host: only the leading drd takes scheduled backups
    Request req;
    req.scheduled = true;
    launch(req, [](Result<json::value> r) {
      // Successes and engine failures are logged by finish_backup; refusals only here.
      if (!r && r.error().code != Errc::io && r.error().code != Errc::corrupt)
        spdlog::warn("scheduled backup skipped: {}", r.error().message);
    }, {});
  }
};

}  // namespace drd
