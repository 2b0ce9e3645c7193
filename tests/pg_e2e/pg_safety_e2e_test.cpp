// PostgreSQL safety end to end (real drd, real PostgreSQL 15): a primary whose connection
// slots are all taken is up (saturated), not failed over and killed; a smart shutdown is not
// held open by drd's sessions and shows as shutting down; a restart within
// failover.restart_grace is no failover; a standby with WAL replay paused is no switchover
// target and does not hold up a failover.
#include <catch2/catch.hpp>
#include <libpq-fe.h>

#include <memory>
#include <thread>

#include "tests/pg_e2e/pg_drd_fixture.hpp"

using namespace drd::test;
using namespace std::chrono_literals;
namespace json = boost::json;

namespace {

using Clock = std::chrono::steady_clock;
long long ms_since(Clock::time_point t0) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
}

std::string text(const json::object& o, const char* key) {
  auto* v = o.if_contains(key);
  return v && v->is_string() ? std::string(v->as_string()) : std::string();
}
bool flag(const json::object& o, const char* key) {
  auto* v = o.if_contains(key);
  return v && v->is_bool() && v->as_bool();
}
std::int64_t term_of(PgDrdFixture& f) { return f.status().at("term").to_number<std::int64_t>(); }

struct ConnDeleter {
  void operator()(PGconn* c) const { PQfinish(c); }
};
using Conn = std::unique_ptr<PGconn, ConnDeleter>;

std::string scalar(PGconn* c, const std::string& sql) {
  PGresult* r = PQexec(c, sql.c_str());
  std::string out = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) > 0 ? PQgetvalue(r, 0, 0) : "";
  PQclear(r);
  return out;
}

// Waits until drd has probed `node` `n` more times (each probe stamps last_probe) while
// `pred` held for its status; false if `pred` stops holding or time runs out.
template <class Pred>
bool holds_for_probes(PgDrdFixture& f, const std::string& node, int n, Pred pred, std::chrono::milliseconds timeout) {
  std::set<std::string> seen;
  const auto until = Clock::now() + timeout;
  while (Clock::now() < until) {
    auto s = f.node_status(node);
    if (!pred(s)) return false;
    seen.insert(text(s, "last_probe"));
    if (static_cast<int>(seen.size()) > n) return true;
    std::this_thread::sleep_for(20ms);
  }
  return false;
}

}  // namespace

TEST_CASE("pg: a primary with every connection slot taken is up and saturated - not failed over - not killed",
          "[pg_e2e][pg_safety]") {
  PgDrdOptions o;
  o.standbys = 1;  // max_connections stays 100: a standby copied cold may not have fewer than its primary
  PgDrdFixture f(o);
  f.start();
  auto& pg = f.pg();
  REQUIRE(f.wait_streaming_in_status("node1"));
  const auto term0 = term_of(f);
  const auto pm = pg.postmaster_pid(0);
  REQUIRE(pm);

  // The application connects as the same superuser as drd and takes every slot, the
  // superuser-reserved ones too.
  std::vector<Conn> held;
  auto fill = [&] {
    for (int i = 0; i < 200; ++i) {
      Conn c(PQconnectdb(pg.url(0).c_str()));
      if (PQstatus(c.get()) != CONNECTION_OK) return std::string(PQerrorMessage(c.get()));
      held.push_back(std::move(c));
    }
    return std::string("never refused");
  };
  REQUIRE(fill().find("too many clients") != std::string::npos);
  // Then drd's own sessions drop (an idle timeout, a DBA's pg_terminate_backend) and the
  // application takes those slots too; repeated until drd is the one left without a slot.
  REQUIRE(eventually(
      [&] {
        scalar(held.front().get(),
               "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name LIKE 'drd%'"
               " AND backend_type = 'client backend'");
        for (int i = 0; i < 10; ++i) {
          fill();
          std::this_thread::sleep_for(20ms);
        }
        return text(f.node_status("node0"), "server_state") == "saturated";
      },
      20s));
  // For many probes (well past failure_threshold = 3): up, saturated, still the primary.
  CHECK(holds_for_probes(
      f, "node0", 8,
      [](const json::object& s) {
        return text(s, "server_state") == "saturated" && flag(s, "healthy") && text(s, "role") == "primary";
      },
      20s));
  INFO(f.log());
  CHECK(term_of(f) == term0);
  CHECK(text(f.status(), "primary") == "node0");
  CHECK(pg.running(0));
  CHECK(pg.postmaster_pid(0) == pm);
  CHECK(scalar(held.front().get(), "SELECT 1") == "1");  // the application's sessions live
  CHECK(f.log().find("server_saturated") != std::string::npos);
  // `drctl test` says so too.
  const json::value tested = f.call("test", {{"node", "node0"}});
  for (auto& row : tested.at("nodes").as_array()) {
    INFO(json::serialize(row));
    CHECK(text(row.as_object(), "server_state") == "saturated");
    CHECK(text(row.as_object(), "health") == "up");
  }
}

