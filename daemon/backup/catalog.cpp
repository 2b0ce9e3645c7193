#include "daemon/backup/catalog.hpp"

#include <algorithm>

namespace drd::backup {

namespace fs = std::filesystem;

const char* catalog_schema_sql() {
  return R"sql(
CREATE TABLE IF NOT EXISTS backups(
  id             TEXT PRIMARY KEY,
  name           TEXT NOT NULL,
  node           TEXT NOT NULL,
  engine         TEXT NOT NULL,
  kind           TEXT NOT NULL,
  parent         TEXT,
  created_at_ms  INTEGER NOT NULL,
  directory      TEXT NOT NULL,
  data_file      TEXT NOT NULL,
  size_bytes     INTEGER NOT NULL,
  source_bytes   INTEGER NOT NULL,
  encrypted      INTEGER NOT NULL,
  key_id         TEXT,
  verified       INTEGER,
  verified_at_ms INTEGER,
  verify_detail  TEXT NOT NULL DEFAULT '',
  manifest       TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS backups_created ON backups(created_at_ms);
)sql";
}

namespace {

struct Stmt {
  sqlite3_stmt* s = nullptr;
  ~Stmt() { sqlite3_finalize(s); }
};

Error sql_error(sqlite3* db, const std::string& what) {
  return make_error(Errc::io, "backup catalog: " + what + " failed: " + sqlite3_errmsg(db));
}

Result<CatalogEntry> row_to_entry(sqlite3_stmt* s) {
  auto text = [&](int c) {
    auto* t = sqlite3_column_text(s, c);
    return t ? std::string(reinterpret_cast<const char*>(t)) : std::string();
  };
  auto m = manifest_from_json(text(0), "catalog row");
  if (!m) return m.error();
  CatalogEntry e;
  e.manifest = m.value();
  e.directory = text(1);
  if (sqlite3_column_type(s, 2) != SQLITE_NULL) e.verified = sqlite3_column_int(s, 2) != 0;
  if (sqlite3_column_type(s, 3) != SQLITE_NULL) e.verified_at = from_unix_ms(sqlite3_column_int64(s, 3));
  e.verify_detail = text(4);
  return e;
}

constexpr const char* kSelect = "SELECT manifest, directory, verified, verified_at_ms, verify_detail FROM backups";

}  // namespace

Status catalog_insert(sqlite3* db, const Manifest& m, const fs::path& directory) {
  Stmt st;
  const char* sql =
      "INSERT INTO backups(id,name,node,engine,kind,parent,created_at_ms,directory,data_file,size_bytes,"
      "source_bytes,encrypted,key_id,manifest) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?)";
  if (sqlite3_prepare_v2(db, sql, -1, &st.s, nullptr) != SQLITE_OK) return sql_error(db, "insert");
  std::string json = manifest_to_json(m), dir = fs::absolute(directory).lexically_normal().string();
  auto t = [&](int i, const std::string& v) { sqlite3_bind_text(st.s, i, v.c_str(), -1, SQLITE_TRANSIENT); };
  t(1, m.id);
  t(2, m.name);
  t(3, m.node);
  t(4, m.engine);
  t(5, m.kind);
  if (m.parent.empty()) sqlite3_bind_null(st.s, 6); else t(6, m.parent);
  sqlite3_bind_int64(st.s, 7, to_unix_ms(m.created_at));
  t(8, dir);
  t(9, m.data_file);
  sqlite3_bind_int64(st.s, 10, static_cast<sqlite3_int64>(m.size_bytes));
  sqlite3_bind_int64(st.s, 11, static_cast<sqlite3_int64>(m.source_bytes));
  sqlite3_bind_int(st.s, 12, m.encrypted ? 1 : 0);
  if (m.key_id.empty()) sqlite3_bind_null(st.s, 13); else t(13, m.key_id);
  t(14, json);
  int rc = sqlite3_step(st.s);
  if (rc == SQLITE_CONSTRAINT_PRIMARYKEY || rc == SQLITE_CONSTRAINT)
    return make_error(Errc::conflict, "backup catalog already has a backup with id " + m.id);
  if (rc != SQLITE_DONE) return sql_error(db, "insert of " + m.id);
  return ok_status();
}

Result<std::vector<CatalogEntry>> catalog_list(sqlite3* db) {
  Stmt st;
  std::string sql = std::string(kSelect) + " ORDER BY created_at_ms DESC, id DESC";
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st.s, nullptr) != SQLITE_OK) return sql_error(db, "list");
  std::vector<CatalogEntry> out;
  int rc;
  while ((rc = sqlite3_step(st.s)) == SQLITE_ROW) {
    auto e = row_to_entry(st.s);
    if (!e) return e.error();
    out.push_back(std::move(e.value()));
  }
  if (rc != SQLITE_DONE) return sql_error(db, "list");
  return out;
}

