// Backups through the control socket and on a schedule (docs/backups.md, docs/rpc.md):
// backup.create, backup.list, backup.verify, restore, the schedule timer and retention.
//
// Threading: every Daemon/BackupRuntime method here runs on the control strand and only
// decides, validates and touches the catalog (the state store's connection, under its lock).
// The blocking work (copying, compressing, decrypting, deleting files) runs on the
// runtime's two BlockingWorkers — `worker` for backups and retention deletions, `checker`
// for verify and restore, so a long verify never delays a scheduled backup — and its result
// is posted back to the control strand. Standby snapshots run on the cluster worker,
// between replication steps (the replicator rewrites a standby's -wal under any reader).
//
// Lifetime: jobs hold the runtime by shared_ptr and a copy of the strand; once
// backup_stop() has set `stopped`, late results are dropped without touching the Daemon.
// A backup still streaming at stop is cancelled (its partial files are removed);
// anything cut off harder is cleaned by prepare_directory() at the next start.
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
#include "daemon/backup_pg_runtime.hpp"
#include "daemon/backup_runtime.hpp"
#include "daemon/daemon.hpp"

namespace drd {

namespace fs = std::filesystem;

namespace {

constexpr std::chrono::seconds kScheduleRecheck{30};       // notices reloads and wall-clock steps
constexpr std::chrono::milliseconds kProgressEvery{100};   // at most ~10 progress notifications/s

Result<std::string> str_param(const json::object& p, const char* key) {
  auto* v = p.if_contains(key);
  if (!v || v->is_null()) return std::string();
  if (!v->is_string()) return make_error(Errc::invalid_argument, std::string("parameter \"") + key + "\" must be a string");
  return std::string(v->as_string());
}

Result<bool> bool_param(const json::object& p, const char* key) {
  auto* v = p.if_contains(key);
  if (!v || v->is_null()) return false;
  if (!v->is_bool()) return make_error(Errc::invalid_argument, std::string("parameter \"") + key + "\" must be true or false");
  return v->as_bool();
}

// Forwards progress from a worker thread: rate-limited there, delivered on the control strand.
backup::Progress forward_progress(ProgressSink sink, asio::strand<asio::io_context::executor_type> strand) {
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

}  // namespace

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
  std::set<std::string> restoring;          // standbys being re-seeded from a backup
  // Schedule (control strand).
  std::string schedule_text;                // as armed; compared with the live config
  std::optional<backup::Schedule> schedule;
  std::optional<SysTime> next_due;
  bool prune_running = false, prune_again = false;

  struct Request {
    std::string name, node, kind;
    bool scheduled = false;
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

  Result<std::string> choose_node(const std::string& requested) const {
    if (!requested.empty()) return requested;
    if (d.primary_.empty())
      return make_error(Errc::unavailable, "no primary has been chosen yet (drd is starting, or no node is healthy)",
                        "retry in a moment, or name a node with --node");
    if (d.config_.backup.prefer_standby) {
      for (auto& name : d.order_) {
        if (name == d.primary_ || is_fenced(name)) continue;
        if (d.nodes_.at(name).health.health == Health::up) return name;
      }
    }
    return d.primary_;
  }

