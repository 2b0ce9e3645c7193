#include "tests/replication/db_helpers.hpp"

#include <sstream>
#include <stdexcept>
#include <vector>

namespace drd::test {

Conn::Conn(const std::filesystem::path& p, int busy_ms, bool readonly) {
  int flags = readonly ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  if (sqlite3_open_v2(p.c_str(), &db_, flags, nullptr) != SQLITE_OK)
    throw std::runtime_error("open " + p.string() + ": " + sqlite3_errmsg(db_));
  sqlite3_busy_timeout(db_, busy_ms);
}

Conn::~Conn() { sqlite3_close_v2(db_); }

void Conn::exec(const std::string& sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    std::string m = err ? err : "?";
    sqlite3_free(err);
    throw std::runtime_error(sql.substr(0, 80) + ": " + m);
  }
}

int Conn::try_exec(const std::string& sql) { return sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, nullptr); }

std::string Conn::text(const std::string& sql) {
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &st, nullptr) != SQLITE_OK)
    throw std::runtime_error(sql + ": " + sqlite3_errmsg(db_));
  std::string out;
  if (sqlite3_step(st) == SQLITE_ROW) {
    auto t = sqlite3_column_text(st, 0);
    out = t ? reinterpret_cast<const char*>(t) : "";
  }
  sqlite3_finalize(st);
  return out;
}

long long Conn::integer(const std::string& sql) { return std::stoll(text(sql)); }

static std::vector<std::vector<std::string>> rows(sqlite3* db, const std::string& sql) {
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) != SQLITE_OK)
    throw std::runtime_error(sql + ": " + sqlite3_errmsg(db));
  std::vector<std::vector<std::string>> out;
  while (sqlite3_step(st) == SQLITE_ROW) {
    std::vector<std::string> r;
    for (int i = 0; i < sqlite3_column_count(st); ++i) {
      auto t = sqlite3_column_text(st, i);
      r.push_back(t ? reinterpret_cast<const char*>(t) : "NULL");
    }
    out.push_back(std::move(r));
  }
  sqlite3_finalize(st);
  return out;
}

std::string dump_db(const std::filesystem::path& p) {
  Conn c(p, 5000, true);
  std::ostringstream o;
  auto schema = rows(c.get(), "SELECT type, name, coalesce(sql,'') FROM sqlite_master ORDER BY type, name");
  for (auto& r : schema) o << r[0] << " " << r[1] << " " << r[2] << "\n";
  for (auto& r : schema) {
    if (r[0] != "table" || r[1].rfind("sqlite_", 0) == 0) continue;
    for (auto& row : rows(c.get(), "SELECT * FROM \"" + r[1] + "\" ORDER BY rowid")) {
      o << r[1] << ":";
      for (auto& v : row) o << " " << v;
      o << "\n";
    }
  }
  return o.str();
}

std::string integrity(const std::filesystem::path& p) {
  Conn c(p, 5000, true);
  return c.text("PRAGMA integrity_check");
}

std::uintmax_t file_size_or_zero(const std::filesystem::path& p) {
  std::error_code ec;
  auto n = std::filesystem::file_size(p, ec);
  return ec ? 0 : n;
}

}  // namespace drd::test
