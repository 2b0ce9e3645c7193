// PostgreSQL high availability end to end: a real drd process watching a real
// PostgreSQL 15 primary with two streaming standbys (monitoring interval
// 200 ms, timeout 500 ms, threshold 3).
#include <catch2/catch.hpp>

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

std::string str(const json::value& v) { return std::string(v.as_string()); }

bool in_recovery(PgCluster& pg, int i) { return pg.query(i, "SELECT pg_is_in_recovery()") == std::optional<std::string>("t"); }

// Whether a write on node i is refused.
bool write_refused(PgCluster& pg, int i) {
  try {
    pg.exec(i, "CREATE TEMP TABLE fence_probe (x int)");  // refused in a read-only session
    return false;
  } catch (const std::exception&) {
    return true;
  }
}

std::string streaming_sql(const std::string& node) {
  return "SELECT count(*) FROM pg_stat_replication WHERE application_name = '" + node + "' AND state = 'streaming'";
}

}  // namespace

TEST_CASE("pg: drd status shows the primary and two streaming standbys with lag fields", "[pg_e2e]") {
  PgDrdFixture f;
  f.start();
  REQUIRE(f.wait_streaming_in_status("node1"));
  REQUIRE(f.wait_streaming_in_status("node2"));
  auto st = f.status();
  CHECK(str(st.at("primary")) == "node0");
  for (auto& n : st.at("nodes").as_array()) {
    auto& o = n.as_object();
    INFO(json::serialize(o));
    CHECK(str(o.at("engine")) == "postgresql");
    CHECK(o.at("healthy").as_bool());
    CHECK(o.contains("lag_bytes"));
    CHECK(o.contains("lag_ms"));
    if (str(o.at("name")) == "node0") {
      CHECK(str(o.at("role")) == "primary");
    } else {
      CHECK(str(o.at("role")) == "standby");
      CHECK(o.contains("position"));
      CHECK(o.at("lag_bytes").to_number<std::int64_t>() < 1 << 20);
    }
  }
  // The human panel names every node.
  auto out = f.drctl({"status"});
  INFO(out.out << out.err);
  CHECK(out.exit_code == 0);
  CHECK(out.out.find("node1") != std::string::npos);
  CHECK(out.out.find("node2") != std::string::npos);
}

TEST_CASE("pg: kill -9 of the primary fails over to the best standby - the other follows - pg_rewind rejoins the old one",
          "[pg_e2e]") {
  PgDrdFixture f;
  f.start();
  auto& pg = f.pg();
  pg.exec(0, "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)");
  REQUIRE(pg.wait_for(1, "SELECT count(*) FROM t", "1"));
  REQUIRE(pg.wait_for(2, "SELECT count(*) FROM t", "1"));
  REQUIRE(f.wait_streaming_in_status("node1"));
  // Make the old primary diverge: its standbys stop receiving, then it commits row 99 alone.
  for (int i : {1, 2}) {
    pg.exec(i, "ALTER SYSTEM SET primary_conninfo = ''");
    pg.exec(i, "SELECT pg_reload_conf()");
  }
  REQUIRE(pg.wait_for(0, "SELECT count(*) FROM pg_stat_replication", "0", 5s));
  pg.exec(0, "INSERT INTO t VALUES (99)");

  const auto t0 = Clock::now();
  pg.kill9(0);
  REQUIRE(f.wait_primary("node1", 15s));
  REQUIRE(eventually([&] { return !in_recovery(pg, 1) && !write_refused(pg, 1); }, 10s));
  const auto failover_ms = ms_since(t0);
  WARN("kill -9: node1 writable " << failover_ms << " ms after the kill");
  CHECK(failover_ms < 5000);

  // The other standby follows the new primary.
  pg.exec(1, "INSERT INTO t VALUES (2)");
  REQUIRE(pg.wait_for(2, "SELECT count(*) FROM t WHERE id = 2", "1", 15s));
  REQUIRE(pg.wait_for(1, streaming_sql("node2"), "1", 10s));
  json::array hist;
  REQUIRE(eventually([&] { return !(hist = f.call("history").as_array()).empty(); }, 15s));
  CHECK(str(hist[0].at("from")) == "node0");
  CHECK(str(hist[0].at("to")) == "node1");
  CHECK(str(hist[0].at("mode")) == "auto");
  CHECK(str(f.node_status("node0").at("role")) == "fenced");

  // Rejoin with pg_rewind: the divergent row 99 is discarded, node0 streams from node1.
  auto r = f.drctl({"rejoin", "node0"});
  INFO(r.out << r.err << f.log());
  REQUIRE(r.exit_code == 0);
  CHECK(in_recovery(pg, 0));
  REQUIRE(pg.wait_for(1, streaming_sql("node0"), "1", 15s));
  REQUIRE(pg.wait_for(0, "SELECT count(*) FROM t WHERE id = 2", "1", 10s));
  CHECK(pg.query(0, "SELECT count(*) FROM t WHERE id = 99") == std::optional<std::string>("0"));
  CHECK(pg.query(0, "SELECT current_setting('default_transaction_read_only')") == std::optional<std::string>("off"));
  REQUIRE(eventually([&] { return str(f.node_status("node0").at("role")) == "standby"; }, 5s));
  REQUIRE(f.wait_streaming_in_status("node0"));
}