Result<CatalogEntry> catalog_get(sqlite3* db, const std::string& id) {
  Stmt st;
  std::string sql = std::string(kSelect) + " WHERE id = ?";
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st.s, nullptr) != SQLITE_OK) return sql_error(db, "get");
  sqlite3_bind_text(st.s, 1, id.c_str(), -1, SQLITE_TRANSIENT);
  int rc = sqlite3_step(st.s);
  if (rc == SQLITE_DONE) return make_error(Errc::not_found, "no backup with id " + id + " in the catalog");
  if (rc != SQLITE_ROW) return sql_error(db, "get of " + id);
  return row_to_entry(st.s);
}

Status catalog_mark_verified(sqlite3* db, const std::string& id, bool ok, SysTime at, const std::string& detail) {
  Stmt st;
  if (sqlite3_prepare_v2(db, "UPDATE backups SET verified=?, verified_at_ms=?, verify_detail=? WHERE id=?", -1, &st.s,
                         nullptr) != SQLITE_OK)
    return sql_error(db, "mark_verified");
  sqlite3_bind_int(st.s, 1, ok ? 1 : 0);
  sqlite3_bind_int64(st.s, 2, to_unix_ms(at));
  sqlite3_bind_text(st.s, 3, detail.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(st.s, 4, id.c_str(), -1, SQLITE_TRANSIENT);
  if (sqlite3_step(st.s) != SQLITE_DONE) return sql_error(db, "mark_verified of " + id);
  if (sqlite3_changes(db) == 0) return make_error(Errc::not_found, "no backup with id " + id + " in the catalog");
  return ok_status();
}

Status catalog_remove(sqlite3* db, const std::string& id) {
  Stmt st;
  if (sqlite3_prepare_v2(db, "DELETE FROM backups WHERE id=?", -1, &st.s, nullptr) != SQLITE_OK)
    return sql_error(db, "remove");
  sqlite3_bind_text(st.s, 1, id.c_str(), -1, SQLITE_TRANSIENT);
  if (sqlite3_step(st.s) != SQLITE_DONE) return sql_error(db, "remove of " + id);
  if (sqlite3_changes(db) == 0) return make_error(Errc::not_found, "no backup with id " + id + " in the catalog");
  return ok_status();
}

std::vector<CatalogEntry> scan_directory(const fs::path& dir, std::vector<std::string>* problems) {
  std::vector<CatalogEntry> out;
  std::error_code ec;
  const std::string suffix = ".manifest.json";
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (name.size() <= suffix.size() || name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0) continue;
    auto m = read_manifest(it->path());
    if (!m) {
      if (problems) problems->push_back(m.error().message);
      continue;
    }
    CatalogEntry e;
    e.manifest = m.value();
    e.directory = dir;
    std::error_code fe;
    if (!fs::exists(e.data_file(), fe)) {
      if (problems) problems->push_back("data file " + e.data_file().string() + " of backup " + e.manifest.id + " is missing");
      continue;
    }
    out.push_back(std::move(e));
  }
  if (ec && problems) problems->push_back("cannot list " + dir.string() + ": " + ec.message());
  std::sort(out.begin(), out.end(), [](const CatalogEntry& a, const CatalogEntry& b) {
    if (a.manifest.created_at != b.manifest.created_at) return a.manifest.created_at > b.manifest.created_at;
    return a.manifest.id > b.manifest.id;
  });
  return out;
}

boost::json::object backup_to_json(const CatalogEntry& e) {
  const Manifest& m = e.manifest;
  boost::json::object o;
  o["id"] = m.id;
  o["name"] = m.name;
  o["node"] = m.node;
  o["engine"] = m.engine;
  o["kind"] = m.kind;
  o["parent"] = m.parent.empty() ? boost::json::value(nullptr) : boost::json::value(m.parent);
  o["created_at"] = format_time_utc(m.created_at);
  o["size_bytes"] = m.size_bytes;
  o["source_bytes"] = m.source_bytes;
  o["ratio"] = m.size_bytes ? static_cast<double>(m.source_bytes) / static_cast<double>(m.size_bytes) : 0.0;
  o["encrypted"] = m.encrypted;
  o["key_id"] = m.key_id.empty() ? boost::json::value(nullptr) : boost::json::value(m.key_id);
  o["verified"] = e.verified ? boost::json::value(*e.verified) : boost::json::value(nullptr);
  o["verified_at"] = e.verified_at ? boost::json::value(format_time_utc(*e.verified_at)) : boost::json::value(nullptr);
  o["path"] = e.data_file().string();
  return o;
}

}  // namespace drd::backup
