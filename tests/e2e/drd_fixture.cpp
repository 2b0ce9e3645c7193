#include "tests/e2e/drd_fixture.hpp"

#include <catch2/catch.hpp>
#include <sqlite3.h>
#include <sys/stat.h>

#include <fstream>
#include <thread>

namespace drd::test {

void make_sqlite_db(const std::filesystem::path& file, int rows) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(file.c_str(), &db) == SQLITE_OK);
  std::string sql =
      "PRAGMA journal_mode=WAL;"
      "CREATE TABLE IF NOT EXISTS images (id INTEGER PRIMARY KEY, url TEXT, sha256 TEXT, size INTEGER, path TEXT, crawled_at TEXT);"
      "BEGIN;";
  for (int i = 0; i < rows; ++i)
    sql += "INSERT INTO images (url, sha256, size, path, crawled_at) VALUES ('http://example.test/" + std::to_string(i) +
           ".jpg', 'abc', " + std::to_string(i * 10) + ", '/img/" + std::to_string(i) + "', datetime('now'));";
  sql += "COMMIT;";
  REQUIRE(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr) == SQLITE_OK);
  sqlite3_close(db);
}

long long count_rows(const std::filesystem::path& file) {
  sqlite3* db = nullptr;
  long long n = -1;
  if (sqlite3_open_v2(file.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_busy_timeout(db, 2000);  // like an application: drd may be opening it right now
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db, "SELECT count(*) FROM images", -1, &st, nullptr) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
      n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
  }
  sqlite3_close(db);
  return n;
}

void app_exec(const std::filesystem::path& file, const std::string& sql) {
  std::string last;
  for (int attempt = 0; attempt < 40; ++attempt) {
    sqlite3* db = nullptr;
    int rc = sqlite3_open_v2(file.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr);
    if (rc == SQLITE_OK) {
      sqlite3_busy_timeout(db, 2000);
      rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr);
    }
    if (rc == SQLITE_OK) {
      sqlite3_close(db);
      return;
    }
    last += "\n  attempt " + std::to_string(attempt + 1) + ": " + (db ? sqlite3_errmsg(db) : "cannot open");
    sqlite3_close(db);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  FAIL("cannot run SQL on " << file << ":" << last);
}

DrdFixture::DrdFixture(DrdOptions o) : opts(std::move(o)) {
  ::chmod(dir_.path().c_str(), 0755);  // other users (the access tests) must reach the socket
  std::filesystem::create_directories(dir_ / "data");
  make_sqlite_db(db("primary"), 10);
  for (int i = 1; i <= opts.standbys; ++i) std::filesystem::copy_file(db("primary"), db("secondary" + std::to_string(i)));
  write_config();
}

DrdFixture::~DrdFixture() {
  if (drd_ && drd_->running()) stop(15);
}

std::filesystem::path DrdFixture::db(const std::string& node) const { return dir_ / ("data/" + node + ".db"); }

void DrdFixture::write_config() {
  std::filesystem::create_directories(dir_ / "data");
  std::ofstream f(config_path(), std::ios::trunc);
  f << "disaster_recovery:\n"
       "  enabled: true\n"
       "  state_dir: ./state\n"
       "  current_link: ./data/current.db\n"
       "  control:\n"
       "    socket: ./state/drd.sock\n"
       "    socket_group: nogroup\n"
       "  databases:\n"
       "    primary:\n"
       "      name: primary\n"
       "      type: primary\n"
       "      priority: 0\n"
       "      url: \"sqlite:///data/primary.db\"\n";
  for (int i = 1; i <= opts.standbys; ++i)
    f << "    secondary" << i << ":\n      name: secondary" << i << "\n      type: secondary\n      priority: " << i
      << "\n      url: \"sqlite:///data/secondary" << i << ".db\"\n";
  f << "  monitoring:\n    enabled: true\n    interval: " << opts.interval << "\n    timeout: " << opts.timeout
    << "\n    failure_threshold: " << opts.threshold << "\n"
    << (opts.quick_check_interval.empty() ? "" : "    quick_check_interval: " + opts.quick_check_interval + "\n")
    << "  failover:\n    auto: " << (opts.auto_failover ? "true" : "false") << "\n"
    << opts.extra_yaml;
}

void DrdFixture::start(const std::map<std::string, std::string>& env) {
  drd_ = std::make_unique<Background>(
      std::vector<std::string>{bin("drd"), "--config", config_path().string(), "--foreground"}, dir_ / "drd.log", env);
  bool up = eventually([&] {
    if (!drd_->running()) return true;
    rpc::Client c(socket().string(), std::chrono::milliseconds(500));
    return std::holds_alternative<boost::json::value>(c.call("ping"));
  });
  INFO(log());
  REQUIRE(up);
  REQUIRE(drd_->running());
}

int DrdFixture::stop(int sig) {
  drd_->signal(sig);
  auto code = drd_->wait(std::chrono::seconds(10));
  INFO(log());
  REQUIRE(code.has_value());
  return *code;
}

boost::json::value DrdFixture::call(const std::string& method, boost::json::object params) {
  rpc::Client c(socket().string(), std::chrono::seconds(30));
  auto r = c.call(method, std::move(params));
  if (auto* e = std::get_if<rpc::CallError>(&r)) {
    INFO(method << " failed: " << e->message << "\n" << log());
    FAIL();
  }
  return std::get<boost::json::value>(r);
}

rpc::CallError DrdFixture::call_error(const std::string& method, boost::json::object params) {
  rpc::Client c(socket().string(), std::chrono::seconds(30));
  auto r = c.call(method, std::move(params));
  INFO(method << " unexpectedly succeeded");
  REQUIRE(std::holds_alternative<rpc::CallError>(r));
  return std::get<rpc::CallError>(r);
}

RunResult DrdFixture::drctl(std::vector<std::string> args) {
  std::vector<std::string> argv{bin("drctl"), "--socket", socket().string()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run(argv, {{"NO_COLOR", "1"}});
}

boost::json::object DrdFixture::node_status(const std::string& name) {
  auto st = call("status");
  for (auto& n : st.at("nodes").as_array())
    if (n.at("name").as_string() == name) return n.as_object();
  FAIL("no node " << name << " in status");
  return {};
}

}  // namespace drd::test
