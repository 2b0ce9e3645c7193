#include "daemon/backup/sqlite_util.hpp"

namespace drd::backup {

Result<SqliteConn> SqliteConn::open(const std::filesystem::path& p, int flags, int busy_ms) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(p.c_str(), &db, flags | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    sqlite3_close_v2(db);
    return make_error(rc == SQLITE_CANTOPEN ? Errc::not_found : Errc::io, "cannot open SQLite database " + p.string() + ": " + msg);
  }
  sqlite3_busy_timeout(db, busy_ms);
  sqlite3_extended_result_codes(db, 1);
  return SqliteConn(db);
}

SqliteConn::~SqliteConn() { (void)close(); }

Status SqliteConn::close() {
  if (!db_) return ok_status();
  int rc = sqlite3_close(db_);
  if (rc != SQLITE_OK) {
    std::string msg = sqlite3_errmsg(db_);
    sqlite3_close_v2(db_);
    db_ = nullptr;
    return make_error(Errc::io, "closing SQLite database failed: " + msg);
  }
  db_ = nullptr;
  return ok_status();
}

Status SqliteConn::exec(const std::string& sql) const {
  char* err = nullptr;
  int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    std::string msg = err ? err : sqlite3_errstr(rc);
    sqlite3_free(err);
    return make_error(Errc::io, msg);
  }
  return ok_status();
}

}  // namespace drd::backup
