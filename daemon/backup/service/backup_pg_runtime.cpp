#include "daemon/backup/service/backup_pg_runtime.hpp"

#include <unistd.h>

#include "daemon/backup/pg_internal.hpp"
#include "daemon/backup/service/backup_runtime.hpp"
#include "daemon/engines/postgres/postgres_node.hpp"
#include "daemon/engines/postgres/postgres_util.hpp"

namespace drd::bkrt {

namespace fs = std::filesystem;
namespace json = boost::json;

namespace {

struct Cancelled {};  // thrown from progress at shutdown; RAII removes the partial files

constexpr const char* kDebianBinDir = "/usr/lib/postgresql/15/bin";

std::filesystem::path default_bin_dir() {
  std::error_code ec;
  return fs::exists(fs::path(kDebianBinDir) / "pg_basebackup", ec) ? fs::path(kDebianBinDir) : fs::path();
}

}  // namespace

// Tools for servers we start ourselves (verify): never as root, PostgreSQL refuses that.
backup::PgTools scratch_tools(const std::vector<NodeConfig>& pg_nodes, const std::string& preferred) {
  const NodeConfig* n = nullptr;
  for (auto& c : pg_nodes)
    if (c.name == preferred) n = &c;
  if (!n && !pg_nodes.empty()) n = &pg_nodes.front();
  backup::PgTools t;
  t.bin_dir = n && n->bin_dir ? *n->bin_dir : default_bin_dir();
  t.os_user = n && n->os_user ? *n->os_user : (::geteuid() == 0 ? "postgres" : "");
  return t;
}

std::string superuser_of(const std::vector<NodeConfig>& pg_nodes, const std::string& preferred,
                         const backup::PgTools& t) {
  for (auto& c : pg_nodes)
    if (c.name == preferred)
      if (auto p = pg::parse_conninfo(c.pg_conninfo))
        if (auto u = pg::param(p.value(), "user")) return *u;
  return t.os_user.empty() ? "postgres" : t.os_user;
}

Result<backup::PgTools> pg_tools_for(const NodeConfig& node, const std::string& application_name) {
  backup::PgTools t;
  t.bin_dir = node.bin_dir ? *node.bin_dir : default_bin_dir();
  if (node.os_user) t.os_user = *node.os_user;
  auto ci = pg::tool_conninfo_for(node, application_name);
  if (!ci) return make_error(ci.error().code, node.name + ": " + ci.error().message);
  t.conninfo = ci.value();
  auto pw = node_password(node);
  if (!pw) return pw.error();
  if (!pw->empty()) {
    t.env["PGPASSWORD"] = pw.value();  // never on a command line (ps shows those)
    t.secrets.push_back(pw.value());
  }
  return t;
}

Result<backup::Manifest> take_pg_backup(const BackupConfig& cfg, ProcessRunner& runner, const NodeConfig& node,
                                        backup::NewBackup info, bool logical, const backup::Progress& progress,
                                        const std::atomic<bool>* cancel) {
  auto settings = backup::BackupSettings::from_config(cfg);
  if (!settings) return settings.error();
  auto tools = pg_tools_for(node, logical ? "drd_dump" : "drd_backup");
  if (!tools) return tools.error();
  backup::Progress wrapped = [&](std::uint64_t done, std::uint64_t total, const char* phase) {
    if (cancel && cancel->load()) throw Cancelled{};
    if (progress) progress(done, total, phase);
  };
  try {
    if (!logical) return backup::backup_pg_physical(settings.value(), runner, tools.value(), std::move(info), wrapped);
    auto parsed = pg::parse_conninfo(node.pg_conninfo);
    std::string db = parsed ? pg::param(parsed.value(), "dbname").value_or("postgres") : "postgres";
    return backup::backup_pg_logical(settings.value(), runner, tools.value(), db, std::move(info), wrapped);
  } catch (const Cancelled&) {
    return make_error(Errc::unavailable, "backup of " + node.name + " cancelled: drd is stopping");
  }
}

backup::VerifyReport verify_pg(const backup::BackupRef& ref, const backup::MasterKey* key, const fs::path& scratch,
                               ProcessRunner& runner, const std::vector<NodeConfig>& pg_nodes) {
  std::string node = ref.manifest ? ref.manifest->node : "";
  auto tools = scratch_tools(pg_nodes, node);
  return backup::verify_pg_backup(ref, key, scratch, runner, tools, superuser_of(pg_nodes, node, tools));
}

Result<std::string> pg_replication_command(ProcessRunner& runner, const backup::PgTools& tools, const std::string& cmd) {
  auto out = backup::pgi::run_tool(runner, tools,
                                   {tools.program("psql"), "-X", "-A", "-t", "--no-password", "-d",
                                    tools.conninfo + " replication=true", "-c", cmd},
                                   Millis{10'000});
  if (!out) return out.error();
  std::string row = out->output;
  while (!row.empty() && (row.back() == '\n' || row.back() == '\r')) row.pop_back();
  return row;
}

Result<std::uint32_t> pg_server_timeline(ProcessRunner& runner, const backup::PgTools& tools) {
  auto id = pg_replication_command(runner, tools, "IDENTIFY_SYSTEM");  // systemid|timeline|xlogpos|dbname
  if (!id) return id.error();
  auto bar = id->find('|');
  try {
    if (bar != std::string::npos) return static_cast<std::uint32_t>(std::stoul(id->substr(bar + 1)));
  } catch (const std::exception&) {
  }
  return make_error(Errc::io, "IDENTIFY_SYSTEM answered '" + *id + "' (no timeline)");
}

bool is_pg_url(const std::string& t) {
  // Same rule as drctl's: a scheme, or a key=value conninfo (never an absolute path).
  return t.rfind("postgresql://", 0) == 0 || t.rfind("postgres://", 0) == 0 ||
         (t.find('=') != std::string::npos && !t.empty() && t[0] != '/' && t[0] != '.');
}

Result<json::value> restore_pg(const backup::BackupRef& ref, const backup::MasterKey* key, const PgRestoreTarget& where,
                               ProcessRunner& runner, const std::vector<NodeConfig>& pg_nodes,
                               const backup::Progress& progress, std::optional<SysTime> to_time) {
  const std::string id = ref.manifest ? ref.manifest->id : ref.data.filename().string();
  const bool logical = ref.manifest && ref.manifest->content == "pg-dump";
  if (!ref.manifest)
    return make_error(Errc::invalid_argument, "a PostgreSQL restore needs the backup's manifest beside " + ref.data.string());
  backup::RestoreOptions opts;
  opts.key = key;
  opts.allow_overwrite = where.force;
  if (to_time && (where.node || is_pg_url(where.path_or_url) || logical))
    return make_error(Errc::unsupported, "point-in-time restore of PostgreSQL needs a physical backup restored into a new "
                                         "data folder (--target /path)" + std::string(logical ? "; " + id + " is a pg_dump archive" : ""),
                      "drctl restore ID --to-time T --target /srv/pg/restored");
  if (where.node) {
    const NodeConfig& n = *where.node;
    // A physical backup onto a node is a re-seed (standby) or a roll-back (primary), both chosen
    // by Daemon::restore before this; what reaches here is a dump.
    if (!logical)
      return make_error(Errc::internal, "a physical backup onto node " + n.name + " is not restored here");
    if (!where.node_is_primary)
      return make_error(Errc::refused, n.name + " is a standby (read-only): a dump restores into the primary's database",
                        "restore with --node PRIMARY --force, or --target postgresql://... into another database");
    if (!where.force)
      return make_error(Errc::refused,
                        n.name + " is the live primary: restoring the dump would drop and recreate its objects",
                        "pass --force, or restore into another database with --target postgresql://...");
    auto tools = pg_tools_for(n, "drd_restore");
    if (!tools) return tools.error();
    auto r = backup::restore_pg_logical(ref, opts, true, runner, tools.value(), progress);
    if (!r) return r.error();
    return json::value(json::object{{"restored_to", n.name}, {"id", id}, {"bytes", r->bytes}, {"detail", r->detail}});
  }
  if (is_pg_url(where.path_or_url)) {
    if (!logical)
      return make_error(Errc::invalid_argument, "backup " + id + " is a physical base backup: it restores into a data "
                                                                 "folder (--target /path), not into a database URL");
    NodeConfig pseudo;
    pseudo.name = "target";
    pseudo.engine = Engine::postgresql;
    pseudo.pg_conninfo = where.path_or_url;
    auto tools = pg_tools_for(pseudo, "drd_restore");
    if (!tools) return tools.error();
    // Only the URL's password is a secret here; the runner may still add ~/.pgpass.
    auto r = backup::restore_pg_logical(ref, opts, where.force, runner, tools.value(), progress);
    if (!r) return r.error();
    return json::value(json::object{{"restored_to", redact_url(where.path_or_url)}, {"id", id}, {"bytes", r->bytes},
                                    {"detail", r->detail}});
  }
  if (logical)
    return make_error(Errc::invalid_argument, "backup " + id + " is a pg_dump archive: it restores into a database",
                      "give --target postgresql://USER@HOST:PORT/DB, or --node PRIMARY --force");
  fs::path target = where.path_or_url;
  for (auto& n : pg_nodes) {
    if (!n.data_dir) continue;
    auto rel = fs::weakly_canonical(target).lexically_relative(fs::weakly_canonical(*n.data_dir));
    auto back = fs::weakly_canonical(*n.data_dir).lexically_relative(fs::weakly_canonical(target));
    bool inside = !rel.empty() && *rel.begin() != "..";
    bool contains = !back.empty() && *back.begin() != "..";
    if (inside || contains)
      return make_error(Errc::refused, "restore target " + target.string() + " overlaps the data folder of node " + n.name,
                        "choose a new folder");
  }
  if (to_time) return restore_pg_pitr(ref, key, target, where.force, *to_time, runner, pg_nodes, progress);
  auto tools = scratch_tools(pg_nodes, ref.manifest->node);
  auto r = backup::restore_pg_physical(ref, target, opts, runner, tools, progress);
  if (!r) return r.error();
  return json::value(json::object{{"restored_to", r->restored_to.string()}, {"id", id}, {"bytes", r->bytes},
                                  {"detail", r->detail}});
}

}  // namespace drd::bkrt
