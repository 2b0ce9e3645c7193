// The blocking half of `drctl restore ID --node STANDBY` for a physical PostgreSQL backup
// (bkrt::prepare_standby_restore; docs/backups.md "Re-seeding a standby"). Runs on the backup
// runtime's restore worker while the standby keeps running: the backup is restored beside the
// node's data_dir, checked to belong to this cluster, and the archived WAL after it is staged in
// its pg_wal/. The swap itself (stop, rename, start as a standby) is PostgresNode::reseed_from on
// the cluster worker.
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/backup/pg_internal.hpp"
#include "daemon/backup/pg_reseed.hpp"
#include "daemon/backup/pg_wal.hpp"
#include "daemon/backup/util.hpp"
#include "daemon/backup/service/backup_pg_runtime.hpp"
#include "daemon/engines/postgres/postgres_conn.hpp"
#include "daemon/engines/postgres/postgres_node.hpp"
#include "daemon/engines/postgres/postgres_util.hpp"

namespace drd::bkrt {

namespace fs = std::filesystem;

namespace {

Status give_to(const fs::path& p, const std::string& os_user) {
  if (os_user.empty()) return ok_status();
  passwd* pw = ::getpwnam(os_user.c_str());
  if (!pw) return make_error(Errc::not_found, "OS user '" + os_user + "' does not exist");
  if (::chown(p.c_str(), pw->pw_uid, pw->pw_gid) != 0) return make_error(Errc::io, "cannot give " + p.string() + " to " + os_user);
  return ok_status();
}

// SELECT system_identifier FROM pg_control_system() on the primary, on a session of its own.
Result<std::string> primary_system_identifier(const NodeConfig& primary) {
  pg::ConnParams p{{"fallback_application_name", "drd_restore"}, {"dbname", primary.pg_conninfo}};
  std::vector<std::string> hidden;
  auto pw = node_password(primary);
  if (!pw) return pw.error();
  if (!pw->empty()) {
    if (!pg::url_password(primary)) p.emplace_back("password", pw.value());
    hidden.push_back(pw.value());
  }
  pg::PgConn c(std::move(p), hidden);
  auto r = c.query("SELECT system_identifier::text FROM pg_control_system()",
                   std::chrono::steady_clock::now() + std::chrono::seconds(15));
  if (!r) return r.error();
  if (r->empty() || r->back().rows.empty() || !r->back().rows[0][0])
    return make_error(Errc::io, "pg_control_system() returned no row");
  return *r->back().rows[0][0];
}

}  // namespace

Status need_server_files(const NodeConfig& node) {
  if (node.data_dir && node.bin_dir) return ok_status();
  return make_error(Errc::invalid_argument,
                    "restore onto " + node.name + " needs the server's files, but data_dir or bin_dir is not configured",
                    "add data_dir: and bin_dir: (and os_user:) to this node in the configuration");
}

fs::path restore_folder_beside(const fs::path& data_dir) {
  fs::path dir = data_dir;
  while (dir.has_relative_path() && dir.filename().empty()) dir = dir.parent_path();  // "/srv/pg/" -> "/srv/pg"
  fs::path work = dir;
  work += ".drd-restore-tmp";  // beside data_dir: the swap is a rename on one filesystem
  std::error_code ec;
  fs::remove_all(work, ec);  // a leftover of an interrupted restore (drd's own name)
  return work;
}

std::optional<std::string> other_cluster(const std::string& id, const std::string& backup_sysid,
                                         const std::string& primary, const std::string& primary_sysid) {
  if (backup_sysid == primary_sysid) return std::nullopt;
  return "backup " + id + " is of another PostgreSQL cluster: its database system identifier is " + backup_sysid +
         ", " + primary + "'s is " + primary_sysid;
}

Result<pg::ControlData> check_same_cluster(const fs::path& work, const backup::PgTools& tools, ProcessRunner& runner,
                                           const std::string& id, const NodeConfig& primary, const std::string& touched) {
  backup::PgTools c_tools = tools;
  c_tools.env["LC_ALL"] = "C";  // field names are translated otherwise
  auto cd = backup::pgi::run_tool(runner, c_tools, {tools.program("pg_controldata"), "-D", work.string()},
                                  std::chrono::milliseconds(60'000));
  if (!cd) return make_error(cd.error().code, "cannot read the restored copy's control file: " + cd.error().message +
                                                  "; " + touched + " was not touched");
  auto control = pg::parse_controldata(cd->output);
  if (!control.system_identifier)
    return make_error(Errc::io, "pg_controldata of the restored copy names no database system identifier; " + touched +
                                    " was not touched");
  auto primary_sysid = primary_system_identifier(primary);
  if (!primary_sysid)
    return make_error(primary_sysid.error().code,
                      "cannot read the database system identifier of the primary " + primary.name +
                          " (to check that backup " + id + " is of this cluster): " + primary_sysid.error().message +
                          "; " + touched + " was not touched");
  if (auto why = other_cluster(id, *control.system_identifier, primary.name, *primary_sysid))
    return make_error(Errc::refused, *why + "; " + touched + " was not touched",
                      "restore a backup of this cluster (drctl backups), or restore this one with --target PATH");
  return control;
}

Result<PreparedStandby> prepare_standby_restore(const backup::BackupRef& ref, const backup::MasterKey* key,
                                                const NodeConfig& node, const NodeConfig& primary, ProcessRunner& runner,
                                                const backup::Progress& progress) {
  const backup::Manifest& full = *ref.manifest;
  const std::string id = full.id;
  if (auto files = need_server_files(node); !files) return files.error();
  backup::PgTools tools = scratch_tools({node}, node.name);
  const fs::path work = restore_folder_beside(*node.data_dir);
  backup::FolderGuard cleanup{work};

  // 1. The backup, extracted and checked (PG_VERSION, backup_label, pg_control, pg_verifybackup).
  backup::RestoreOptions opts;
  opts.key = key;
  auto r = backup::restore_pg_physical(ref, work, opts, runner, tools, progress);
  if (!r) return make_error(r.error().code, r.error().message + "; " + node.name + " was not touched");

  // 2. Same cluster? A base backup of another one would start, then never stream.
  if (auto same = check_same_cluster(work, tools, runner, id, primary, node.name); !same) return same.error();

  // 3. The archived WAL after the backup, where the standby replays it before streaming.
  const fs::path folder = ref.data.parent_path() / backup::kPgWalFolder;
  auto plan = backup::pg_reseed_wal(full, backup::scan_pg_wal(folder));
  const fs::path pg_wal = work / "pg_wal";
  if (auto s = backup::stage_pg_wal(folder, plan.files, key, pg_wal); !s)
    return make_error(s.error().code, "staging the archived WAL failed: " + s.error().message + "; " + node.name +
                                          " was not touched");
  for (auto& m : plan.files) {
    const fs::path f = pg_wal / (m.id.rfind("pg-wal-", 0) == 0 ? m.id.substr(7) : m.id);
    if (auto s = give_to(f, tools.os_user); !s) return s.error();
    (void)::chmod(f.c_str(), 0600);
  }

  PreparedStandby out;
  out.node = node.name;
  out.id = id;
  out.dir = work;
  out.bytes = r->bytes;
  out.wal_files = plan.files.size();
  out.detail = std::to_string(r->bytes) + " bytes restored";
  if (r->detail.find("pg_verifybackup ok") != std::string::npos) out.detail += ", pg_verifybackup ok";
  out.detail += "; " + std::to_string(plan.segments) + " archived WAL segment" + (plan.segments == 1 ? "" : "s");
  if (plan.files.size() > plan.segments)
    out.detail += " and " + std::to_string(plan.files.size() - plan.segments) + " timeline history file" +
                  (plan.files.size() - plan.segments == 1 ? "" : "s");
  out.detail += " staged in pg_wal";
  if (!plan.gap.empty()) out.detail += " (the archive has a gap: " + plan.gap + "; the rest streams from the primary)";
  cleanup.dismiss();
  return out;
}

}  // namespace drd::bkrt
