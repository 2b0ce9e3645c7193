// The blocking half of rolling the live PostgreSQL primary back to a physical backup
// (`drctl restore ID --node PRIMARY --force [--to-time T]`, docs/backups.md "Restore onto the
// live primary"). Runs on the backup runtime's restore worker while the primary keeps serving:
// the archive is checked to cover --to-time, the safety backup is taken, the backup is restored
// beside the primary's data_dir, checked to be of this cluster, recovered (to T along the
// primary's timeline, else to the backup's end) and promoted onto a timeline above every one the
// cluster has used, then stopped cleanly. The swap (stop, rename, start as the primary) is
// ClusterDriver::restore_primary on the cluster worker; timeline rules in backup/pg_rollback.hpp.
#include "daemon/backup/pg_internal.hpp"
#include "daemon/backup/pg_rollback.hpp"
#include "daemon/backup/pg_wal.hpp"
#include "daemon/backup/util.hpp"
#include "daemon/backup/service/backup_pg_runtime.hpp"

namespace drd::bkrt {

namespace fs = std::filesystem;

Result<PreparedPrimary> prepare_primary_restore(const backup::BackupRef& ref, const backup::MasterKey* key,
                                                const NodeConfig& node, std::optional<SysTime> to_time,
                                                ProcessRunner& runner, const backup::Progress& progress,
                                                const std::function<Status()>& before_touching) {
  const backup::Manifest& full = *ref.manifest;
  const std::string id = full.id;
  const std::string untouched = "; " + node.name + " was not touched";
  if (auto files = need_server_files(node); !files) return files.error();
  auto base = backup::pg_base_of(full);
  if (!base)
    return make_error(Errc::invalid_argument, "backup " + id + " is not a PostgreSQL base backup with a WAL range" + untouched);

  // 1. What recovery needs, checked before anything is written: the archive covers --to-time,
  //    the history of every timeline in use is at hand.
  PitrPlan plan;
  plan.folder = ref.data.parent_path() / backup::kPgWalFolder;
  if (to_time) {
    auto p = plan_pg_pitr(ref, *to_time);
    if (!p) return p.error();
    plan = std::move(p.value());
  }
  auto conn_tools = pg_tools_for(node, "drd_restore");
  if (!conn_tools) return conn_tools.error();
  auto primary_tl = pg_server_timeline(runner, *conn_tools);
  if (!primary_tl)
    return make_error(primary_tl.error().code,
                      "cannot read " + node.name + "'s timeline: " + primary_tl.error().message + untouched);
  std::vector<std::uint32_t> archived_tls;
  for (auto& m : backup::scan_pg_wal(plan.folder))
    if (m.content == backup::kPgHistoryContent) {
      archived_tls.push_back(m.pg_timeline);
      bool staged = false;
      for (auto& s : plan.stage) staged = staged || s.id == m.id;
      if (!staged && m.pg_timeline > base->timeline) plan.stage.push_back(m);
    }
  const auto timelines = backup::pg_rollback_timelines(base->timeline, *primary_tl, archived_tls);
  std::map<std::string, std::string> from_primary;
  for (auto tl : timelines.fetch) {
    auto h = pg_replication_command(runner, *conn_tools, "TIMELINE_HISTORY " + std::to_string(tl));  // name|content
    auto bar = h ? h->find('|') : std::string::npos;
    if (bar != std::string::npos) from_primary[h->substr(0, bar)] = h->substr(bar + 1) + "\n";
    // Not fatal here: a missing one is caught by the timeline check after recovery.
  }

  // 2. The safety backup (the caller's), then the copy beside data_dir.
  if (before_touching)
    if (auto s = before_touching(); !s) return s.error();
  backup::PgTools tools = scratch_tools({node}, node.name);
  const fs::path work = restore_folder_beside(*node.data_dir);
  backup::FolderGuard cleanup{work};
  backup::RestoreOptions opts;
  opts.key = key;
  auto r = backup::restore_pg_physical(ref, work, opts, runner, tools, progress);
  if (!r) return make_error(r.error().code, r.error().message + untouched);
  if (auto same = check_same_cluster(work, tools, runner, id, node, node.name); !same) return same.error();

  // 3. Recovery and promotion in the copy.
  const std::string what = "recovery of backup " + id + (to_time ? " to " + backup::format_time_utc(*to_time) : "");
  auto settings = backup::pg_rollback_settings(
      to_time ? std::optional<std::string>(recovery_time_setting(*to_time)) : std::nullopt, *primary_tl);
  auto recovered = recover_pg_copy(work, plan.folder, plan.stage, from_primary, key, settings, what, work.parent_path(),
                                   superuser_of({node}, node.name, tools), runner, tools);
  if (!recovered) return make_error(recovered.error().code, recovered.error().message + untouched);
  auto control = check_same_cluster(work, tools, runner, id, node, node.name);
  if (!control) return control.error();
  if (!control->timeline)
    return make_error(Errc::io, "pg_controldata of the recovered copy names no timeline" + untouched);
  if (auto why = backup::pg_rollback_timeline_problem(*control->timeline, timelines.highest))
    return make_error(Errc::refused, *why + untouched,
                      "copy the missing .history files into the backup directory's pg-wal archive or the primary's "
                      "pg_wal, or restore with --target PATH and switch over by hand");

  PreparedPrimary out;
  out.node = node.name;
  out.id = id;
  out.dir = work;
  out.bytes = r->bytes;
  out.timeline = *control->timeline;
  out.old_timeline = *primary_tl;
  if (to_time) out.to_time = backup::format_time_utc(*to_time);
  out.restored_time = *recovered;
  out.applied_segments = plan.segments;
  out.detail = std::to_string(r->bytes) + " bytes restored";
  if (r->detail.find("pg_verifybackup ok") != std::string::npos) out.detail += ", pg_verifybackup ok";
  out.detail += to_time ? "; recovered to " + out.to_time + " (" + std::to_string(plan.segments) + " archived WAL segment" +
                              (plan.segments == 1 ? "" : "s") + ")"
                        : "; recovered to the end of the backup";
  out.detail += " and promoted onto timeline " + std::to_string(out.timeline);
  cleanup.dismiss();
  return out;
}

}  // namespace drd::bkrt
