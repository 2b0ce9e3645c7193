// "Never destroy a copy", PostgreSQL half: which servers belong to the cluster (system
// identifier) and which primary drd keeps when it starts without its state while an old
// primary is back on an older timeline. Real PostgreSQL 15, a real drd process.
#include <catch2/catch.hpp>

#include <pwd.h>
#include <unistd.h>

#include <filesystem>
#include <thread>

#include "tests/pg_e2e/pg_drd_fixture.hpp"

using namespace drd::test;
using namespace std::chrono_literals;
namespace json = boost::json;
namespace fs = std::filesystem;

namespace {

std::string str(const json::value& v) { return v.is_string() ? std::string(v.as_string()) : std::string(); }

bool in_recovery(PgCluster& pg, int i) { return pg.query(i, "SELECT pg_is_in_recovery()") == std::optional<std::string>("t"); }

// Whether a new session on node i may write (a fenced server refuses).
bool write_refused(PgCluster& pg, int i) {
  try {
    pg.exec(i, "CREATE TEMP TABLE fence_probe (x int)");
    return false;
  } catch (const std::exception&) {
    return true;
  }
}

std::string streaming_sql(const std::string& node) {
  return "SELECT count(*) FROM pg_stat_replication WHERE application_name = '" + node + "' AND state = 'streaming'";
}

// The port node i's WAL receiver streams from ("" when none).
std::string upstream_port(PgCluster& pg, int i) {
  return pg.query(i, "SELECT coalesce((SELECT sender_port::text FROM pg_stat_wal_receiver WHERE status = 'streaming'), '')")
      .value_or("?");
}

void chown_postgres(const fs::path& p) {
  struct passwd* pw = ::getpwnam(PgCluster::kOsUser);
  REQUIRE(pw);
  REQUIRE(::chown(p.c_str(), pw->pw_uid, pw->pw_gid) == 0);
}

void stop_drd(PgDrdFixture& f) {
  // An orderly stop (SIGTERM), as an operator's systemctl stop.
  REQUIRE(f.process());
  f.process()->signal(15);
  if (!f.process()->wait(std::chrono::seconds(15))) f.kill_drd();
}

}  // namespace

TEST_CASE("pg: drd started without its state after a failover keeps the newer timeline's primary and fences the old one",
          "[pg_e2e][pg_identity]") {
  PgDrdFixture f;
  f.start();
  auto& pg = f.pg();
  pg.exec(0, "CREATE TABLE t (id int PRIMARY KEY, at text)");
  for (int id = 1; id <= 50; ++id) pg.exec(0, "INSERT INTO t VALUES (" + std::to_string(id) + ", 'node0')");
  REQUIRE(pg.wait_for(1, "SELECT count(*) FROM t", "50"));
  REQUIRE(pg.wait_for(2, "SELECT count(*) FROM t", "50"));
  REQUIRE(f.wait_streaming_in_status("node1"));
  REQUIRE(f.wait_streaming_in_status("node2"));

  // 1. Automatic failover node0 -> node1 (kill -9), node2 follows node1 on timeline 2.
  pg.kill9(0);
  REQUIRE(f.wait_primary("node1", 15s));
  REQUIRE(eventually([&] { return !in_recovery(pg, 1) && !write_refused(pg, 1); }, 10s));
  REQUIRE(pg.wait_for(1, streaming_sql("node2"), "1", 15s));

  // 2. More commits on the new primary, each acknowledged on its own.
  for (int id = 1001; id <= 1300; ++id) pg.exec(1, "INSERT INTO t VALUES (" + std::to_string(id) + ", 'node1')");
  const std::string committed = "300";
  REQUIRE(pg.query(1, "SELECT count(*) FROM t WHERE id > 1000") == std::optional<std::string>(committed));
  REQUIRE(pg.wait_for(2, "SELECT count(*) FROM t WHERE id > 1000", committed, 15s));
  const std::string node1_timeline = pg.query(1, "SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)").value_or("?");
  CHECK(node1_timeline == "00000002");

  // 3. drd stops, its state folder is lost, the old primary comes back as a primary on
  //    timeline 1 and takes a write of its own before drd is back.
  stop_drd(f);
  fs::remove_all(f.dir() / "state");
  REQUIRE_FALSE(fs::exists(f.dir() / "state"));
  pg.start(0);
  REQUIRE_FALSE(in_recovery(pg, 0));
  pg.exec(0, "INSERT INTO t VALUES (9999, 'node0 alone')");
  CHECK(pg.query(0, "SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)") == std::optional<std::string>("00000001"));

  // 4. drd starts with the unchanged configuration (node0 is `type: primary`).
  f.start();
  auto st = f.status();
  INFO(f.log());
  CHECK(str(st.at("primary")) == "node1");
  // node1 stays the writable primary with every row it acknowledged.
  CHECK_FALSE(in_recovery(pg, 1));
  CHECK_FALSE(write_refused(pg, 1));
  CHECK(pg.query(1, "SELECT count(*) FROM t WHERE id > 1000") == std::optional<std::string>(committed));
  CHECK(pg.query(1, "SELECT count(*) FROM t WHERE id <= 50") == std::optional<std::string>("50"));
  // node0 is fenced (read-only), not rewound: its own write is still there.
  REQUIRE(eventually([&] { return write_refused(pg, 0); }, 10s));
  CHECK_FALSE(in_recovery(pg, 0));
  CHECK(pg.query(0, "SELECT count(*) FROM t WHERE id = 9999") == std::optional<std::string>("1"));
  REQUIRE(eventually([&] { return str(f.node_status("node0").at("role")) == "fenced"; }, 5s));
  // node2 still streams from node1 and is never pointed at node0, also after some ticks.
  for (int round = 0; round < 3; ++round) {
    CHECK(upstream_port(pg, 2) == std::to_string(pg.port(1)));
    std::this_thread::sleep_for(1500ms);
  }
  CHECK(pg.wait_for(1, streaming_sql("node2"), "1", 10s));
  CHECK(pg.query(2, "SELECT count(*) FROM t WHERE id = 9999") == std::optional<std::string>("0"));
  CHECK(f.wait_streaming_in_status("node2"));
  // The log says why, with both timelines.
  const std::string log = f.log();
  CHECK(log.find("several servers are primaries") != std::string::npos);
  CHECK(log.find("node1 continues timeline 1") != std::string::npos);
  CHECK(log.find("node0 (timeline 1") != std::string::npos);
  CHECK(log.find("node1 (timeline 2") != std::string::npos);

  // 5. One more commit through drd's primary reaches node2: the cluster works on node1.
  pg.exec(1, "INSERT INTO t VALUES (2001, 'after restart')");
  CHECK(pg.wait_for(2, "SELECT count(*) FROM t WHERE id = 2001", "1", 10s));
}

