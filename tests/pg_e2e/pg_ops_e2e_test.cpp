// PostgreSQL operations end to end, on real PostgreSQL 15 clusters driven by a
// real drd and drctl: clone a new standby, rejoin when pg_rewind is impossible
// (then --reclone), synchronous mode degrading and coming back, drd killed in
// the middle of a failover, and a lagging standby skipped by failover.
#include <catch2/catch.hpp>
#include <signal.h>

#include <filesystem>
#include <thread>

#include "tests/pg_e2e/pg_drd_fixture.hpp"

using namespace drd::test;
using namespace std::chrono_literals;
namespace json = boost::json;

namespace {

std::string str(const json::value& v) { return std::string(v.as_string()); }

bool in_recovery(PgCluster& pg, int i) { return pg.query(i, "SELECT pg_is_in_recovery()") == std::optional<std::string>("t"); }

// A new session on node i may write: a primary that is not fenced read-only.
bool writable(PgCluster& pg, int i) {
  return pg.query(i, "SELECT NOT pg_is_in_recovery() AND current_setting('default_transaction_read_only') = 'off'") ==
         std::optional<std::string>("t");
}

std::string streaming_sql(const std::string& node) {
  return "SELECT count(*) FROM pg_stat_replication WHERE application_name = '" + node + "' AND state = 'streaming'";
}

json::value parse_json(const RunResult& r) {
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 0);
  return json::parse(r.out);
}

// The firing alerts' rule names.
std::vector<std::string> firing(PgDrdFixture& f) {
  std::vector<std::string> out;
  const json::value alerts = f.call("alerts");  // kept alive for the loop
  for (auto& a : alerts.at("firing").as_array()) out.push_back(str(a.at("rule")));
  return out;
}
bool has(const std::vector<std::string>& v, const std::string& s) { return std::find(v.begin(), v.end(), s) != v.end(); }

// SIGCONT for a SIGSTOPped process when the test ends, whatever happens.
struct Resume {
  pid_t pid;
  ~Resume() { ::kill(pid, SIGCONT); }
};

}  // namespace

TEST_CASE("pg ops: drctl clone builds a new standby from the primary and it streams", "[pg_e2e][pg_ops]") {
  PgDrdOptions o;
  o.standbys = 1;
  o.spare_nodes = 1;  // node2: configured, no server yet
  PgDrdFixture f(o);
  f.start();
  auto& pg = f.pg();
  pg.exec(0, "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)");
  CHECK_FALSE(pg.running(2));
  CHECK_FALSE(f.node_status("node2").at("healthy").as_bool());

  auto r = f.drctl({"clone", "node2"});
  INFO(r.out << r.err << f.log());
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("node2") != std::string::npos);
  // A real standby of node0, streaming, listening on its own configured port.
  REQUIRE(pg.running(2));
  CHECK(in_recovery(pg, 2));
  REQUIRE(pg.wait_for(0, streaming_sql("node2"), "1", 10s));
  CHECK(pg.query(2, "SELECT count(*) FROM t") == std::optional<std::string>("1"));
  pg.exec(0, "INSERT INTO t VALUES (2)");
  REQUIRE(pg.wait_for(2, "SELECT count(*) FROM t WHERE id = 2", "1", 10s));
  // drd sees it as a healthy standby, and pg_basebackup ran through drd (its output in drd's log).
  REQUIRE(f.wait_streaming_in_status("node2", 15s));
  REQUIRE(eventually([&] { return f.node_status("node2").at("healthy").as_bool(); }, 10s));
  CHECK(str(f.node_status("node2").at("role")) == "standby");
  CHECK(f.log().find("pg_basebackup") != std::string::npos);
  CHECK(f.log().find("clone node2: cloned from node0") != std::string::npos);

  // The primary cannot be cloned over.
  auto p = f.drctl({"clone", "node0"});
  CHECK(p.exit_code != 0);
  CHECK(p.err.find("primary") != std::string::npos);
}

