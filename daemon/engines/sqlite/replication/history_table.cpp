#include "daemon/engines/sqlite/replication/history_table.hpp"

#include <sys/stat.h>

#include <random>

namespace drd::replication {

namespace {

struct Stmt {
  sqlite3_stmt* s = nullptr;
  ~Stmt() { sqlite3_finalize(s); }
};

Error sql_error(sqlite3* db, const std::string& name, const std::string& what, int rc) {
  const int prim = rc & 0xff;
  Errc code = prim == SQLITE_BUSY || prim == SQLITE_LOCKED ? Errc::conflict
              : prim == SQLITE_CORRUPT || prim == SQLITE_NOTADB ? Errc::corrupt
                                                                : Errc::io;
  return make_error(code, what + " of " + name + " failed: " + (db ? sqlite3_errmsg(db) : sqlite3_errstr(rc)));
}

Status exec(sqlite3* db, const std::string& name, const std::string& what, const char* sql) {
  int rc = sqlite3_exec(db, sql, nullptr, nullptr, nullptr);
  if (rc != SQLITE_OK) {
    Error e = sql_error(db, name, what, rc);
    if (!sqlite3_get_autocommit(db)) sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    return e;
  }
  return ok_status();
}

std::string now_text() {
  const auto t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// Runs `body` inside BEGIN IMMEDIATE ... COMMIT, rolling back on failure.
template <class Body>
Status in_write_transaction(sqlite3* db, const std::string& name, const std::string& what, Body body) {
  if (auto s = exec(db, name, what, "BEGIN IMMEDIATE"); !s) return s;
  Status st = body();
  if (!st) {
    sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
    return st;
  }
  return exec(db, name, what, "COMMIT");
}

Status insert_row(sqlite3* db, const std::string& name, std::int64_t term, const std::string& db_id,
                  std::uint64_t start_epoch, const std::string& node) {
  Stmt st;
  int rc = sqlite3_prepare_v2(db,
                              "INSERT INTO _drd_history(term, db_id, start_epoch, epoch, node, started_at) "
                              "VALUES (?1, ?2, ?3, ?3, ?4, ?5)",
                              -1, &st.s, nullptr);
  if (rc != SQLITE_OK) return sql_error(db, name, "recording term " + std::to_string(term), rc);
  const std::string at = now_text();
  sqlite3_bind_int64(st.s, 1, term);
  sqlite3_bind_text(st.s, 2, db_id.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_int64(st.s, 3, static_cast<sqlite3_int64>(start_epoch));
  sqlite3_bind_text(st.s, 4, node.c_str(), -1, SQLITE_TRANSIENT);
  sqlite3_bind_text(st.s, 5, at.c_str(), -1, SQLITE_TRANSIENT);
  rc = sqlite3_step(st.s);
  if (rc != SQLITE_DONE) return sql_error(db, name, "recording term " + std::to_string(term), rc);
  return ok_status();
}

}  // namespace

Result<FileHistory> read_history(sqlite3* db, const std::string& name) {
  FileHistory h;
  {
    Stmt st;
    int rc = sqlite3_prepare_v2(db, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = '_drd_history'",
                                -1, &st.s, nullptr);
    if (rc != SQLITE_OK) return sql_error(db, name, "reading the history", rc);
    rc = sqlite3_step(st.s);
    if (rc != SQLITE_ROW) return sql_error(db, name, "reading the history", rc);
    if (sqlite3_column_int64(st.s, 0) == 0) return h;
  }
  Stmt st;
  int rc = sqlite3_prepare_v2(db, "SELECT term, db_id, start_epoch, epoch, node FROM _drd_history ORDER BY term", -1,
                              &st.s, nullptr);
  if (rc != SQLITE_OK) return sql_error(db, name, "reading the history", rc);
  while ((rc = sqlite3_step(st.s)) == SQLITE_ROW) {
    const auto* id = reinterpret_cast<const char*>(sqlite3_column_text(st.s, 1));
    const std::string row_id = id ? id : "";
    if (h.stamped && row_id != h.db_id)
      return make_error(Errc::corrupt, name + ": _drd_history names two database ids (" + h.db_id + ", " + row_id + ")");
    h.stamped = true;
    h.db_id = row_id;
    h.terms.push_back({sqlite3_column_int64(st.s, 0), static_cast<std::uint64_t>(sqlite3_column_int64(st.s, 2))});
    h.epoch = static_cast<std::uint64_t>(sqlite3_column_int64(st.s, 3));
    const auto* node = reinterpret_cast<const char*>(sqlite3_column_text(st.s, 4));
    h.last_node = node ? node : "";
  }
  if (rc != SQLITE_DONE) return sql_error(db, name, "reading the history", rc);
  return h;
}

Result<FileHistory> read_history_file(const std::filesystem::path& path) {
  struct stat sb {};
  if (::stat(path.c_str(), &sb) != 0) return FileHistory{};
  // Opening a FIFO would block the caller; a directory or device is no database either.
  if (!S_ISREG(sb.st_mode)) return make_error(Errc::corrupt, path.string() + " is not a regular file");
  if (sb.st_size == 0) return FileHistory{};
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    Error e = sql_error(db, path.string(), "opening", rc);
    sqlite3_close(db);
    return e;
  }
  sqlite3_busy_timeout(db, 2000);
  auto h = read_history(db, path.string());
  sqlite3_close(db);
  return h;
}

Status create_history(sqlite3* db, const std::string& name, const std::string& db_id, std::int64_t term,
                      const std::string& node) {
  return in_write_transaction(db, name, "creating the history", [&]() -> Status {
    if (auto s = exec(db, name, "creating the history",
                      "CREATE TABLE IF NOT EXISTS _drd_history(term INTEGER PRIMARY KEY, db_id TEXT NOT NULL, "
                      "start_epoch INTEGER NOT NULL, epoch INTEGER NOT NULL, node TEXT NOT NULL, "
                      "started_at TEXT NOT NULL)");
        !s)
      return s;
    auto h = read_history(db, name);
    if (!h) return h.error();
    if (h->stamped) return ok_status();  // somebody made it meanwhile
    return insert_row(db, name, std::max<std::int64_t>(term, 1), db_id, 1, node);
  });
}

Status stamp_history(sqlite3* db, const std::string& name) {
  return exec(db, name, "stamping the history",
              "UPDATE _drd_history SET epoch = epoch + 1 WHERE term = (SELECT max(term) FROM _drd_history)");
}

Status begin_term(sqlite3* db, const std::string& name, std::int64_t term, const std::string& node) {
  return in_write_transaction(db, name, "beginning term " + std::to_string(term), [&]() -> Status {
    auto h = read_history(db, name);
    if (!h) return h.error();
    if (!h->stamped) return make_error(Errc::refused, name + " carries no drd history to continue");
    const std::int64_t t = std::max(term, h->last_term() + 1);
    return insert_row(db, name, t, h->db_id, h->epoch + 1, node);
  });
}

std::string new_database_id() {
  std::random_device rd;
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (int i = 0; i < 8; ++i) {
    const unsigned v = rd();
    for (int k = 0; k < 4; ++k) out += hex[(v >> (k * 4)) & 0xf];
  }
  return out;
}

}  // namespace drd::replication