  bool is_fenced(const std::string& name) const {
    return std::find(d.fenced_.begin(), d.fenced_.end(), name) != d.fenced_.end();
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
                              "back up the primary " + d.primary_ + " instead"));
    if (d.nodes_.at(*node).health.health == Health::down)
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
    const bool standby = *node != d.primary_;
    auto started = d.clock_.steady();
    auto done = [this, node = *node, reply, started](Result<backup::Manifest> m) {
      finish_backup(node, std::move(m), started, reply);
    };
    if (pg) {  // pg_basebackup / pg_dump reads a standby as safely as the primary
      run_pg_backup(cfg, *nc, std::move(info), req.kind == "logical", forward_progress(progress, strand), done);
      return;
    }
    if (!standby) {
      // WAL archiving (point-in-time restore) starts before the snapshot does.
      auto self = d.backup_;
      d.archive_arm(*node, [self, cfg, db = nc->sqlite_path, info = std::move(info), progress, done](
                               std::shared_ptr<backup::WalArchiver> arch) mutable {
        if (self->stopped) return;
        auto after = [self, arch, done](Result<backup::Manifest> m) {
          self->d.archive_full_done(arch, m);
          done(std::move(m));
        };
        self->run_backup(cfg, db, std::move(info), forward_progress(progress, self->strand), after, {});
      });
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
        self->run_backup(cfg, snap, std::move(info), forward_progress(progress, self->strand), done, snap);
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
    auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(kScheduleRecheck);
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

// ---- Daemon methods ---------------------------------------------------------

void Daemon::backup_start() {
  if (!backup_) backup_ = std::make_shared<BackupRuntime>(*this);
  {  // backup age counts from the newest backup on record, not from drd's start
    auto lk = store_->lock();
    if (auto list = backup::catalog_list(store_->raw()); list)
      for (auto& e : *list)
        if (!backup::is_wal_segment(e.manifest)) {
          mon_->on_backup(e.manifest.created_at, true, e.manifest.size_bytes);
          break;
        }
  }
  archive_start();
  pg_archive_start();
  const BackupConfig cfg = config_.backup;
  if (cfg.directory.empty()) {
    if (cfg.enabled) spdlog::warn("backup.enabled is set but backup.directory is not; no backups");
    return;
  }
  auto self = backup_;
  bool posted = backup_->worker->post([self, cfg] {
    auto removed = bkrt::prepare_directory(cfg.directory);
    // Complete backups (manifest written) are candidates for the catalog: a drd stopped
    // between finishing the files and inserting the row left one the catalog never saw.
    auto found = removed ? backup::scan_directory(cfg.directory) : std::vector<backup::CatalogEntry>{};
    auto settings = backup::BackupSettings::from_config(cfg);
    std::optional<Error> settings_error;
    if (!settings) settings_error = settings.error();
    self->post_result([self, removed = std::move(removed), found = std::move(found), settings_error,
                       dir = cfg.directory] {
      if (self->stopped) return;
      if (!removed) {
        log::event(spdlog::level::err, "backup", {}, removed.error().message);
        self->prepare_error = removed.error();
      } else {
        self->prepared = true;
        for (auto& p : *removed) spdlog::info("removed leftover of an interrupted backup: {}", p);
        self->adopt_uncatalogued(found);
      }
      if (settings_error)
        log::event(spdlog::level::err, "backup", {},
                   "backups will fail until the configuration is fixed: " + settings_error->message);
      self->tick(true);
    });
  });
  if (!posted) spdlog::error("cannot prepare the backup directory: worker not running");
}

void Daemon::backup_stop() {
  pg_archive_stop();
  archive_stop();
  if (!backup_) return;
  backup_->stopped = true;
  backup_->cancel->store(true);
  backup_->timer->cancel();
  backup_->timer.reset();
  // Each waits up to 2 s for a running job (cancelled backups end at their next chunk).
  backup_->worker.reset();
  backup_->checker.reset();
}

void Daemon::backup_create(const json::object& params, Reply reply, ProgressSink progress) {
  if (stopped_) return reply(make_error(Errc::unavailable, "drd is stopping"));
  // A request may come before backup_start() (between the first ping and the settled primary).
  if (!backup_) backup_ = std::make_shared<BackupRuntime>(*this);
  BackupRuntime::Request req;
  for (auto [key, out] : {std::pair{"name", &req.name}, std::pair{"node", &req.node}, std::pair{"kind", &req.kind}}) {
    auto v = str_param(params, key);
    if (!v) return reply(v.error());
    *out = *v;
  }
  if (req.name.size() > 200) return reply(make_error(Errc::invalid_argument, "parameter \"name\" is longer than 200 characters"));
  backup_->launch(std::move(req), std::move(reply), std::move(progress));
}

// WAL segment rows only with {"segments": true}: each full backup sums them up in "restorable".
Result<json::value> Daemon::backup_list(const json::object& params) {
  auto segments = bool_param(params, "segments");
  if (!segments) return segments.error();
  Result<std::vector<backup::CatalogEntry>> list = make_error(Errc::internal, "");
  {
    auto lk = store_->lock();
    list = backup::catalog_list(store_->raw());
  }
  if (!list) return list.error();
  return json::value(backups_json(*list, *segments));
}

namespace {

// id or path, as both verify and restore take them.
struct RefParams {
  std::string id, path;
};
Result<RefParams> ref_params(const json::object& params) {
  RefParams r;
  auto id = str_param(params, "id");
  if (!id) return id.error();
  auto path = str_param(params, "path");
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
Result<backup::CatalogEntry> catalog_entry(SqliteStateStore& store, const std::string& id) {
  auto lk = store.lock();
  auto e = backup::catalog_get(store.raw(), id);
  if (e && backup::is_wal_segment(e->manifest)) return backup::catalog_get(store.raw(), e->manifest.parent);
  return e;
}

}  // namespace

void Daemon::backup_verify(const json::object& params, Reply reply) {
  if (stopped_) return reply(make_error(Errc::unavailable, "drd is stopping"));
  // A request may come before backup_start() (between the first ping and the settled primary).
  if (!backup_) backup_ = std::make_shared<BackupRuntime>(*this);
  auto rp = ref_params(params);
  if (!rp) return reply(rp.error());
  std::optional<backup::CatalogEntry> entry;
  if (!rp->id.empty()) {
    auto e = catalog_entry(*store_, rp->id);
    if (!e) return reply(e.error());
    entry = e.value();
  }
  const BackupConfig cfg = config_.backup;
  auto self = backup_;
  std::string path = rp->path;
  std::vector<NodeConfig> pg_nodes;
  for (auto& n : config_.nodes)
    if (n.engine == Engine::postgresql) pg_nodes.push_back(n);
  ProcessRunner* runner = &runner_;
  bool posted = backup_->checker->post([self, cfg, entry, path, reply, pg_nodes, runner]() mutable {
    backup::BackupRef ref;
    auto work = [&]() -> Result<backup::VerifyReport> {
      std::string manifest_problem;
      auto opened = bkrt::open_backup(cfg, entry, path, "verify", &manifest_problem);
      if (!opened) return opened.error();
      ref = opened->ref;
      const auto& key = opened->key;
      // verify_backup makes (and removes) its scratch folder under here.
      fs::path scratch = cfg.directory.empty() ? ref.data.parent_path() : cfg.directory;
      auto rep = ref.manifest && ref.manifest->engine == "postgresql"
                     ? bkrt::verify_pg(ref, key.ptr(), scratch, *runner, pg_nodes)
                     : backup::verify_backup(ref, key.ptr(), scratch);
      if (ref.manifest && ref.manifest->kind == "full" && ref.manifest->engine == "sqlite")
        if (auto seg = backup::verify_segments(ref.data.parent_path(), ref.manifest->id, key.ptr())) {
          rep.checks.push_back(*seg);
          rep.ok = rep.ok && seg->ok;
        }
      if (ref.manifest && ref.manifest->content == "pg-tar")
        if (auto w = backup::verify_pg_wal(ref.data.parent_path() / backup::kPgWalFolder, *ref.manifest, key.ptr())) {
          rep.checks.push_back(*w);
          rep.ok = rep.ok && w->ok;
        }
      if (!manifest_problem.empty()) {  // checked against the catalog's copy; the file itself is bad
        for (auto& c : rep.checks)
          if (c.name == "manifest") c = backup::Check{"manifest", false, manifest_problem};
        rep.ok = false;
      }
      return rep;
    };
    Result<backup::VerifyReport> out = work();
    self->post_result([self, out = std::move(out), ref, reply]() mutable {
      if (self->stopped) return;
      if (!out) return reply(out.error());
      const auto& rep = *out;
      // Record the verdict when the backup verified is one of the catalog's.
      std::string id = ref.manifest ? ref.manifest->id : "";
      if (!id.empty()) {
        auto& d = self->d;
        auto lk = d.store_->lock();
        auto e = backup::catalog_get(d.store_->raw(), id);
        if (e && bkrt::same_file(e->data_file(), ref.data)) {
          if (auto st = backup::catalog_mark_verified(d.store_->raw(), id, rep.ok, d.clock_.now(), bkrt::failed_checks(rep));
              !st)
            spdlog::error("cannot record the verification of {}: {}", id, st.error().message);
        }
      }
      log::event(rep.ok ? spdlog::level::info : spdlog::level::err, "backup_verify", {{"BACKUP_ID", rep.id}},
                 rep.ok ? "backup " + rep.id + " verified" : "backup " + rep.id + " FAILED verification: " + bkrt::failed_checks(rep));
      json::array checks;
      for (auto& c : rep.checks) checks.push_back(json::object{{"name", c.name}, {"ok", c.ok}, {"detail", c.detail}});
      reply(json::value(json::object{{"ok", rep.ok}, {"id", rep.id}, {"checks", std::move(checks)}}));
    });
  });
  if (!posted) reply(make_error(Errc::unavailable, "drd is stopping"));
}

void Daemon::restore(const json::object& params, Reply reply, ProgressSink progress) {
  if (stopped_) return reply(make_error(Errc::unavailable, "drd is stopping"));
  // A request may come before backup_start() (between the first ping and the settled primary).
  if (!backup_) backup_ = std::make_shared<BackupRuntime>(*this);
  auto rp = ref_params(params);
  if (!rp) return reply(rp.error());
  auto target_p = str_param(params, "target");
  if (!target_p) return reply(target_p.error());
  auto node_p = str_param(params, "node");
  if (!node_p) return reply(node_p.error());
  auto to_time_p = str_param(params, "to_time");
  if (!to_time_p) return reply(to_time_p.error());
  auto force = bool_param(params, "force");
  if (!force) return reply(force.error());
  const std::string target = *target_p, node = *node_p;
  if (target.empty() && node.empty())
    return reply(make_error(Errc::invalid_argument, "missing parameter \"target\" (or \"node\")",
                            "restore into a new file with --target PATH"));
  if (!target.empty() && !node.empty())
    return reply(make_error(Errc::invalid_argument, "give \"target\" or \"node\", not both"));

  // PostgreSQL onto a node or into a database URL: decided in bkrt::restore_pg once the backup is open.
  std::optional<bkrt::PgRestoreTarget> pg_where;
  if (const NodeConfig* pn = node.empty() ? nullptr : config_.find_node(node); pn && pn->engine == Engine::postgresql) {
    pg_where = bkrt::PgRestoreTarget{"", *pn, node == primary_, *force};
    if (const NodeConfig* pc = config_.find_node(primary_)) pg_where->primary = *pc;
    pg_where->node_on_other_host = coord_ && node != config_.local;
    if (node != primary_ && backup_->restoring.count(node))
      return reply(make_error(Errc::conflict, "a restore onto " + node + " is already running"));
  }
  else if (!target.empty() && bkrt::is_pg_url(target))
    pg_where = bkrt::PgRestoreTarget{target, std::nullopt, false, *force};
  if (!node.empty() && !pg_where) {
    const NodeConfig* nc = config_.find_node(node);
    if (!nc) return reply(make_error(Errc::not_found, "no node named '" + node + "'"));
    if (node != primary_)
      return reply(make_error(Errc::refused,
                              node + " is a standby: standbys are re-seeded from the primary automatically, "
                                     "so restoring a backup onto one would be overwritten",
                              "use `drctl rejoin " + node + "` to rebuild it, or --target PATH to restore into a new file"));
    if (!*force)
      return reply(make_error(Errc::refused,
                              node + " is the live primary: restoring onto it would replace the data applications are using",
                              "restore with --target PATH and switch over, or pass --force"));
    return restore_onto_primary(params, std::move(reply));
  }

  if (!pg_where && fs::path(target).is_relative())
    return reply(make_error(Errc::invalid_argument, "parameter \"target\" must be an absolute path, got '" + target + "'"));
  std::optional<SysTime> to_time;
  if (!to_time_p->empty()) {
    auto t = bkrt::parse_restore_time(*to_time_p);
    if (!t) return reply(t.error());
    to_time = *t;
  }
  std::optional<backup::CatalogEntry> entry;
  if (!rp->id.empty()) {
    auto e = catalog_entry(*store_, rp->id);
    if (!e) return reply(e.error());
    entry = e.value();
  }
  // Files that belong to nodes: a restore there would pull data out from under drd.
  std::vector<std::pair<std::string, fs::path>> node_files;
  for (auto& n : config_.nodes)
    if (n.engine == Engine::sqlite) node_files.emplace_back(n.name, n.sqlite_path);
  if (config_.current_link) node_files.emplace_back("current_link", *config_.current_link);

  const BackupConfig cfg = config_.backup;
  auto self = backup_;
  auto sink = forward_progress(progress, backup_->strand);
  bool overwrite = *force;
  std::string path = rp->path;
  std::vector<NodeConfig> pg_nodes;
  for (auto& n : config_.nodes)
    if (n.engine == Engine::postgresql) pg_nodes.push_back(n);
  ProcessRunner* runner = &runner_;
  // One restore at a time onto a standby: released when its reply goes out (on this strand).
  if (pg_where && pg_where->node && !pg_where->node_is_primary) {
    backup_->restoring.insert(node);
    reply = [self, node, reply = std::move(reply)](Result<json::value> r) {
      self->restoring.erase(node);
      reply(std::move(r));
    };
  }
  const SysTime now = clock_.now();
  bool posted = backup_->checker->post([self, cfg, entry, path, target, to_time, node_files, overwrite, sink, reply,
                                        pg_where, pg_nodes, runner, now]() mutable {
    std::optional<bkrt::PreparedStandby> prepared;  // set: the swap follows on the cluster worker
    std::optional<backup::Manifest> safety;          // set: entered in the catalog with the reply
    auto work = [&]() -> Result<json::value> {
      for (auto& [name, file] : node_files)
        if (!pg_where && bkrt::same_file(target, file))
          return make_error(Errc::refused, "restore target " + target + " is the database file of " +
                                               (name == "current_link" ? "the current primary (current_link)" : "node " + name),
                            "use --node NODE to restore onto a node, or choose a new file");
      auto opened = bkrt::open_backup(cfg, entry, path, "restore", nullptr);
      if (!opened) return opened.error();
      const backup::BackupRef& ref = opened->ref;
      const auto& key = opened->key;
      backup::RestoreOptions opts;
      opts.allow_overwrite = overwrite;
      opts.key = key.ptr();
      std::string id = ref.manifest ? ref.manifest->id : ref.data.filename().string();
      const bool pg_backup = ref.manifest && ref.manifest->engine == "postgresql";
      if (pg_where && !pg_backup)
        return make_error(Errc::invalid_argument, "backup " + id + " is not a PostgreSQL backup; it cannot restore into " +
                                                      (pg_where->node ? "node " + pg_where->node->name : "a database URL"));
      if (pg_backup && pg_where && pg_where->node && !pg_where->node_is_primary && !to_time &&
          ref.manifest->content == "pg-tar") {
        const NodeConfig& n = *pg_where->node;
        if (pg_where->node_on_other_host)
          return make_error(Errc::refused,
                            "restore onto " + n.name + ": its data folder is on another host; nothing was changed",
                            "in multi-host mode only the drd on " + n.name + "'s own host touches its files, and this "
                            "one leads; restore the backup with --target PATH on that host and start the standby from "
                            "it by hand, or rebuild it from the primary with `drctl rejoin " + n.name + " --reclone`");
        if (!pg_where->primary)
          return make_error(Errc::unavailable, "no primary is known, so " + n.name + " would have nothing to stream "
                                               "from; nothing was changed", "retry once drd has settled a primary");
        auto p = bkrt::prepare_standby_restore(ref, key.ptr(), n, *pg_where->primary, *runner, sink);
        if (!p) return p.error();
        prepared = std::move(p.value());
        return json::value(nullptr);
      }
      if (pg_backup) {
        // A dump onto the live primary (--force) drops and recreates its objects in one
        // transaction: a physical safety backup of the primary comes first, as for SQLite.
        const bool onto_primary = pg_where && pg_where->node && pg_where->node_is_primary && pg_where->force &&
                                  !to_time && ref.manifest->content == "pg-dump";
        if (onto_primary) {
          const NodeConfig& n = *pg_where->node;
          if (cfg.directory.empty())
            return make_error(Errc::refused, "restoring onto the primary takes a safety backup first, and backups are "
                                             "not configured; nothing was changed",
                              "set disaster_recovery.backup.directory");
          backup::NewBackup info;
          info.name = "before-restore";
          info.node = n.name;
          info.now = now;
          auto m = bkrt::take_pg_backup(cfg, *runner, n, std::move(info), /*logical=*/false, {}, nullptr);
          if (!m)
            return make_error(m.error().code, "the safety backup of " + n.name + " failed, so nothing was restored: " +
                                                  m.error().message);
          safety = m.value();
        }
        auto r = bkrt::restore_pg(ref, key.ptr(), pg_where.value_or(bkrt::PgRestoreTarget{target, std::nullopt, false, overwrite}),
                                  *runner, pg_nodes, sink, to_time);
        if (!r && safety)
          return make_error(r.error().code, r.error().message + " (safety backup " + safety->id + " was taken first)");
        if (r && safety && r->is_object()) r->as_object()["safety_backup"] = safety->id;
        return r;
      }
      json::object out;
      if (to_time) {
        if (!ref.manifest)
          return make_error(Errc::invalid_argument, "point-in-time restore needs a backup with a manifest; " +
                                                        ref.data.string() + " has none");
        auto r = backup::restore_sqlite_to_time(ref, target, *to_time, opts);
        if (!r) return r.error();
        out = {{"restored_to", r->restore.restored_to.string()}, {"integrity", r->restore.integrity}, {"id", id},
               {"bytes", r->restore.bytes}, {"applied_segments", r->applied_segments}};
        if (r->restored_time) out["restored_time"] = backup::format_time_utc(*r->restored_time);
      } else {
        auto r = backup::restore_sqlite(ref, target, opts, sink);
        if (!r) return r.error();
        out = {{"restored_to", r->restored_to.string()}, {"integrity", r->integrity}, {"id", id}, {"bytes", r->bytes}};
      }
      return json::value(std::move(out));
    };
    Result<json::value> res = work();
    if (res && prepared) {
      self->post_result([self, prepared = std::move(*prepared), reply]() mutable {
        if (self->stopped) return;  // the prepared folder is removed by the next restore onto that node
        self->swap_standby(std::move(prepared), std::move(reply));
      });
      return;
    }
    // A target URL may hold a password.
    const std::string where = pg_where && pg_where->node ? "node " + pg_where->node->name : redact_url(target);
    self->post_result([self, res = std::move(res), where, safety, cfg, reply]() mutable {
      if (self->stopped) return;
      if (safety) {
        Status st = ok_status();
        {
          auto lk = self->d.store_->lock();
          st = backup::catalog_insert(self->d.store_->raw(), *safety, cfg.directory);
        }
        log::event(st ? spdlog::level::info : spdlog::level::err, "backup",
                   {{"NODE", safety->node}, {"BACKUP_ID", safety->id}},
                   "safety backup " + safety->id + " of " + safety->node + " before the restore" +
                       (st ? "" : " is in " + cfg.directory.string() + " but not in the catalog: " + st.error().message));
      }
      if (res)
        log::event(spdlog::level::info, "restore", {{"BACKUP_ID", std::string(res->as_object().at("id").as_string())}},
                   "restored backup " + std::string(res->as_object().at("id").as_string()) + " into " +
                       std::string(res->as_object().at("restored_to").as_string()));
      else
        log::event(spdlog::level::err, "restore", {}, "restore into " + where + " failed: " + res.error().message);
      reply(std::move(res));
    });
  });
  if (!posted) reply(make_error(Errc::unavailable, "drd is stopping"));
}

void Daemon::BackupRuntime::swap_standby(bkrt::PreparedStandby prep, Reply reply) {
  auto self = d.backup_;
  const NodeConfig* nc = d.config_.find_node(prep.node);
  const std::optional<std::string> os_user = nc ? nc->os_user : std::nullopt;
  ProcessRunner* runner = &d.runner_;
  // Removes folders as the node's os_user on the restore worker: a whole data folder can take
  // minutes, and the cluster worker must stay free for ticks and failovers. Returns those left.
  auto remove = [runner, os_user](const std::vector<std::string>& dirs) {
    std::vector<std::string> left;
    for (const auto& dir : dirs) {
      ProcessSpec spec{{"rm", "-rf", "--", dir}};
      spec.user = os_user;
      spec.timeout = std::chrono::hours(1);
      auto o = runner->run(spec);
      if (!o || !o->success()) left.push_back(dir);
    }
    return left;
  };
  if (!d.driver_ || !d.cluster_worker_) {
    (void)checker->post([remove, dir = prep.dir.string()] { (void)remove({dir}); });
    return reply(make_error(Errc::unavailable, "drd is not managing the cluster yet; " + prep.node + " was not touched"));
  }
  log::event(spdlog::level::warn, "restore", {{"BACKUP_ID", prep.id}, {"NODE", prep.node}},
             "re-seeding standby " + prep.node + " from backup " + prep.id + ": stopping it to swap its data folder");
  auto* driver = d.driver_.get();
  const std::string dir = prep.dir.string();
  bool posted = d.cluster_worker_->post([self, driver, prep, reply, remove]() mutable {
    std::vector<std::string> discard;
    auto out = driver->restore_standby(prep.node, prep.dir.string(), discard);
    // Back on the strand, where `checker` is valid until stopped; the reply waits for the removal.
    self->post_result([self, prep, out = std::move(out), discard, reply, remove]() mutable {
      if (self->stopped) return;  // folders left: "<data_dir>.drd-old-*" / ".drd-discard-*"
      bool queued = self->checker->post([self, prep, out, discard, reply, remove]() mutable {
        auto left = remove(discard);
        self->post_result([self, prep, out = std::move(out), discard, left, reply]() mutable {
          if (self->stopped) return;
          self->finish_standby(prep, std::move(out), discard, left, reply);
        });
      });
      if (!queued) self->finish_standby(prep, std::move(out), discard, discard, reply);
    });
  });
  if (!posted) {
    (void)checker->post([remove, dir] { (void)remove({dir}); });
    reply(make_error(Errc::unavailable, "drd is stopping; " + prep.node + " was not touched"));
  }
}

void Daemon::BackupRuntime::finish_standby(const bkrt::PreparedStandby& prep, Result<StandbyRestoreOutcome> out,
                                           const std::vector<std::string>& discard,
                                           const std::vector<std::string>& left, const Reply& reply) {
  std::string removal;
  for (const auto& dir : left) removal += (removal.empty() ? "" : ", ") + dir;
  if (!removal.empty()) removal = "; could not remove " + removal + " (remove it by hand)";
  if (!out) {
    log::event(spdlog::level::err, "restore", {{"BACKUP_ID", prep.id}, {"NODE", prep.node}},
               "restore of backup " + prep.id + " onto " + prep.node + " failed: " + out.error().message + removal);
    Error e = out.error();
    e.message += removal;
    return reply(e);
  }
  // As after a rejoin: the driver lifted a fence it had on the node.
  if (auto s = d.cluster_store().set_fenced(prep.node, false); !s)
    spdlog::error("restore onto {}: cannot record that it is no longer fenced: {}", prep.node, s.error().message);
  d.fenced_.erase(std::remove(d.fenced_.begin(), d.fenced_.end(), prep.node), d.fenced_.end());
  const std::string detail =
      prep.detail + "; " + out->detail +
      (removal.empty() ? (discard.empty() ? "" : "; the old data folder was removed") : removal);
  log::event(spdlog::level::info, "restore", {{"BACKUP_ID", prep.id}, {"NODE", prep.node}},
             "restored backup " + prep.id + " onto standby " + prep.node + ": " + detail);
  reply(json::value(json::object{{"restored_to", prep.node},
                                 {"id", prep.id},
                                 {"bytes", prep.bytes},
                                 {"detail", detail},
                                 {"wal_files", prep.wal_files},
                                 {"streaming_from", out->streaming_from}}));
}

}  // namespace drd
