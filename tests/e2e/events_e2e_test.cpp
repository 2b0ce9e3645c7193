// What drd logs: changes, named for what happened; no heartbeats.
#include <catch2/catch.hpp>
#include <sqlite3.h>

#include <filesystem>
#include <thread>

#include "tests/e2e/drd_fixture.hpp"

using namespace drd::test;

namespace {

std::size_t count(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto p = text.find(what); p != std::string::npos; p = text.find(what, p + what.size())) ++n;
  return n;
}

}  // namespace

TEST_CASE("stop-monitoring logs monitoring_stopped once and no failover_blocked", "[e2e][events]") {
  DrdFixture f;
  f.start();
  auto r = f.drctl({"stop-monitoring"});
  REQUIRE(r.exit_code == 0);
  CHECK(eventually([&] { return f.call("status").at("failover_state").as_string() == "unknown"; }));
  CHECK(f.call("status").at("failover_reason").as_string() == "monitoring is stopped (drctl start-monitoring)");
  // Each of these re-evaluates the cluster, as probes and timers do.
  REQUIRE(f.drctl({"disable-auto-failover"}).exit_code == 0);
  REQUIRE(f.drctl({"enable-auto-failover"}).exit_code == 0);
  REQUIRE(f.drctl({"reload"}).exit_code == 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  INFO(f.log());
  CHECK(count(f.log(), "event=monitoring_stopped") == 1);
  CHECK(count(f.log(), "event=failover_blocked") == 0);
  CHECK(f.log().find("monitoring is stopped [event=") == std::string::npos);
}

TEST_CASE("a failover that is needed and blocked is logged once as failover_blocked", "[e2e][events]") {
  DrdFixture f;
  f.opts.auto_failover = false;
  f.write_config();
  f.start();
  std::filesystem::rename(f.db("primary"), f.dir() / "away.db");
  CHECK(eventually([&] { return f.call("status").at("failover_state").as_string() == "disabled"; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // several more probe rounds
  INFO(f.log());
  CHECK(count(f.log(), "event=failover_blocked") == 1);
  CHECK_THAT(f.log(), Catch::Contains("primary primary is down and automatic failover is disabled [event=failover_blocked"));
}

TEST_CASE("after a failover, status names why the cluster is degraded", "[e2e][events]") {
  DrdFixture f;
  f.start();
  std::filesystem::rename(f.db("primary"), f.dir() / "away.db");
  CHECK(eventually([&] { return f.call("status").at("primary").as_string() == "secondary1"; }));
  CHECK(eventually([&] { return f.call("status").at("failover_state").as_string() == "degraded"; }));
  auto st = f.call("status");
  INFO(boost::json::serialize(st));
  CHECK_THAT(std::string(st.at("failover_reason").as_string()), Catch::Contains("primary is down and fenced"));
  auto text = f.drctl({"status"});
  CHECK_THAT(text.out, Catch::Contains("Reason: primary is down and fenced (old primary: drctl rejoin primary)"));
}

TEST_CASE("an idle cluster logs nothing: no line every 10 s after the last write", "[e2e][events][slow]") {
  DrdFixture f;
  f.start();
  {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open((f.dir() / "data/current.db").c_str(), &db) == SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    REQUIRE(sqlite3_exec(db, "INSERT INTO images (url) VALUES ('http://example.test/idle.jpg')", nullptr, nullptr,
                         nullptr) == SQLITE_OK);
    sqlite3_close(db);
  }
  // drd truncates the primary's WAL once it has been idle for 10 s (one "WAL restarted" line,
  // a change). After that nothing happens, so nothing may be logged: before, drd's own
  // restart frame counted as a write and the truncation (and its line) came back every 10 s.
  std::this_thread::sleep_for(std::chrono::seconds(13));
  const std::string settled = f.log();
  std::this_thread::sleep_for(std::chrono::seconds(22));
  const std::string later = f.log();
  INFO(later);
  CHECK(later.size() == settled.size());
  CHECK(count(later, "WAL restarted") <= 1);
  CHECK(eventually([&] { return count_rows(f.db("secondary1")) == count_rows(f.db("primary")); }));
}