TEST_CASE("pg ops: rejoin without checksums or wal_log_hints explains why and --reclone rebuilds the node",
          "[pg_e2e][pg_ops]") {
  PgDrdOptions o;
  o.data_checksums = false;
  PgDrdFixture f(o);
  f.start();
  auto& pg = f.pg();
  REQUIRE(pg.query(0, "SHOW data_checksums") == std::optional<std::string>("off"));
  REQUIRE(pg.query(0, "SHOW wal_log_hints") == std::optional<std::string>("off"));
  pg.exec(0, "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)");
  REQUIRE(pg.wait_for(1, "SELECT count(*) FROM t", "1"));
  REQUIRE(pg.wait_for(2, "SELECT count(*) FROM t", "1"));
  REQUIRE(f.wait_streaming_in_status("node1"));
  pg.kill9(0);
  REQUIRE(f.wait_primary("node1", 15s));
  REQUIRE(eventually([&] { return writable(pg, 1); }, 10s));
  pg.exec(1, "INSERT INTO t VALUES (2)");

  // pg_rewind cannot work here: drctl says what is wrong and what to do, and node0 is left alone.
  auto r = f.drctl({"rejoin", "node0"});
  INFO(r.out << r.err);
  CHECK(r.exit_code != 0);
  CHECK(r.err.find("pg_rewind cannot rewind") != std::string::npos);
  CHECK(r.err.find("wal_log_hints") != std::string::npos);
  CHECK(r.err.find("drctl rejoin node0 --reclone") != std::string::npos);
  CHECK(r.err.find("nothing was changed") != std::string::npos);
  CHECK_FALSE(pg.running(0));
  CHECK(str(f.node_status("node0").at("role")) == "fenced");

  // --reclone: a fresh pg_basebackup copy from node1; node0 streams; its old folder is kept aside.
  auto rc = f.drctl({"rejoin", "node0", "--reclone"});
  INFO(rc.out << rc.err << f.log());
  REQUIRE(rc.exit_code == 0);
  CHECK(in_recovery(pg, 0));
  REQUIRE(pg.wait_for(1, streaming_sql("node0"), "1", 10s));
  REQUIRE(pg.wait_for(0, "SELECT count(*) FROM t WHERE id = 2", "1", 10s));
  pg.exec(1, "INSERT INTO t VALUES (3)");
  REQUIRE(pg.wait_for(0, "SELECT count(*) FROM t WHERE id = 3", "1", 10s));
  CHECK(pg.query(0, "SELECT current_setting('default_transaction_read_only')") == std::optional<std::string>("off"));
  REQUIRE(eventually([&] { return str(f.node_status("node0").at("role")) == "standby"; }, 10s));
  REQUIRE(f.wait_streaming_in_status("node0"));
  bool kept = false;
  for (auto& e : std::filesystem::directory_iterator(pg.root()))
    kept = kept || e.path().filename().string().rfind("node0.drd-old-", 0) == 0;
  CHECK(kept);
}

TEST_CASE("pg ops: synchronous mode degrades when no standby is left - writes unblock - it comes back",
          "[pg_e2e][pg_ops]") {
  PgDrdOptions o;
  o.synchronous = true;
  o.extra_failover_yaml = "    synchronous_degrade_after: 2s\n";
  PgDrdFixture f(o);
  f.start();
  auto& pg = f.pg();
  const std::string both = "FIRST 1 (\"node1\", \"node2\")";
  REQUIRE(pg.wait_for(0, "SHOW synchronous_standby_names", both, 10s));
  REQUIRE(eventually([&] { return str(f.status().at("synchronous")) == "on"; }, 5s));

  // A writer whose commits may wait up to 10 s (longer than the degrade delay).
  auto writer = std::make_unique<Background>(
      std::vector<std::string>{bin("drd-pg-writer"), "--url", f.multi_host_url(), "--duration", "9", "--rate", "50",
                               "--ack", (f.dir() / "acks.txt").string(), "--op-timeout", "10000"},
      f.dir() / "writer.log");
  REQUIRE(eventually([&] { return read_acks(f.dir() / "acks.txt").size() >= 25; }, 10s));

  // No synchronous standby left: commits wait...
  pg.stop(1);
  pg.stop(2);
  const auto stopped_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                              std::chrono::system_clock::now().time_since_epoch()).count();
  // ...until drd degrades to asynchronous (after 2 s), raises the alert, and they go through.
  REQUIRE(eventually([&] { return str(f.status().at("synchronous")) == "degraded"; }, 10s));
  REQUIRE(pg.wait_for(0, "SHOW synchronous_standby_names", "", 5s));
  REQUIRE(eventually([&] { return has(firing(f), "sync_degraded"); }, 5s));
  REQUIRE(eventually([&] {
    auto acks = read_acks(f.dir() / "acks.txt");
    return !acks.empty() && acks.back().ms > stopped_ms + 100;
  }, 10s));
  {
    // The block shows as one long gap in the acknowledgements: about the degrade delay.
    auto acks = read_acks(f.dir() / "acks.txt");
    long long gap = 0;
    for (std::size_t i = 1; i < acks.size(); ++i) gap = std::max(gap, acks[i].ms - acks[i - 1].ms);
    WARN("synchronous degrade: longest pause between acknowledged commits " << gap << " ms (degrade after 2 s)");
    CHECK(gap >= 1500);
    CHECK(gap < 8000);
  }
  CHECK(f.log().find("event=sync_degraded") != std::string::npos);

  // A standby streams again: synchronous mode is back and the alert resolves.
  pg.start(1);
  REQUIRE(pg.wait_for(0, "SHOW synchronous_standby_names", both, 15s));
  REQUIRE(pg.wait_for(0, "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'node1'", "sync", 10s));
  REQUIRE(eventually([&] { return str(f.status().at("synchronous")) == "on"; }, 5s));
  REQUIRE(eventually([&] { return !has(firing(f), "sync_degraded"); }, 5s));
  REQUIRE(writer->wait(30s).has_value());
  auto acks = read_acks(f.dir() / "acks.txt");
  auto present = ids_on(pg, 0);
  std::size_t missing = 0;
  for (auto& a : acks) missing += !present.count(a.id);
  CHECK(missing == 0);
  CHECK(acks.back().ms > stopped_ms + 2000);
}

