#pragma once
// Image-metadata SQLite databases for backup tests, and a writer thread that keeps inserting.
#include <sqlite3.h>

#include <atomic>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

namespace drd::backup::test {

struct Row {
  long long id;
  std::string url, sha256, path, crawled_at;
  long long size;
  bool operator==(const Row&) const = default;
};

inline void exec_or_throw(sqlite3* db, const std::string& sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    std::string m = err ? err : "?";
    sqlite3_free(err);
    throw std::runtime_error(m);
  }
}

inline sqlite3* open_db(const std::filesystem::path& p) {
  sqlite3* db = nullptr;
  if (sqlite3_open(p.c_str(), &db) != SQLITE_OK) throw std::runtime_error("open " + p.string());
  sqlite3_busy_timeout(db, 5000);
  return db;
}

// Inserts rows [from, from+n) in one transaction.
inline void insert_rows(sqlite3* db, long long from, long long n) {
  exec_or_throw(db, "BEGIN");
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(db, "INSERT INTO images(id,url,sha256,size,path,crawled_at) VALUES(?,?,?,?,?,?)", -1, &st, nullptr);
  for (long long i = from; i < from + n; ++i) {
    std::string url = "https://img.example.com/cats/" + std::to_string(i) + ".jpg";
    char sha[65];
    for (int k = 0; k < 64; ++k) sha[k] = "0123456789abcdef"[(i * 7 + k * 13) % 16];
    sha[64] = 0;
    std::string path = "/data/images/" + std::to_string(i % 97) + "/" + std::to_string(i) + ".jpg";
    sqlite3_bind_int64(st, 1, i);
    sqlite3_bind_text(st, 2, url.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 3, sha, -1, SQLITE_TRANSIENT);
    sqlite3_bind_int64(st, 4, 1000 + i * 37 % 100000);
    sqlite3_bind_text(st, 5, path.c_str(), -1, SQLITE_TRANSIENT);
    sqlite3_bind_text(st, 6, "2026-11-20T10:00:00Z", -1, SQLITE_STATIC);
    sqlite3_step(st);
    sqlite3_reset(st);
  }
  sqlite3_finalize(st);
  exec_or_throw(db, "COMMIT");
}

// A WAL-mode image database with `rows` rows (about 230 bytes each).
inline void make_image_db(const std::filesystem::path& p, long long rows) {
  sqlite3* db = open_db(p);
  exec_or_throw(db, "PRAGMA journal_mode=WAL; CREATE TABLE images(id INTEGER PRIMARY KEY, url TEXT NOT NULL, "
                    "sha256 TEXT NOT NULL, size INTEGER, path TEXT, crawled_at TEXT); "
                    "CREATE INDEX images_sha ON images(sha256);");
  for (long long i = 1; i <= rows; i += 5000) insert_rows(db, i, std::min(5000LL, rows - i + 1));
  sqlite3_close(db);
}

inline std::vector<Row> read_rows(const std::filesystem::path& p) {
  sqlite3* db = open_db(p);
  std::vector<Row> rows;
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(db, "SELECT id,url,sha256,size,path,crawled_at FROM images ORDER BY id", -1, &st, nullptr);
  auto text = [&](int c) { return std::string(reinterpret_cast<const char*>(sqlite3_column_text(st, c))); };
  while (sqlite3_step(st) == SQLITE_ROW)
    rows.push_back(Row{sqlite3_column_int64(st, 0), text(1), text(2), text(4), text(5), sqlite3_column_int64(st, 3)});
  sqlite3_finalize(st);
  sqlite3_close(db);
  return rows;
}

// Keeps inserting batches of rows until stopped; counts committed rows.
class Writer {
 public:
  Writer(const std::filesystem::path& p, long long next) : next_(next) {
    t_ = std::thread([this, p] {
      sqlite3* db = open_db(p);
      while (!stop_) {
        insert_rows(db, next_, 50);
        next_ += 50;
        ++batches_;
      }
      sqlite3_close(db);
    });
  }
  ~Writer() { stop(); }
  void stop() {
    stop_ = true;
    if (t_.joinable()) t_.join();
  }
  long long batches() const { return batches_; }

 private:
  std::atomic<bool> stop_{false};
  std::atomic<long long> next_, batches_{0};
  std::thread t_;
};

}  // namespace drd::backup::test
