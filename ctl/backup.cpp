// Backups: backup, backups, verify, restore.
#include <filesystem>
#include <memory>

#include "ctl/commands.hpp"
#include "ctl/json_access.hpp"

namespace drd::ctl {

namespace json = boost::json;
namespace fs = std::filesystem;

namespace {

// verify/restore take "ID|PATH": an existing file is sent as its absolute path,
// anything else as a catalog id (drd says if there is no such backup).
void add_backup_ref(json::object& p, const std::string& ref) {
  std::error_code ec;
  if (fs::is_regular_file(ref, ec)) {
    fs::path abs = fs::absolute(ref, ec);
    p["path"] = (ec ? fs::path(ref) : abs).lexically_normal().string();
  } else {
    p["id"] = ref;
  }
}

// A BACKUP argument that names no existing file but is written like one ("backup.sql",
// "./x", "/srv/b.drbk") cannot be a catalog id (ids look like 20261124T052920Z-primary-1a2b,
// ID.seg-N or pg-wal-WALFILE): say so here rather than send drd an id it has never heard of.
std::string check_backup_ref(const std::string& ref) {
  std::error_code ec;
  if (fs::exists(ref, ec)) {
    if (!fs::is_regular_file(ref, ec)) return "BACKUP '" + ref + "' is not a file; expected a backup id or a backup file";
    return "";
  }
  static const char* const file_suffixes[] = {".sql", ".db", ".sqlite", ".sqlite3", ".dump", ".drbk", ".zst",
                                              ".gz", ".bak", ".tar", ".json"};
  bool looks_like_file = ref.find('/') != std::string::npos;
  for (const char* s : file_suffixes) {
    const std::string suffix = s;
    looks_like_file = looks_like_file || (ref.size() > suffix.size() &&
                                          ref.compare(ref.size() - suffix.size(), suffix.size(), suffix) == 0);
  }
  if (looks_like_file)
    return "BACKUP '" + ref + "': no such file, and not a backup id; expected a backup id from `drctl backups` "
           "(like 20261124T052920Z-primary-1a2b) or the path of an existing backup file";
  return "";
}

}  // namespace

void add_backup_commands(CLI::App& app, Registry& reg) {
  {
    struct Opts { std::string name, node, kind; };
    auto o = std::make_shared<Opts>();
    CommandSpec backup;
    backup.app = app.add_subcommand("backup", "take a backup now; prints its id and path");
    backup.app->add_option("--name", o->name, "a label for the backup")->type_name("NAME");
    backup.app->add_option("--node", o->node, "back up this node (default: drd's choice)")->type_name("NODE");
    backup.app->add_option("--kind", o->kind, "full (physical copy) or logical (dump)")
        ->check(CLI::IsMember({"full", "logical"}))
        ->type_name("full|logical");
    backup.method = "backup.create";
    backup.default_timeout = kLongTimeout;
    backup.progress = true;
    backup.params = [o] {
      json::object p;
      if (!o->name.empty()) p["name"] = o->name;
      if (!o->node.empty()) p["node"] = o->node;
      if (!o->kind.empty()) p["kind"] = o->kind;
      return p;
    };
    backup.render = render_backup_created;
    reg.push_back(std::move(backup));
  }

  CommandSpec list;
  auto segments = std::make_shared<bool>(false);
  list.app = app.add_subcommand("backups", "the backup catalog");
  list.app->add_flag("--segments", *segments, "also list the WAL segments of SQLite full backups and the archived PostgreSQL WAL");
  list.params = [segments] {
    json::object p;
    if (*segments) p["segments"] = true;
    return p;
  };
  list.method = "backup.list";
  list.render = render_backups;
  reg.push_back(std::move(list));

  {
    auto ref = std::make_shared<std::string>();
    CommandSpec verify;
    verify.app = app.add_subcommand("verify", "check a backup's checksums and test-restore it; exit 1 on a mismatch");
    verify.app->add_option("BACKUP", *ref, "backup id, or the path of a backup file")->required()->type_name("");
    verify.method = "backup.verify";
    verify.default_timeout = kLongTimeout;
    verify.params = [ref] {
      json::object p;
      add_backup_ref(p, *ref);
      return p;
    };
    verify.check = [ref] { return check_backup_ref(*ref); };
    verify.render = render_verify;
    verify.exit_rule = [](const json::value& r) { return jv::boolean(r, "ok").value_or(false) ? 0 : 1; };
    reg.push_back(std::move(verify));
  }

  {
    struct Opts { std::string ref, node, target, to_time; bool force = false; };
    auto o = std::make_shared<Opts>();
    CommandSpec restore;
    restore.app = app.add_subcommand("restore", "restore a backup onto a node, or into a new file / data folder");
    restore.app->add_option("BACKUP", o->ref, "backup id, or the path of a backup file")->required()->type_name("");
    auto* node = restore.app->add_option("--node", o->node, "restore onto this node")->type_name("NODE");
    auto* target = restore.app->add_option("--target", o->target, "restore into this new file or folder (no node uses it), "
                                          "or a PostgreSQL dump into this database URL")
                       ->type_name("PATH|URL");
    node->excludes(target);
    restore.app->add_option("--to-time", o->to_time, "point in time to recover to (PostgreSQL; ISO 8601)")
        ->type_name("TIME");
    restore.app->add_flag("--force", o->force, "overwrite a node that still looks healthy");
    restore.method = "restore";
    restore.default_timeout = kLongTimeout;  // no progress: docs/rpc.md defines it for backup.create only
    restore.params = [o] {
      json::object p;
      add_backup_ref(p, o->ref);
      if (!o->node.empty()) p["node"] = o->node;
      // A PostgreSQL URL / conninfo (a dump restored into a database) is passed as written.
      bool url = o->target.rfind("postgresql://", 0) == 0 || o->target.rfind("postgres://", 0) == 0 ||
                 (o->target.find('=') != std::string::npos && o->target[0] != '/' && o->target[0] != '.');
      if (url) {
        p["target"] = o->target;
      } else if (!o->target.empty()) {
        std::error_code ec;
        fs::path abs = fs::absolute(o->target, ec);
        p["target"] = (ec ? fs::path(o->target) : abs).lexically_normal().string();
      }
      if (!o->to_time.empty()) p["to_time"] = o->to_time;
      if (o->force) p["force"] = true;
      return p;
    };
    restore.check = [o] {
      if (std::string bad = check_backup_ref(o->ref); !bad.empty()) return bad;
      if (o->node.empty() && o->target.empty())
        return std::string("restore needs a destination: --node NODE (onto a database drd manages) or --target "
                           "PATH|URL (a new file or folder, or a PostgreSQL database URL)");
      return std::string();
    };
    restore.render = render_restore;
    reg.push_back(std::move(restore));
  }
}

}  // namespace drd::ctl
