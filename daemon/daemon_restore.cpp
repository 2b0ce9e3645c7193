// Restores through the control socket (docs/backups.md "Restore", docs/rpc.md): `restore`
// into a new file or folder, a database URL, a standby re-seeded from a physical backup, or the
// live primary (SQLite: daemon_archive.cpp; PostgreSQL rolled back: swap_primary below).
// Threading as in daemon_backup.cpp: decisions on the control strand, blocking work on the
// runtime's `checker` worker, folder swaps on the cluster worker.
#include "daemon/backup/service/backup_runtime_state.hpp"

namespace drd {

namespace fs = std::filesystem;
using namespace backup_rpc;

namespace {

// "; could not remove A, B (remove it by hand)" for the folders left, "" when none.
std::string removal_note(const std::vector<std::string>& left) {
  std::string dirs;
  for (const auto& dir : left) dirs += (dirs.empty() ? "" : ", ") + dir;
  return dirs.empty() ? "" : "; could not remove " + dirs + " (remove it by hand)";
}

// `drctl restore ID --node PRIMARY` with a physical PostgreSQL backup, on the checker worker:
// the refusals, then bkrt::prepare_primary_restore with the safety backup as its last step
// before anything is written (`safety` is set once taken, also when a later step fails).
Result<bkrt::PreparedPrimary> prepare_rollback(const BackupConfig& cfg, const backup::BackupRef& ref,
                                               const backup::MasterKey* key, const bkrt::PgRestoreTarget& where,
                                               std::optional<SysTime> to_time, ProcessRunner& runner,
                                               const backup::Progress& progress, SysTime now,
                                               std::optional<backup::Manifest>& safety) {
  const NodeConfig& n = *where.node;
  const std::string id = ref.manifest->id;
  if (!where.force)
    return make_error(Errc::refused,
                      n.name + " is the live primary: restoring backup " + id + " onto it rolls the whole cluster back "
                               "(every transaction since " + (to_time ? "then" : "the backup") +
                               " is lost, on every node); nothing was changed",
                      "pass --force (drd takes a safety backup first), or restore it with --target PATH into a new "
                      "data folder and check it first (to rebuild a standby from it instead, use --node STANDBY)");
  if (where.multi_host)
    return make_error(Errc::refused,
                      "rolling the primary back to a backup is not supported in multi-host mode (another drd could "
                      "fail over while it is stopped); nothing was changed",
                      "restore it with --target PATH on " + n.name + "'s host, or stop the other drds first");
  if (cfg.directory.empty())
    return make_error(Errc::refused, "restoring onto the primary takes a safety backup first, and backups are not "
                                     "configured; nothing was changed",
                      "set disaster_recovery.backup.directory");
  auto take_safety = [&]() -> Status {
    backup::NewBackup info;
    info.name = "before-restore";
    info.node = n.name;
    info.now = now;
    auto m = bkrt::take_pg_backup(cfg, runner, n, std::move(info), /*logical=*/false, {}, nullptr);
    if (!m)
      return make_error(m.error().code, "the safety backup of " + n.name + " failed, so nothing was restored: " +
                                            m.error().message);
    safety = m.value();
    return ok_status();
  };
  auto p = bkrt::prepare_primary_restore(ref, key, n, to_time, runner, progress, take_safety);
  if (!p && safety)
    return make_error(p.error().code, p.error().message + " (safety backup " + safety->id + " was taken first)",
                      p.error().hint);
  return p;
}

// What a restore does on the checker worker (job: the request as the control strand settled
// it). Sets `work.prepared` / `work.prepared_primary` when a folder swap must follow on the
// cluster worker, and `work.safety` once a safety backup was taken.
struct RestoreJob {
  BackupConfig cfg;
  std::optional<backup::CatalogEntry> entry;
  std::string path, target;
  std::optional<SysTime> to_time;
  std::vector<std::pair<std::string, fs::path>> node_files;  // files a restore must not overwrite
  bool overwrite = false;
  backup::Progress sink;
  std::optional<bkrt::PgRestoreTarget> pg_where;
  std::vector<NodeConfig> pg_nodes;
  ProcessRunner* runner = nullptr;
  SysTime now{};
};
struct RestoreWork {
  std::optional<bkrt::PreparedStandby> prepared;          // set: the swap follows on the cluster worker
  std::optional<bkrt::PreparedPrimary> prepared_primary;  // likewise, for the primary
  std::optional<backup::Manifest> safety;                 // set: entered in the catalog with the reply
};
Result<json::value> run_restore_job(const RestoreJob& job, RestoreWork& work) {
  auto& prepared = work.prepared;
  auto& prepared_primary = work.prepared_primary;
  auto& safety = work.safety;
  for (auto& [name, file] : job.node_files)
    if (!job.pg_where && bkrt::same_file(job.target, file))
      return make_error(Errc::refused, "restore job.target " + job.target + " is the database file of " +
                                           (name == "current_link" ? "the current primary (current_link)" : "node " + name),
                        "use --node NODE to restore onto a node, or choose a new file");
  auto opened = bkrt::open_backup(job.cfg, job.entry, job.path, "restore", nullptr);
  if (!opened) return opened.error();
  const backup::BackupRef& ref = opened->ref;
  const auto& key = opened->key;
  backup::RestoreOptions opts;
  opts.allow_overwrite = job.overwrite;
  opts.key = key.ptr();
  std::string id = ref.manifest ? ref.manifest->id : ref.data.filename().string();
  const bool pg_backup = ref.manifest && ref.manifest->engine == "postgresql";
  if (job.pg_where && !pg_backup)
    return make_error(Errc::invalid_argument, "backup " + id + " is not a PostgreSQL backup; it cannot restore into " +
                                                  (job.pg_where->node ? "node " + job.pg_where->node->name : "a database URL"));
  if (pg_backup && job.pg_where && job.pg_where->node && !job.pg_where->node_is_primary && !job.to_time &&
      ref.manifest->content == "pg-tar") {
    const NodeConfig& n = *job.pg_where->node;
    if (job.pg_where->node_on_other_host)
      return make_error(Errc::refused,
                        "restore onto " + n.name + ": its data folder is on another host; nothing was changed",
                        "in multi-host mode only the drd on " + n.name + "'s own host touches its files, and this "
                        "one leads; restore the backup with --job.target PATH on that host and start the standby from "
                        "it by hand, or rebuild it from the primary with `drctl rejoin " + n.name + " --reclone`");
    if (!job.pg_where->primary)
      return make_error(Errc::unavailable, "no primary is known, so " + n.name + " would have nothing to stream "
                                           "from; nothing was changed", "retry once drd has settled a primary");
    auto p = bkrt::prepare_standby_restore(ref, key.ptr(), n, *job.pg_where->primary, *job.runner, job.sink);
    if (!p) return p.error();
    prepared = std::move(p.value());
    return json::value(nullptr);
  }
  if (pg_backup && job.pg_where && job.pg_where->node && job.pg_where->node_is_primary && ref.manifest->content == "pg-tar") {
    auto p = prepare_rollback(job.cfg, ref, key.ptr(), *job.pg_where, job.to_time, *job.runner, job.sink, job.now, safety);
    if (!p) return p.error();
    prepared_primary = std::move(p.value());
    return json::value(nullptr);
  }
  if (pg_backup) {
    // A dump onto the live primary (--force) drops and recreates its objects in one
    // transaction: a physical safety backup of the primary comes first, as for SQLite.
    const bool onto_primary = job.pg_where && job.pg_where->node && job.pg_where->node_is_primary && job.pg_where->force &&
                              !job.to_time && ref.manifest->content == "pg-dump";
    if (onto_primary) {
      const NodeConfig& n = *job.pg_where->node;
      if (job.cfg.directory.empty())
        return make_error(Errc::refused, "restoring onto the primary takes a safety backup first, and backups are "
                                         "not configured; nothing was changed",
                          "set disaster_recovery.backup.directory");
      backup::NewBackup info;
      info.name = "before-restore";
      info.node = n.name;
      info.now = job.now;
      auto m = bkrt::take_pg_backup(job.cfg, *job.runner, n, std::move(info), /*logical=*/false, {}, nullptr);
      if (!m)
        return make_error(m.error().code, "the safety backup of " + n.name + " failed, so nothing was restored: " +
                                              m.error().message);
      safety = m.value();
    }
    auto r = bkrt::restore_pg(ref, key.ptr(), job.pg_where.value_or(bkrt::PgRestoreTarget{job.target, std::nullopt, false, job.overwrite}),
                              *job.runner, job.pg_nodes, job.sink, job.to_time);
    if (!r && safety)
      return make_error(r.error().code, r.error().message + " (safety backup " + safety->id + " was taken first)");
    if (r && safety && r->is_object()) r->as_object()["safety_backup"] = safety->id;
    return r;
  }
  json::object out;
  if (job.to_time) {
    if (!ref.manifest)
      return make_error(Errc::invalid_argument, "point-in-time restore needs a backup with a manifest; " +
                                                    ref.data.string() + " has none");
    auto r = backup::restore_sqlite_to_time(ref, job.target, *job.to_time, opts);
    if (!r) return r.error();
    out = {{"restored_to", r->restore.restored_to.string()}, {"integrity", r->restore.integrity}, {"id", id},
           {"bytes", r->restore.bytes}, {"applied_segments", r->applied_segments}};
    if (r->restored_time) out["restored_time"] = backup::format_time_utc(*r->restored_time);
  } else {
    auto r = backup::restore_sqlite(ref, job.target, opts, job.sink);
    if (!r) return r.error();
    out = {{"restored_to", r->restored_to.string()}, {"integrity", r->integrity}, {"id", id}, {"bytes", r->bytes}};
  }
  return json::value(std::move(out));
}

}  // namespace

void Daemon::restore(const json::object& params, Reply reply, ProgressSink progress) {
  if (stopped_) return reply(make_error(Errc::unavailable, "drd is stopping"));
  // A request may come before backup_start() (between the first ping and the settled primary).
  if (!backup_) backup_ = std::make_shared<BackupRuntime>(*this);
  auto rp = ref_params(params);
  if (!rp) return reply(rp.error());
  auto target_p = text_param(params, "target");
  if (!target_p) return reply(target_p.error());
  auto node_p = text_param(params, "node");
  if (!node_p) return reply(node_p.error());
  auto to_time_p = text_param(params, "to_time");
  if (!to_time_p) return reply(to_time_p.error());
  auto force = flag_param(params, "force");
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
    pg_where = bkrt::PgRestoreTarget{"", *pn, node == state_.primary(), *force};
    if (const NodeConfig* pc = config_.find_node(state_.primary())) pg_where->primary = *pc;
    pg_where->node_on_other_host = link_ && node != config_.local;
    pg_where->multi_host = link_ != nullptr;
    if (backup_->restoring.count(node))
      return reply(make_error(Errc::conflict, "a restore onto " + node + " is already running"));
  }
  else if (!target.empty() && bkrt::is_pg_url(target))
    pg_where = bkrt::PgRestoreTarget{target, std::nullopt, false, *force};
  if (!node.empty() && !pg_where) {
    const NodeConfig* nc = config_.find_node(node);
    if (!nc) return reply(make_error(Errc::not_found, "no node named '" + node + "'"));
    if (node != state_.primary())
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
  if (to_time && !rp->id.empty())  // SQLite: a time nothing was archived for is refused, naming the gap
    if (auto st = pitr_check_time(*to_time); !st) return reply(st.error());
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
  std::vector<NodeConfig> pg_nodes;
  for (auto& n : config_.nodes)
    if (n.engine == Engine::postgresql) pg_nodes.push_back(n);
  // One restore at a time onto a node: released when its reply goes out (on this strand).
  if (pg_where && pg_where->node) {
    backup_->restoring.insert(node);
    reply = [self, node, reply = std::move(reply)](Result<json::value> r) {
      self->restoring.erase(node);
      reply(std::move(r));
    };
  }
  RestoreJob job{cfg, entry, rp->path, target, to_time, std::move(node_files), *force, std::move(sink), pg_where,
                 std::move(pg_nodes), &runner_, clock_.now()};
  bool posted = backup_->checker->post([self, job = std::move(job), reply]() mutable {
    RestoreWork work;
    Result<json::value> res = run_restore_job(job, work);
    auto& prepared = work.prepared;
    auto& prepared_primary = work.prepared_primary;
    auto& safety = work.safety;
    const auto& cfg = job.cfg;
    const auto& pg_where = job.pg_where;
    const auto& target = job.target;
    if (res && prepared_primary) {
      self->post_result([self, prepared = std::move(*prepared_primary), safety, cfg, reply]() mutable {
        if (self->stopped) return;  // the prepared folder is removed by the next restore onto that node
        self->insert_safety(*safety, cfg);
        self->swap_primary(std::move(prepared), safety->id, std::move(reply));
      });
      return;
    }
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
      if (safety) self->insert_safety(*safety, cfg);
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

void Daemon::BackupRuntime::discard_folders(std::vector<std::string> dirs, std::optional<std::string> os_user,
                                            std::function<void(std::vector<std::string>)> then) {
  auto self = d.backup_;
  ProcessRunner* runner = &d.runner_;
  // As the node's os_user: the folders are its; a whole data folder can take minutes, and the
  // cluster worker must stay free for ticks and failovers.
  bool queued = checker->post([self, runner, dirs, os_user, then]() mutable {
    std::vector<std::string> left;
    for (const auto& dir : dirs) {
      ProcessSpec spec{{"rm", "-rf", "--", dir}};
      spec.user = os_user;
      spec.timeout = std::chrono::hours(1);
      auto o = runner->run(spec);
      if (!o || !o->success()) left.push_back(dir);
    }
    self->post_result([self, left = std::move(left), then]() mutable {
      if (!self->stopped && then) then(std::move(left));
    });
  });
  if (!queued && then) then(std::move(dirs));
}

void Daemon::BackupRuntime::swap_standby(bkrt::PreparedStandby prep, Reply reply) {
  auto self = d.backup_;
  const NodeConfig* nc = d.config_.find_node(prep.node);
  const std::optional<std::string> os_user = nc ? nc->os_user : std::nullopt;
  if (!d.driver_ || !d.cluster_worker_) {
    discard_folders({prep.dir.string()}, os_user, {});
    return reply(make_error(Errc::unavailable, "drd is not managing the cluster yet; " + prep.node + " was not touched"));
  }
  log::event(spdlog::level::warn, "restore", {{"BACKUP_ID", prep.id}, {"NODE", prep.node}},
             "re-seeding standby " + prep.node + " from backup " + prep.id + ": stopping it to swap its data folder");
  auto* driver = d.driver_.get();
  bool posted = d.cluster_worker_->post([self, driver, prep, reply, os_user]() mutable {
    std::vector<std::string> discard;
    auto out = driver->restore_standby(prep.node, prep.dir.string(), discard);
    // Back on the strand, where `checker` is valid until stopped; the reply waits for the removal.
    self->post_result([self, prep, out = std::move(out), discard, reply, os_user]() mutable {
      if (self->stopped) return;  // folders left: "<data_dir>.drd-old-*" / ".drd-discard-*"
      self->discard_folders(discard, os_user, [self, prep, out, discard, reply](std::vector<std::string> left) {
        self->finish_standby(prep, out, discard, left, reply);
      });
    });
  });
  if (!posted) {
    discard_folders({prep.dir.string()}, os_user, {});
    reply(make_error(Errc::unavailable, "drd is stopping; " + prep.node + " was not touched"));
  }
}

void Daemon::BackupRuntime::finish_standby(const bkrt::PreparedStandby& prep, Result<StandbyRestoreOutcome> out,
                                           const std::vector<std::string>& discard,
                                           const std::vector<std::string>& left, const Reply& reply) {
  const std::string removal = removal_note(left);
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
  d.state_.unfence(prep.node);
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

void Daemon::BackupRuntime::insert_safety(const backup::Manifest& safety, const BackupConfig& cfg) {
  Status st = ok_status();
  {
    auto lk = d.store_->lock();
    st = backup::catalog_insert(d.store_->raw(), safety, cfg.directory);
  }
  log::event(st ? spdlog::level::info : spdlog::level::err, "backup", {{"NODE", safety.node}, {"BACKUP_ID", safety.id}},
             "safety backup " + safety.id + " of " + safety.node + " before the restore" +
                 (st ? "" : " is in " + cfg.directory.string() + " but not in the catalog: " + st.error().message));
}

void Daemon::BackupRuntime::swap_primary(bkrt::PreparedPrimary prep, std::string safety_id, Reply reply) {
  auto self = d.backup_;
  const NodeConfig* nc = d.config_.find_node(prep.node);
  const std::optional<std::string> os_user = nc ? nc->os_user : std::nullopt;
  const std::string untouched = "; " + prep.node + " was not touched (safety backup " + safety_id + " was taken)";
  if (!d.driver_ || !d.cluster_worker_) {
    discard_folders({prep.dir.string()}, os_user, {});
    return reply(make_error(Errc::unavailable, "drd is not managing the cluster yet" + untouched));
  }
  if (d.state_.primary() != prep.node || d.failover_->promoting()) {
    discard_folders({prep.dir.string()}, os_user, {});
    return reply(make_error(Errc::conflict, prep.node + " is no longer the primary, or a failover is running" + untouched));
  }
  // From here until a round of probes after the swap, the primary being down is expected.
  d.state_.pause_primary("backup " + prep.id + " is being restored onto it");
  log::event(spdlog::level::warn, "restore", {{"BACKUP_ID", prep.id}, {"NODE", prep.node}},
             "rolling the primary " + prep.node + " back to backup " + prep.id +
                 ": stopping it to swap its data folder (automatic failover waits)");
  auto* driver = d.driver_.get();
  bool posted = d.cluster_worker_->post([self, driver, prep, safety_id, reply, os_user]() mutable {
    std::vector<std::string> discard;
    auto out = driver->restore_primary(prep.node, prep.dir.string(), prep.timeline, discard);
    self->post_result([self, prep, safety_id, out = std::move(out), discard, reply, os_user]() mutable {
      if (self->stopped) return;
      // Probes first: the primary's health must be its new one before failover may act again.
      self->d.probes_->probe_all_now([self, prep, safety_id, out, discard, reply, os_user](json::value) mutable {
        if (self->stopped) return;
        self->d.state_.resume_primary();
        self->d.after_round();
        self->discard_folders(discard, os_user, [self, prep, safety_id, out, discard, reply](std::vector<std::string> left) {
          self->finish_primary(prep, safety_id, out, discard, left, reply);
        });
      });
    });
  });
  if (!posted) {
    d.state_.resume_primary();
    discard_folders({prep.dir.string()}, os_user, {});
    reply(make_error(Errc::unavailable, "drd is stopping" + untouched));
  }
}

void Daemon::BackupRuntime::finish_primary(const bkrt::PreparedPrimary& prep, const std::string& safety_id,
                                           Result<PrimaryRestoreOutcome> out, const std::vector<std::string>& discard,
                                           const std::vector<std::string>& left, const Reply& reply) {
  const std::string removal = removal_note(left);
  if (!out) {
    log::event(spdlog::level::err, "restore", {{"BACKUP_ID", prep.id}, {"NODE", prep.node}},
               "restore of backup " + prep.id + " onto the primary " + prep.node + " failed: " + out.error().message +
                   removal);
    Error e = out.error();
    e.message += " (safety backup " + safety_id + " was taken first)" + removal;
    return reply(e);
  }
  json::object standbys;
  std::string failed;
  for (const auto& [name, why] : out->standbys) {
    standbys[name] = why.empty() ? "re-cloned, streaming" : "not rebuilt: " + why;
    if (!why.empty()) failed += (failed.empty() ? "" : ", ") + name;
    if (!why.empty()) continue;
    // As after a rejoin: the driver lifted a fence it had on the node.
    if (auto s = d.cluster_store().set_fenced(name, false); !s)
      spdlog::error("restore onto {}: cannot record that {} is no longer fenced: {}", prep.node, name, s.error().message);
    d.state_.unfence(name);
  }
  std::string detail = prep.detail + "; " + out->detail + "; old data folder " +
                       (removal.empty() && !discard.empty() ? "removed" : "left") + removal;
  if (!failed.empty()) detail += "; NOT rebuilt: " + failed + " (rebuild with drctl rejoin NODE --reclone)";
  log::event(failed.empty() ? spdlog::level::warn : spdlog::level::err, "restore",
             {{"BACKUP_ID", prep.id}, {"NODE", prep.node}},
             "rolled the primary " + prep.node + " back to backup " + prep.id + " (safety backup " + safety_id +
                 "), now on timeline " + std::to_string(prep.timeline) + ": " + detail);
  json::object o{{"restored_to", prep.node},
                 {"id", prep.id},
                 {"bytes", prep.bytes},
                 {"safety_backup", safety_id},
                 {"timeline", prep.timeline},
                 {"previous_timeline", prep.old_timeline},
                 {"standbys", std::move(standbys)},
                 {"detail", detail}};
  if (!prep.to_time.empty()) {
    o["to_time"] = prep.to_time;
    o["applied_segments"] = prep.applied_segments;
  }
  if (!prep.restored_time.empty()) o["restored_time"] = prep.restored_time;
  reply(json::value(std::move(o)));
}

}  // namespace drd