TEST_CASE("pg: SIGSTOP of the primary fails over - the frozen old primary is stopped hard and stays fenced",
          "[pg_e2e]") {
  PgDrdFixture f;
  f.start();
  auto& pg = f.pg();
  pg.exec(0, "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)");
  REQUIRE(pg.wait_for(1, "SELECT count(*) FROM t", "1"));
  REQUIRE(pg.wait_for(2, "SELECT count(*) FROM t", "1"));
  const auto t0 = Clock::now();
  pg.sigstop(0);
  REQUIRE(f.wait_primary("node1", 20s));
  // From the moment the store names node1, status says node0 is fenced, and once the
  // promotion is done, how: its frozen server was killed.
  CHECK_THAT(str(f.node_status("node0").at("replication")), Catch::StartsWith("fenced"));
  CHECK(eventually([&] { return str(f.node_status("node0").at("replication")).find("SIGKILL") != std::string::npos; }, 3s));
  REQUIRE(eventually([&] { return !in_recovery(pg, 1) && !write_refused(pg, 1); }, 10s));
  WARN("SIGSTOP: node1 writable " << ms_since(t0) << " ms after the stop");
  pg.exec(1, "INSERT INTO t VALUES (2)");
  REQUIRE(pg.wait_for(2, "SELECT count(*) FROM t WHERE id = 2", "1", 15s));

  // drd manages node0's data_dir, so the hung old primary was SIGKILLed at the failover
  // (clients get "connection refused" at once); waking it up changes nothing.
  CHECK(eventually([&] { return !pg.running(0); }, 3s));
  const auto tc = Clock::now();
  pg.sigcont(0);
  REQUIRE(eventually([&] { return write_refused(pg, 0); }, 5s));
  const auto fence_ms = ms_since(tc);
  WARN("SIGCONT: old primary refuses writes " << fence_ms << " ms after it woke up");
  CHECK(fence_ms < 1500);
  CHECK_FALSE(in_recovery(pg, 0));
  auto n0 = f.node_status("node0");
  INFO(json::serialize(n0));
  CHECK(str(n0.at("role")) == "fenced");
  CHECK(n0.at("fenced").as_bool());
  CHECK_THAT(str(n0.at("replication")), Catch::Contains("SIGKILL"));  // the note outlives the failover
  CHECK(f.log().find("its local server was killed") != std::string::npos);
  // It stays fenced: still refusing a little later, and drd still names node1.
  std::this_thread::sleep_for(600ms);
  CHECK(write_refused(pg, 0));
  CHECK(str(f.status().at("primary")) == "node1");
  CHECK(f.log().find("[event=fence node=node0") != std::string::npos);
}

