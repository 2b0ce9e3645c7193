// drd-example-writer: how an application follows a drd failover on SQLite.
//
// It writes image-metadata rows through drd's current_link (a symlink to the
// current primary) and, whenever a write fails the way a fenced or lost
// primary fails (SQLITE_BUSY after busy_timeout, I/O error, read-only, not a
// database, cannot open), it closes the connection, reopens the link and
// retries the same row. Each acknowledged row id is appended to --ack so a
// test can check that no acknowledged row was lost.
//
//   drd-example-writer --db var/data/images.db --rate 1000 --duration 10 --ack acks.txt
#include <sqlite3.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <algorithm>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::string db;
  double rate = 0;          // rows per second, 0 = as fast as possible
  double duration = 5;      // seconds
  std::string ack;          // file of acknowledged ids ("id unix_ms")
  long long start_id = 1;
  int busy_timeout_ms = 50;
  bool full_sync = false;
};

long long now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

bool retryable(int rc) {
  switch (rc & 0xff) {
    case SQLITE_BUSY: case SQLITE_LOCKED: case SQLITE_IOERR: case SQLITE_READONLY: case SQLITE_CANTOPEN:
    case SQLITE_CORRUPT: case SQLITE_NOTADB: case SQLITE_ERROR: case SQLITE_FULL: case SQLITE_PROTOCOL:
      return true;
    default:
      return false;
  }
}

sqlite3* open_db(const Options& o) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(o.db.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
    sqlite3_close(db);
    return nullptr;
  }
  sqlite3_busy_timeout(db, o.busy_timeout_ms);
  std::string pragmas = std::string("PRAGMA synchronous=") + (o.full_sync ? "FULL" : "NORMAL") +
                        ";CREATE TABLE IF NOT EXISTS images (id INTEGER PRIMARY KEY, url TEXT, sha256 TEXT, "
                        "size INTEGER, path TEXT, crawled_at TEXT)";
  if (sqlite3_exec(db, pragmas.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) {
    sqlite3_close(db);
    return nullptr;
  }
  return db;
}

int usage() {
  std::fprintf(stderr,
               "usage: drd-example-writer --db PATH [--rate N] [--duration S] [--ack FILE] [--start-id N]\n"
               "                          [--busy-timeout MS] [--full-sync]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    const char* v = nullptr;
    if (a == "--full-sync") { o.full_sync = true; continue; }
    if (!(v = next())) return usage();
    if (a == "--db") o.db = v;
    else if (a == "--rate") o.rate = std::atof(v);
    else if (a == "--duration") o.duration = std::atof(v);
    else if (a == "--ack") o.ack = v;
    else if (a == "--start-id") o.start_id = std::atoll(v);
    else if (a == "--busy-timeout") o.busy_timeout_ms = std::atoi(v);
    else return usage();
  }
  if (o.db.empty()) return usage();
  FILE* ack = o.ack.empty() ? nullptr : std::fopen(o.ack.c_str(), "a");
  const auto start = Clock::now();
  const auto end = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.duration));
  long long id = o.start_id, acked = 0, reopens = 0, max_gap_ms = 0;
  auto last_ack = Clock::now();
  sqlite3* db = nullptr;
  sqlite3_stmt* ins = nullptr;
  std::string last_error;
  std::vector<long long> latencies_us;  // commit latency of each acknowledged row
  while (Clock::now() < end) {
    if (!db) {
      db = open_db(o);
      if (!db) {
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
        continue;
      }
      sqlite3_prepare_v2(db,
                         "INSERT OR REPLACE INTO images (id, url, sha256, size, path, crawled_at) "
                         "VALUES (?1, 'http://crawler.test/img/' || ?1 || '.jpg', hex(randomblob(32)), ?1 * 7, "
                         "'/data/img/' || ?1 || '.jpg', strftime('%Y-%m-%dT%H:%M:%fZ','now'))",
                         -1, &ins, nullptr);
    }
    sqlite3_bind_int64(ins, 1, id);
    auto t_commit = Clock::now();
    int rc = sqlite3_step(ins);
    sqlite3_reset(ins);
    if (rc == SQLITE_DONE) {
      auto t = Clock::now();
      latencies_us.push_back(std::chrono::duration_cast<std::chrono::microseconds>(t - t_commit).count());
      max_gap_ms = std::max<long long>(max_gap_ms, std::chrono::duration_cast<std::chrono::milliseconds>(t - last_ack).count());
      last_ack = t;
      if (ack) {
        std::fprintf(ack, "%lld %lld %lld\n", id, now_ms(), reopens);
        std::fflush(ack);
      }
      ++acked;
      ++id;
      if (o.rate > 0) {
        auto due = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(double(acked) / o.rate));
        std::this_thread::sleep_until(due);
      }
      continue;
    }
    last_error = sqlite3_errmsg(db);
    if (!retryable(rc)) {
      std::fprintf(stderr, "drd-example-writer: unexpected error %d: %s\n", rc, last_error.c_str());
      break;
    }
    // The primary is fenced or gone: reopen through the link (it may point elsewhere now).
    sqlite3_finalize(ins);
    ins = nullptr;
    sqlite3_close_v2(db);
    db = nullptr;
    ++reopens;
  }
  sqlite3_finalize(ins);
  sqlite3_close_v2(db);
  if (ack) std::fclose(ack);
  std::sort(latencies_us.begin(), latencies_us.end());
  auto pct = [&](double q) {
    return latencies_us.empty() ? 0.0 : latencies_us[std::min(latencies_us.size() - 1, std::size_t(q * latencies_us.size()))] / 1000.0;
  };
  std::printf("{\"acked\": %lld, \"last_id\": %lld, \"reopens\": %lld, \"max_gap_ms\": %lld, "
              "\"commit_p50_ms\": %.3f, \"commit_p99_ms\": %.3f}\n",
              acked, id - 1, reopens, max_gap_ms, pct(0.5), pct(0.99));
  return 0;
}