TEST_CASE("pg ops: drd killed in the middle of a failover converges after restart with one writable primary",
          "[pg_e2e][pg_ops]") {
  // failover_claimed: the new term is stored, nothing promoted yet.
  // promoted: node1 promoted, node2 not repointed, no history row written.
  for (std::string point : {"failover_claimed", "promoted"}) {
    INFO("crash point " << point);
    PgDrdFixture f;
    f.start({{"DRD_TEST_CRASH_AT", point}});
    auto& pg = f.pg();
    pg.exec(0, "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)");
    REQUIRE(pg.wait_for(1, "SELECT count(*) FROM t", "1"));
    REQUIRE(pg.wait_for(2, "SELECT count(*) FROM t", "1"));
    REQUIRE(f.wait_streaming_in_status("node1"));
    pg.kill9(0);
    auto code = f.process()->wait(20s);
    INFO(f.log());
    REQUIRE(code == std::optional<int>(128 + SIGKILL));
    CHECK(f.log().find("killing drd at crash point '" + point + "'") != std::string::npos);
    CHECK(in_recovery(pg, 1) == (point == "failover_claimed"));

    f.start();
    REQUIRE(f.wait_primary("node1", 15s));
    REQUIRE(eventually([&] { return writable(pg, 1); }, 15s));
    REQUIRE(pg.wait_for(1, streaming_sql("node2"), "1", 15s));
    pg.exec(1, "INSERT INTO t VALUES (2)");
    REQUIRE(pg.wait_for(2, "SELECT count(*) FROM t WHERE id = 2", "1", 10s));

    // The old primary comes back from its crash: fenced, so one writable primary in all.
    pg.start(0);
    REQUIRE(eventually([&] { return !writable(pg, 0); }, 5s));
    int writable_count = 0;
    for (int i = 0; i < 3; ++i) writable_count += writable(pg, i);
    CHECK(writable_count == 1);

    // drctl's view: term and history agree, the interrupted failover is recorded once.
    auto st = parse_json(f.drctl({"--json", "status"}));
    auto hist = parse_json(f.drctl({"--json", "history"}));
    INFO(json::serialize(st) << "\n" << json::serialize(hist));
    CHECK(str(st.at("primary")) == "node1");
    REQUIRE(hist.as_array().size() == 1);
    auto& h = hist.as_array()[0];
    CHECK(str(h.at("from")) == "node0");
    CHECK(str(h.at("to")) == "node1");
    CHECK(str(h.at("mode")) == "auto");
    CHECK(h.at("term").to_number<std::int64_t>() == st.at("term").to_number<std::int64_t>());
    CHECK(str(h.at("reason")).find("drd stopped during this failover; finished when drd started again") !=
          std::string::npos);
    int primaries = 0;
    for (auto& n : st.at("nodes").as_array()) primaries += str(n.at("role")) == "primary";
    CHECK(primaries == 1);
    REQUIRE(eventually([&] { return str(f.node_status("node0").at("role")) == "fenced"; }, 5s));
  }
}

