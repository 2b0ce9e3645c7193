#pragma once
// A tiny RAII wrapper over sqlite3* for the backup engine's own connections.
#include <sqlite3.h>

#include <filesystem>
#include <string>

#include "common/result.hpp"

namespace drd::backup {

class SqliteConn {
 public:
  static Result<SqliteConn> open(const std::filesystem::path& p, int flags, int busy_ms = 5000);
  SqliteConn(SqliteConn&& o) noexcept : db_(o.db_) { o.db_ = nullptr; }
  SqliteConn& operator=(SqliteConn&&) = delete;
  ~SqliteConn();
  sqlite3* get() const { return db_; }
  Status exec(const std::string& sql) const;
  std::string errmsg() const { return sqlite3_errmsg(db_); }
  Status close();  // reports a failed close (e.g. a pending statement); idempotent

 private:
  explicit SqliteConn(sqlite3* db) : db_(db) {}
  sqlite3* db_;
};

}  // namespace drd::backup