TEST_CASE("pg: a standby replaced by a fresh initdb cluster is not a member and never a failover target",
          "[pg_e2e][pg_identity]") {
  PgDrdFixture f;
  f.start();
  auto& pg = f.pg();
  REQUIRE(f.wait_streaming_in_status("node1"));
  REQUIRE(f.wait_streaming_in_status("node2"));
  pg.exec(0, "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)");
  REQUIRE(pg.wait_for(1, "SELECT count(*) FROM t", "1"));
  const std::string ours = pg.query(0, "SELECT system_identifier::text FROM pg_control_system()").value_or("?");

  // Replace node2 by another cluster on the same port: its old folder is kept aside.
  pg.stop(2);
  const fs::path data = pg.data_dir(2);
  const fs::path aside = data.string() + ".replaced";
  fs::rename(data, aside);
  auto init = pg.run_pg_tool({"initdb", "-D", data.string(), "-A", "trust", "-U", "postgres", "--no-sync", "--wal-segsize=1"});
  INFO(init.output);
  REQUIRE(init.exit_code == 0);
  for (const char* file : {"postgresql.conf", "pg_hba.conf"}) {  // same port, socket folder, access
    fs::copy_file(aside / file, data / file, fs::copy_options::overwrite_existing);
    chown_postgres(data / file);
  }
  pg.start(2);
  REQUIRE_FALSE(in_recovery(pg, 2));
  const std::string theirs = pg.query(2, "SELECT system_identifier::text FROM pg_control_system()").value_or("?");
  REQUIRE(theirs != ours);
  // More WAL than any member has, so that a failover that looked only at positions would take it.
  for (int k = 0; k < 4; ++k) pg.exec(2, "CREATE TABLE IF NOT EXISTS x (i int); INSERT INTO x VALUES (1); SELECT pg_switch_wal()");

  // Status says it is not a member, and why (JSON and text).
  REQUIRE(eventually([&] { return str(f.node_status("node2").at("role")) == "not a member"; }, 15s));
  auto n2 = f.node_status("node2");
  INFO(json::serialize(n2) << "\n" << f.log());
  CHECK(n2.at("member") == json::value(false));
  CHECK_FALSE(n2.at("healthy").as_bool());
  CHECK(str(n2.at("replication")).find("system identifier " + theirs + " differs from the cluster's " + ours) !=
        std::string::npos);
  CHECK(str(n2.at("replication")).find("not a candidate") != std::string::npos);
  auto text = f.drctl({"status"});
  CHECK(text.out.find("not a member") != std::string::npos);
  CHECK(text.out.find("system identifier " + theirs) != std::string::npos);
  // drd leaves it alone: not fenced, not turned into a standby.
  std::this_thread::sleep_for(2s);
  CHECK_FALSE(write_refused(pg, 2));
  CHECK_FALSE(in_recovery(pg, 2));
  CHECK_FALSE(f.node_status("node2").at("fenced").as_bool());

  // An operator cannot promote it either.
  auto manual = f.drctl({"failover", "node2"});
  CHECK(manual.exit_code != 0);
  CHECK((manual.out + manual.err).find("not a member") != std::string::npos);
  CHECK(str(f.status().at("primary")) == "node0");
  // Nor rewind it (pg_rewind would stop it first): only --reclone, which keeps its folder aside.
  auto rejoin = f.drctl({"rejoin", "node2"});
  CHECK(rejoin.exit_code != 0);
  CHECK((rejoin.out + rejoin.err).find("--reclone") != std::string::npos);
  CHECK(pg.running(2));
  CHECK_FALSE(in_recovery(pg, 2));

  // The primary dies: node1 is promoted, never node2.
  pg.kill9(0);
  REQUIRE(f.wait_primary("node1", 15s));
  REQUIRE(eventually([&] { return !in_recovery(pg, 1) && !write_refused(pg, 1); }, 10s));
  CHECK(pg.query(1, "SELECT count(*) FROM t") == std::optional<std::string>("1"));
  json::array hist;
  REQUIRE(eventually([&] { return !(hist = f.call("history").as_array()).empty(); }, 15s));
  CHECK(str(hist[0].at("to")) == "node1");
  // node2 is still its own cluster's primary, untouched after the failover too.
  std::this_thread::sleep_for(2s);
  CHECK_FALSE(in_recovery(pg, 2));
  CHECK_FALSE(write_refused(pg, 2));
  CHECK(pg.query(2, "SELECT count(*) FROM x") == std::optional<std::string>("4"));
  CHECK(str(f.node_status("node2").at("role")) == "not a member");
}