TEST_CASE("pg ops: a standby beyond max_lag is skipped by automatic failover", "[pg_e2e][pg_ops]") {
  PgDrdOptions o;
  o.extra_failover_yaml = "    max_lag: 1MB\n";
  PgDrdFixture f(o);
  f.start();
  auto& pg = f.pg();
  pg.exec(0, "CREATE TABLE t (id int PRIMARY KEY, pad text); INSERT INTO t VALUES (1, '')");
  REQUIRE(pg.wait_for(1, "SELECT count(*) FROM t", "1"));
  REQUIRE(pg.wait_for(2, "SELECT count(*) FROM t", "1"));
  REQUIRE(f.wait_streaming_in_status("node1"));
  REQUIRE(f.wait_streaming_in_status("node2"));

  // node1 (priority 1, the preferred standby) stops receiving: its WAL receiver is frozen.
  auto receiver = pg.query(1, "SELECT pid FROM pg_stat_wal_receiver");
  REQUIRE(receiver);
  const pid_t rpid = std::stoi(*receiver);
  REQUIRE(::kill(rpid, SIGSTOP) == 0);
  Resume resume{rpid};
  pg.exec(0, "INSERT INTO t SELECT g, repeat(md5(g::text), 30) FROM generate_series(2, 3000) g");
  REQUIRE(pg.wait_for(2, "SELECT count(*) FROM t", "3000", 10s));
  REQUIRE(eventually([&] { return f.node_status("node1").at("lag_bytes").to_number<std::int64_t>() > (1 << 20); }, 10s));
  CHECK(f.node_status("node2").at("lag_bytes").to_number<std::int64_t>() < (1 << 20));

  pg.kill9(0);
  REQUIRE(f.wait_primary("node2", 15s));
  ::kill(rpid, SIGCONT);  // node1 may follow node2 now
  REQUIRE(eventually([&] { return writable(pg, 2); }, 10s));
  CHECK(in_recovery(pg, 1));
  json::array hist;
  REQUIRE(eventually([&] { return !(hist = f.call("history").as_array()).empty(); }, 20s));
  INFO(json::serialize(hist));
  CHECK(str(hist[0].at("to")) == "node2");
  CHECK(str(hist[0].at("reason")).find("skipped: node1 lag") != std::string::npos);
  CHECK(str(hist[0].at("reason")).find("exceeds max_lag 1048576") != std::string::npos);
  // Nothing was lost for the rows node2 had; node1 catches up from node2.
  REQUIRE(pg.wait_for(2, streaming_sql("node1"), "1", 15s));
  REQUIRE(pg.wait_for(1, "SELECT count(*) FROM t", "3000", 10s));
}

TEST_CASE("pg ops: rejoin of a node that diverged beyond its WAL says so and leaves it as it was",
          "[pg_e2e][pg_ops]") {
  PgDrdFixture f;
  f.start();
  auto& pg = f.pg();
  pg.exec(0, "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)");
  REQUIRE(pg.wait_for(1, "SELECT count(*) FROM t", "1"));
  REQUIRE(f.wait_streaming_in_status("node1"));
  f.call("failover", {{"node", "node1"}});  // node0 stays up, fenced read-only
  REQUIRE(eventually([&] { return writable(pg, 1); }, 10s));
  // node0 goes on alone long enough that the WAL from before the fork is recycled.
  pg.exec(0, "ALTER SYSTEM SET wal_keep_size = 0");
  pg.exec(0, "SELECT pg_reload_conf()");
  for (int i = 0; i < 6; ++i) {
    pg.exec(0, "BEGIN READ WRITE; INSERT INTO t VALUES (" + std::to_string(100 + i) + "); COMMIT");
    pg.exec(0, "SELECT pg_switch_wal()");
    pg.exec(0, "CHECKPOINT");
  }

  auto r = f.drctl({"rejoin", "node0"});
  INFO(r.out << r.err << f.log());
  CHECK(r.exit_code != 0);
  CHECK(r.err.find("diverged from node1 too long ago") != std::string::npos);
  CHECK(r.err.find("pg_wal") != std::string::npos);
  CHECK(r.err.find("drctl rejoin node0 --reclone") != std::string::npos);
  CHECK(r.err.find("started again") != std::string::npos);
  // As it was: running, still a fenced (read-only) primary.
  REQUIRE(pg.running(0));
  CHECK_FALSE(writable(pg, 0));
  CHECK(str(f.node_status("node0").at("role")) == "fenced");

  // --reclone from here is the path the test above checks.
}
