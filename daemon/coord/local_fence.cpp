#include "daemon/coord/local_fence.hpp"

#include <filesystem>
#include <fstream>

#include "daemon/engines/node_factory.hpp"

namespace drd::coord {

LocalFence::LocalFence(const NodeConfig& node, ProcessRunner& runner) : cfg_(node), runner_(runner) {}

LocalFence::~LocalFence() {
  if (db_) sqlite3_close(db_);
}

namespace {

// A server fenced by being stopped (or found stopped) would come back writable the next
// time anyone starts it — the host booting, an operator — while this drd believes it holds
// the fence. With the setting where ALTER SYSTEM writes it, it starts read-only instead;
// unfence()'s ALTER SYSTEM RESET removes it again. Written only when the file's last word
// on the setting is not already 'on' (the SQL fence wrote it itself); appending keeps the
// file's owner (postgres). Whether the server is alive is not asked: after a crash its
// postmaster.pid stays behind, so the file alone tells nothing.
Status persist_read_only(const std::filesystem::path& data_dir) {
  const auto conf = data_dir / "postgresql.auto.conf";
  {
    std::ifstream in(conf);
    std::string line, last;
    while (std::getline(in, line)) {
      auto at = line.find_first_not_of(" \t");
      if (at != std::string::npos && line.compare(at, 29, "default_transaction_read_only") == 0) last = line;
    }
    if (last.find("'on'") != std::string::npos) return ok_status();
  }
  std::ofstream out(conf, std::ios::app);
  if (!out) return make_error(Errc::io, "cannot open " + conf.string() + " to keep the server read-only");
  out << "default_transaction_read_only = 'on'\n";
  if (!out.flush()) return make_error(Errc::io, "cannot write " + conf.string());
  return ok_status();
}

}  // namespace

Status LocalFence::fence(Millis timeout) {
  if (holding_) return ok_status();
  if (cfg_.engine == Engine::postgresql) {
    if (!node_) node_ = make_node(cfg_, runner_);
    if (auto st = node_->fence(timeout); !st) return st;
    if (cfg_.data_dir)
      if (auto st = persist_read_only(*cfg_.data_dir); !st) return st;
    holding_ = true;
    return ok_status();
  }
  if (!db_) {
    if (sqlite3_open_v2(cfg_.sqlite_path.c_str(), &db_, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
      std::string msg = db_ ? sqlite3_errmsg(db_) : "out of memory";
      sqlite3_close(db_);
      db_ = nullptr;
      return make_error(Errc::io, "cannot open " + cfg_.sqlite_path.string() + " to fence it: " + msg);
    }
  }
  sqlite3_busy_timeout(db_, static_cast<int>(timeout.count()));
  // No checkpoint from this connection: it must never write the database itself.
  if (sqlite3_exec(db_, "PRAGMA wal_autocheckpoint=0; BEGIN IMMEDIATE", nullptr, nullptr, nullptr) != SQLITE_OK)
    return make_error(Errc::unavailable, "cannot take the write lock of " + cfg_.sqlite_path.string() + ": " +
                                             sqlite3_errmsg(db_) + " (a writer holds it; retrying)");
  holding_ = true;
  return ok_status();
}

Status LocalFence::unfence(Millis timeout) {
  if (!holding_) return ok_status();
  if (cfg_.engine == Engine::postgresql) {
    if (auto st = node_->unfence(timeout); !st) return st;
    holding_ = false;
    return ok_status();
  }
  sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  sqlite3_close(db_);
  db_ = nullptr;
  holding_ = false;
  return ok_status();
}

Result<bool> sqlite_write_locked(const std::filesystem::path& file, Millis wait) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(file.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    return make_error(Errc::io, "cannot open " + file.string() + ": " + msg);
  }
  sqlite3_busy_timeout(db, static_cast<int>(wait.count()));
  int rc = sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr);
  bool locked = rc == SQLITE_BUSY;
  if (rc == SQLITE_OK) sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
  std::string err = rc != SQLITE_OK && !locked ? sqlite3_errmsg(db) : "";
  sqlite3_close(db);
  if (!err.empty()) return make_error(Errc::io, file.string() + ": " + err);
  return locked;
}

}  // namespace drd::coord