TEST_CASE("pg: manual failover fences the old primary and repoints the other standby", "[pg_e2e]") {
  PgDrdFixture f;
  f.start();
  auto& pg = f.pg();
  pg.exec(0, "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)");
  REQUIRE(pg.wait_for(1, "SELECT count(*) FROM t", "1"));
  REQUIRE(pg.wait_for(2, "SELECT count(*) FROM t", "1"));
  REQUIRE(f.wait_streaming_in_status("node2"));
  auto r = f.call("failover", {{"node", "node2"}});
  INFO(json::serialize(r));
  CHECK(str(r.at("to")) == "node2");
  CHECK(str(f.status().at("primary")) == "node2");
  CHECK_FALSE(in_recovery(pg, 2));
  pg.exec(2, "INSERT INTO t VALUES (2)");
  CHECK(write_refused(pg, 0));  // fenced: read-only, still running
  CHECK(str(f.node_status("node0").at("role")) == "fenced");
  REQUIRE(pg.wait_for(1, "SELECT count(*) FROM t WHERE id = 2", "1", 15s));
  REQUIRE(pg.wait_for(2, streaming_sql("node1"), "1", 10s));
  json::array hist;
  REQUIRE(eventually([&] { return !(hist = f.call("history").as_array()).empty(); }, 15s));
  CHECK(str(hist[0].at("mode")) == "manual");
  CHECK(str(hist[0].at("to")) == "node2");
}

TEST_CASE("pg: no candidate when both standbys are stopped", "[pg_e2e]") {
  PgDrdFixture f;
  f.start();
  auto& pg = f.pg();
  pg.stop(1);
  pg.stop(2);
  REQUIRE(eventually([&] { return !f.node_status("node1").at("healthy").as_bool() &&
                                  !f.node_status("node2").at("healthy").as_bool(); }, 10s));
  pg.kill9(0);
  REQUIRE(eventually([&] { return str(f.status().at("failover_state")) == "no_candidate"; }, 10s));
  auto st = f.status();
  INFO(json::serialize(st));
  CHECK(str(st.at("primary")) == "node0");
  CHECK(std::string(st.at("failover_reason").as_string()).find("node1") != std::string::npos);
  CHECK(f.call("history").as_array().empty());
}

TEST_CASE("pg: synchronous mode keeps every acknowledged commit across a kill -9 failover", "[pg_e2e]") {
  PgDrdOptions o;
  o.synchronous = true;
  PgDrdFixture f(o);
  f.start();
  auto& pg = f.pg();
  // drd names the standbys in synchronous_standby_names; node1 (priority 1) becomes the sync one.
  REQUIRE(pg.wait_for(0, "SHOW synchronous_standby_names", "FIRST 1 (\"node1\", \"node2\")", 10s));
  REQUIRE(pg.wait_for(0, "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'node1'", "sync", 10s));
  REQUIRE(eventually([&] { return str(f.node_status("node1").at("replication")) == "streaming (sync)"; }, 10s));

  auto writer = f.start_writer(8, 0);
  REQUIRE(eventually([&] { return read_acks(f.dir() / "acks.txt").size() >= 200; }, 10s));
  pg.kill9(0);
  REQUIRE(f.wait_primary("node1", 15s));
  // The writer finds node1 through its multi-host URI and keeps committing.
  REQUIRE(eventually([&] {
    for (auto& a : read_acks(f.dir() / "acks.txt"))
      if (a.port == pg.port(1)) return true;
    return false;
  }, 15s));
  REQUIRE(writer->wait(20s).has_value());
  auto acks = read_acks(f.dir() / "acks.txt");
  auto present = ids_on(pg, 1);
  std::vector<long long> missing;
  for (auto& a : acks)
    if (!present.count(a.id)) missing.push_back(a.id);
  INFO(missing.size() << " of " << acks.size() << " acknowledged ids missing on node1, first "
                      << (missing.empty() ? 0 : missing.front()));
  CHECK(missing.empty());
  CHECK(acks.size() > 200);
  // The new primary names its remaining standby.
  REQUIRE(pg.wait_for(1, "SHOW synchronous_standby_names", "FIRST 1 (\"node2\")", 10s));
}
