#pragma once
// Helpers for replication tests on real SQLite files: a connection wrapper
// that throws on error (tests want the failure at the line that caused it)
// and a row-for-row dump used to compare a standby with its primary.
#include <sqlite3.h>

#include <filesystem>
#include <string>

namespace drd::test {

class Conn {
 public:
  explicit Conn(const std::filesystem::path& p, int busy_ms = 5000, bool readonly = false);
  ~Conn();
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;
  void exec(const std::string& sql);
  int try_exec(const std::string& sql);  // returns the SQLite result code
  std::string text(const std::string& sql);
  long long integer(const std::string& sql);
  sqlite3* get() { return db_; }

 private:
  sqlite3* db_ = nullptr;
};

// Schema and every row of every table, in a canonical order.
std::string dump_db(const std::filesystem::path& p);
std::string integrity(const std::filesystem::path& p);
std::uintmax_t file_size_or_zero(const std::filesystem::path& p);

}  // namespace drd::test