TEST_CASE("pg: two primaries on diverged histories at a start without state - drd elects neither and waits for an operator",
          "[pg_e2e][pg_identity]") {
  PgDrdFixture f;
  f.start();
  auto& pg = f.pg();
  pg.exec(0, "CREATE TABLE t (id int PRIMARY KEY, at text); INSERT INTO t VALUES (1, 'node0')");
  REQUIRE(pg.wait_for(1, "SELECT count(*) FROM t", "1"));
  REQUIRE(pg.wait_for(2, "SELECT count(*) FROM t", "1"));
  stop_drd(f);
  fs::remove_all(f.dir() / "state");

  // Two separate promotions from different points of timeline 1, both to "timeline 2":
  // node1 first, then node0 commits more (only node2 gets it), then node2.
  pg.exec(1, "SELECT pg_promote()");
  REQUIRE(eventually([&] { return !in_recovery(pg, 1); }, 10s));
  pg.exec(1, "INSERT INTO t VALUES (100, 'node1 alone')");
  pg.exec(0, "INSERT INTO t VALUES (2, 'node0')");
  REQUIRE(pg.wait_for(2, "SELECT count(*) FROM t WHERE id = 2", "1"));
  pg.exec(2, "SELECT pg_promote()");
  REQUIRE(eventually([&] { return !in_recovery(pg, 2); }, 10s));
  pg.exec(2, "INSERT INTO t VALUES (200, 'node2 alone')");
  pg.stop(0);

  f.start_unsettled();
  std::string reason;
  REQUIRE(eventually(
      [&] {
        reason = str(f.status().at("failover_reason"));
        return reason.find("waiting for an operator") != std::string::npos;
      },
      15s));
  INFO(reason << "\n" << f.log());
  auto st = f.status();
  CHECK(str(st.at("primary")).empty());
  CHECK(str(st.at("failover_state")) == "disabled");
  CHECK(reason.find("node1 (timeline 2") != std::string::npos);
  CHECK(reason.find("node2 (timeline 2") != std::string::npos);
  CHECK(reason.find("diverged") != std::string::npos);
  CHECK(f.log().find("start_hold") != std::string::npos);
  // Neither is fenced nor re-pointed while drd waits, and neither can be promoted over the other.
  std::this_thread::sleep_for(2s);
  CHECK_FALSE(write_refused(pg, 1));
  CHECK_FALSE(write_refused(pg, 2));
  CHECK_FALSE(in_recovery(pg, 1));
  CHECK_FALSE(in_recovery(pg, 2));
  auto manual = f.drctl({"failover", "node1"});
  CHECK(manual.exit_code != 0);
  CHECK((manual.out + manual.err).find("waits for an operator") != std::string::npos);
  auto text = f.drctl({"status"});
  CHECK(text.out.find("waiting for an operator") != std::string::npos);

  // The operator keeps node1 and stops node2: drd carries on by itself.
  pg.stop(2);
  REQUIRE(f.wait_primary("node1", 20s));
  CHECK_FALSE(write_refused(pg, 1));
  CHECK(pg.query(1, "SELECT count(*) FROM t WHERE id = 100") == std::optional<std::string>("1"));
  CHECK(f.log().find("node1 is the only primary among the servers") != std::string::npos);
  CHECK(pg.query(1, "SELECT count(*) FROM t WHERE id = 2") == std::optional<std::string>("0"));  // node1's own history
}
