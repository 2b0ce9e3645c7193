// Backups through the control socket and on a schedule (docs/backups.md, docs/rpc.md):
// backup.create, backup.list, backup.verify, the schedule timer and retention (restore:
// daemon_restore.cpp; the runtime's state: backup_runtime_state.hpp).
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
#include "daemon/backup/service/backup_runtime_state.hpp"

namespace drd {

namespace fs = std::filesystem;
using namespace backup_rpc;

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
  if (!pg_archive_)
    pg_archive_ = std::make_unique<PgArchiveService>(PgArchiveService::Wiring{
        control_, runner_, clock_, *store_, [this] { return config_.backup; },
        [this]() -> std::optional<NodeConfig> {
          const NodeConfig* nc = state_.primary().empty() ? nullptr : config_.find_node(state_.primary());
          return nc ? std::optional<NodeConfig>(*nc) : std::nullopt;
        }});
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
  if (pg_archive_) pg_archive_->stop();
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
    auto v = text_param(params, key);
    if (!v) return reply(v.error());
    *out = *v;
  }
  if (req.name.size() > 200) return reply(make_error(Errc::invalid_argument, "parameter \"name\" is longer than 200 characters"));
  backup_->launch(std::move(req), std::move(reply), std::move(progress));
}

void Daemon::pitr_rebase(const std::string& node, Reply reply) {
  if (stopped_) return reply(make_error(Errc::unavailable, "drd is stopping"));
  if (!backup_) backup_ = std::make_shared<BackupRuntime>(*this);
  BackupRuntime::Request req;
  req.name = "pitr-base";
  req.node = node;
  req.require_archive = true;
  backup_->launch(std::move(req), std::move(reply), {});
}

// WAL segment rows only with {"segments": true}: each full backup sums them up in "restorable".
Result<json::value> Daemon::backup_list(const json::object& params) {
  auto segments = flag_param(params, "segments");
  if (!segments) return segments.error();
  Result<std::vector<backup::CatalogEntry>> list = make_error(Errc::internal, "");
  {
    auto lk = store_->lock();
    list = backup::catalog_list(store_->raw());
  }
  if (!list) return list.error();
  return json::value(backups_json(*list, *segments));
}


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

}  // namespace drd