TEST_CASE("pg: a smart shutdown of the primary is not held open by drd - shown as shutting down - no failover on restart",
          "[pg_e2e][pg_safety]") {
  PgDrdOptions o;
  o.standbys = 1;
  PgDrdFixture f(o);
  f.start();
  auto& pg = f.pg();
  REQUIRE(f.wait_streaming_in_status("node1"));
  const auto term0 = term_of(f);
  auto stop = pg.run_pg_tool({"pg_ctl", "stop", "-D", pg.data_dir(0).string(), "-m", "smart", "-W", "-s"});
  REQUIRE(stop.success());
  // Every new session is refused ("shutting down"): drd says so, is not healthy about it,
  // and closes its own sessions, so the shutdown finishes.
  REQUIRE(eventually(
      [&] {
        auto n = f.node_status("node0");
        return text(n, "server_state") == "shutting_down" && !flag(n, "healthy");
      },
      15s));
  INFO(f.log());
  REQUIRE(eventually([&] { return !pg.running(0); }, 30s));
  // Started again within failover.restart_grace: the same primary, no failover.
  pg.start(0);
  REQUIRE(eventually(
      [&] {
        auto n = f.node_status("node0");
        return flag(n, "healthy") && text(n, "server_state").empty();
      },
      30s));
  CHECK(term_of(f) == term0);
  CHECK(text(f.status(), "primary") == "node0");
  CHECK(f.log().find("node_restarting") != std::string::npos);
}

TEST_CASE("pg: a fast restart of the primary is waited for within restart_grace - not a failover", "[pg_e2e][pg_safety]") {
  PgDrdOptions o;
  o.standbys = 1;
  PgDrdFixture f(o);
  f.start();
  auto& pg = f.pg();
  REQUIRE(f.wait_streaming_in_status("node1"));
  const auto term0 = term_of(f);
  // A restart whose stop and start are apart for more than failure_threshold probes (a long
  // shutdown checkpoint, an operator editing postgresql.conf in between).
  pg.stop(0);  // pg_ctl stop -m fast
  REQUIRE(eventually([&] { return text(f.node_status("node0"), "health") != "up"; }, 15s));
  INFO(f.log());
  CHECK(holds_for_probes(f, "node0", 6, [](const json::object& s) { return text(s, "health") == "restarting"; }, 20s));
  auto out = pg.run_pg_tool({"pg_ctl", "start", "-D", pg.data_dir(0).string(), "-w", "-t", "60", "-s", "-l",
                             pg.log_file(0).string()});
  REQUIRE(out.success());
  REQUIRE(eventually([&] { return flag(f.node_status("node0"), "healthy"); }, 30s));
  CHECK(holds_for_probes(f, "node0", 5, [](const json::object& s) { return flag(s, "healthy"); }, 20s));
  INFO(f.log());
  CHECK(term_of(f) == term0);
  CHECK(text(f.status(), "primary") == "node0");
  CHECK(pg.query(0, "SELECT pg_is_in_recovery()") == std::optional<std::string>("f"));
}

TEST_CASE("pg: a standby with WAL replay paused shows its replay lag - is refused as switchover target - is skipped by failover",
          "[pg_e2e][pg_safety]") {
  PgDrdFixture f;  // node1 (priority 1) and node2 (priority 2)
  f.start();
  auto& pg = f.pg();
  REQUIRE(f.wait_streaming_in_status("node1"));
  REQUIRE(f.wait_streaming_in_status("node2"));
  pg.exec(1, "SELECT pg_wal_replay_pause()");
  pg.exec(0, "CREATE TABLE paused_t AS SELECT g FROM generate_series(1, 20000) g");
  REQUIRE(eventually(
      [&] {
        auto n = f.node_status("node1");
        auto* rl = n.if_contains("replay_lag_bytes");
        return flag(n, "replay_paused") && rl && rl->to_number<std::int64_t>() > 0;
      },
      15s));
  auto n2 = f.node_status("node2");
  CHECK(n2.contains("replay_paused"));
  CHECK_FALSE(flag(n2, "replay_paused"));
  const auto term0 = term_of(f);

  // Refused at once, naming the node and its state, with nothing fenced.
  const auto t0 = Clock::now();
  auto err = f.call_error("switchover", {{"node", "node1"}});
  INFO(err.message << "\n" << f.log());
  CHECK(ms_since(t0) < 5000);
  CHECK(err.message.find("node1") != std::string::npos);
  CHECK(err.message.find("paused") != std::string::npos);
  CHECK(text(f.status(), "primary") == "node0");
  CHECK(term_of(f) == term0);
  CHECK(pg.query(0, "SHOW default_transaction_read_only") == std::optional<std::string>("off"));
  pg.exec(0, "INSERT INTO paused_t VALUES (0)");

  // A crash of the primary: node2 is promoted (node1 would be preferred, but replays nothing),
  // and the paused node1 does not hold the failover up.
  pg.kill9(0);
  REQUIRE(f.wait_primary("node2", 30s));
  REQUIRE(eventually([&] { return !f.call("history").as_array().empty(); }, 10s));
  auto h = f.call("history").as_array()[0].as_object();
  INFO(json::serialize(h));
  CHECK(text(h, "to") == "node2");
  CHECK(h.at("duration_ms").to_number<std::int64_t>() < 8000);
}
