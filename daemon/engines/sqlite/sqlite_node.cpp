#include "daemon/engines/sqlite/sqlite_node.hpp"

#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

namespace drd {

namespace {

struct Deadline {
  std::chrono::steady_clock::time_point at;
};

int progress_check(void* p) {
  auto* d = static_cast<Deadline*>(p);
  return std::chrono::steady_clock::now() > d->at ? 1 : 0;
}

}  // namespace

ProbeResult SqliteNode::probe(Millis timeout, bool deep) {
  ProbeResult r;
  auto start = std::chrono::steady_clock::now();
  Deadline deadline{start + timeout};
  auto finish = [&](std::string error) {
    r.response_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    r.error = std::move(error);
    r.ok = r.error.empty();
    return r;
  };
  const auto& path = cfg_.sqlite_path;
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0)
    return finish(errno == ENOENT ? "file not found: " + path.string()
                                  : "cannot stat " + path.string() + ": " + std::strerror(errno));
  // Not rejecting non-regular files here on purpose: opening is the real test,
  // and an open that blocks (a FIFO, a dead network mount) is what the monitor's deadline is for.
  if (S_ISREG(st.st_mode) && st.st_size == 0) return finish(path.string() + " is empty (not seeded yet)");

  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    sqlite3_close(db);
    return finish("cannot open " + path.string() + ": " + msg);
  }
  sqlite3_busy_timeout(db, static_cast<int>(timeout.count()));
  sqlite3_progress_handler(db, 1000, progress_check, &deadline);
  auto query = [&](const char* sql, std::string* first_text) -> std::string {
    sqlite3_stmt* q = nullptr;
    int prc = sqlite3_prepare_v2(db, sql, -1, &q, nullptr);
    std::string err;
    if (prc != SQLITE_OK) {
      err = sqlite3_errmsg(db);
    } else {
      int s = sqlite3_step(q);
      if (s == SQLITE_ROW && first_text) {
        auto t = sqlite3_column_text(q, 0);
        *first_text = t ? reinterpret_cast<const char*>(t) : "";
      } else if (s != SQLITE_ROW && s != SQLITE_DONE) {
        err = s == SQLITE_INTERRUPT ? "timed out after " + format_duration(timeout) : sqlite3_errmsg(db);
      }
    }
    sqlite3_finalize(q);
    return err;
  };
  std::string err = query("SELECT count(*) FROM sqlite_master", nullptr);
  if (err.empty() && deep) {
    std::string verdict;
    err = query("PRAGMA quick_check", &verdict);
    if (err.empty() && verdict != "ok") err = "quick_check: " + verdict;
    r.integrity_checked = err.empty();
    if (err.empty() || err.rfind("quick_check: ", 0) == 0) {
      std::lock_guard g(mu_);
      integrity_failure_ = err;
    }
  } else if (err.empty()) {
    std::lock_guard g(mu_);
    if (!integrity_failure_.empty()) err = integrity_failure_ + " (at the last integrity check; checked again every "
                                                               "monitoring.quick_check_interval)";
  }
  sqlite3_close(db);
  if (!err.empty()) return finish(path.string() + ": " + err);
  r.writable = ::access(path.c_str(), W_OK) == 0;
  return finish("");
}

Status SqliteNode::promote(Millis) {
  return make_error(Errc::unsupported, "SQLite promotion is done by the cluster driver");
}
Status SqliteNode::fence(Millis) {
  return make_error(Errc::unsupported, "SQLite fencing is done by the cluster driver");
}
Status SqliteNode::unfence(Millis) {
  return make_error(Errc::unsupported, "SQLite fencing is done by the cluster driver");
}
Status SqliteNode::follow(const NodeConfig&, Millis) {
  return make_error(Errc::unsupported, "SQLite replication is done by the cluster driver");
}

}  // namespace drd
