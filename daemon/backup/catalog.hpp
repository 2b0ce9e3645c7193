#pragma once
// The backup catalog: one table in the daemon's state database.
//
// The daemon owns the sqlite3* (and its thread discipline: call these from the thread that
// owns the connection, or under its lock). It runs catalog_schema_sql() inside its migrations.
// A backup is inserted only after its files are complete (BackupSession::finish returned), so
// every row names files that existed when it was written; scan_directory() rebuilds the view
// from manifests alone (for `verify PATH` / `restore PATH`, or to re-import after a state loss).
#include <sqlite3.h>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <boost/json.hpp>

#include "common/result.hpp"
#include "daemon/backup/manifest.hpp"

namespace drd::backup {

// CREATE TABLE IF NOT EXISTS backups(...) and its index. Idempotent.
const char* catalog_schema_sql();

struct CatalogEntry {
  Manifest manifest;
  std::filesystem::path directory;          // folder holding the data file and manifest
  std::optional<bool> verified;             // null until verified once
  std::optional<SysTime> verified_at;
  std::string verify_detail;                // failed checks, when verified == false
  std::filesystem::path data_file() const { return directory / manifest.data_file; }
  std::filesystem::path manifest_file() const { return manifest_path(directory, manifest.id); }
};

// Errors: conflict when the id exists, io for SQLite failures (message names the call).
Status catalog_insert(sqlite3* db, const Manifest& m, const std::filesystem::path& directory);
Result<std::vector<CatalogEntry>> catalog_list(sqlite3* db);  // newest first
Result<CatalogEntry> catalog_get(sqlite3* db, const std::string& id);  // not_found
Status catalog_mark_verified(sqlite3* db, const std::string& id, bool ok, SysTime at, const std::string& detail);
Status catalog_remove(sqlite3* db, const std::string& id);  // not_found when absent

// Every `*.manifest.json` in `dir` (not recursive) whose data file exists, newest first.
// Unreadable manifests and missing data files are reported in `problems` (when given), not
// fatal. `verified` is unknown (null) for scanned entries.
std::vector<CatalogEntry> scan_directory(const std::filesystem::path& dir, std::vector<std::string>* problems = nullptr);

// The RPC/`drctl backups --json` shape: {"id","name","node","engine","kind","created_at",
// "size_bytes","source_bytes","encrypted","verified": bool|null,"path", plus "parent",
// "key_id", "ratio", "verified_at"}.
boost::json::object backup_to_json(const CatalogEntry& e);

}  // namespace drd::backup
