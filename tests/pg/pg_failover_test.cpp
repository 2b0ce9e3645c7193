// PostgresNode's actions against real clusters: promote, fence, follow, rejoin.
#include <catch2/catch.hpp>
#include <libpq-fe.h>

#include <algorithm>
#include <chrono>
#include <thread>

#include "daemon/engines/postgres/postgres_local_kill.hpp"
#include "daemon/engines/postgres/postgres_node.hpp"
#include "tests/support/pg_cluster.hpp"
#include "tests/support/process.hpp"

using namespace drd;
using namespace std::chrono_literals;
using drd::test::PgCluster;

TEST_CASE("promote a standby after the primary died: it becomes writable", "[pg][promote]") {
  PgCluster c(1);
  c.wait_streaming();
  c.exec(0, "CREATE TABLE t(x int); INSERT INTO t VALUES (1)");
  REQUIRE(c.wait_for(1, "SELECT count(*) FROM t", "1"));
  c.kill9(0);
  RealProcessRunner runner;
  PostgresNode s1(c.node_config(1), runner);
  auto t0 = std::chrono::steady_clock::now();
  auto st = s1.promote(10s);
  INFO((st.ok() ? "" : st.error().message));
  REQUIRE(st.ok());
  CHECK(std::chrono::steady_clock::now() - t0 < 5s);
  auto r = s1.probe(2000ms, false);
  REQUIRE(r.ok);
  CHECK(r.role == Role::primary);
  CHECK(r.writable);
  CHECK(r.timeline == std::optional<std::uint32_t>(2));
  c.exec(1, "INSERT INTO t VALUES (2)");
  CHECK(c.query(1, "SELECT count(*) FROM t") == std::optional<std::string>("2"));
  // Promoting a primary again is a no-op.
  CHECK(s1.promote(2s).ok());
}

TEST_CASE("fence makes a primary refuse writes at once, unfence undoes it", "[pg][fence]") {
  PgCluster c(0);
  c.exec(0, "CREATE TABLE t(x int)");
  RealProcessRunner runner;
  PostgresNode p(c.node_config(0), runner);

  // A client inside an open read-write transaction before the fence.
  std::string conninfo = "host=127.0.0.1 port=" + std::to_string(c.port(0)) + " user=postgres dbname=postgres";
  PGconn* client = PQconnectdb(conninfo.c_str());
  REQUIRE(PQstatus(client) == CONNECTION_OK);
  PQclear(PQexec(client, "BEGIN; INSERT INTO t VALUES (0)"));

  auto f = p.fence(5s);
  INFO((f.ok() ? "" : f.error().message));
  REQUIRE(f.ok());
  CHECK(p.last_action().find("read-only") != std::string::npos);
  // The old session was terminated: its transaction cannot commit.
  PGresult* res = PQexec(client, "INSERT INTO t VALUES (1); COMMIT");
  CHECK(PQresultStatus(res) != PGRES_COMMAND_OK);
  PQclear(res);
  PQfinish(client);
  // A new session cannot write.
  CHECK_THROWS_WITH(c.exec(0, "INSERT INTO t VALUES (2)"),
                    Catch::Contains("read-only transaction"));
  auto r = p.probe(2000ms, false);
  REQUIRE(r.ok);
  CHECK(r.role == Role::primary);
  CHECK_FALSE(r.writable);

  auto u = p.unfence(5s);
  INFO((u.ok() ? "" : u.error().message));
  REQUIRE(u.ok());
  c.exec(0, "INSERT INTO t VALUES (3)");
  CHECK(c.query(0, "SELECT count(*) FROM t") == std::optional<std::string>("1"));
  CHECK(p.probe(2000ms, false).writable);
}

TEST_CASE("fence of a server drd cannot reach stops it locally with pg_ctl", "[pg][fence]") {
  // drd's link to the server is broken (a wrong port stands in for a
  // partition) but the data folder is local: the fallback stops it.
  PgCluster c(0);
  RealProcessRunner runner;
  auto cfg = c.node_config(0);
  cfg.pg_conninfo = cfg.url = "postgresql://postgres@127.0.0.1:" +
                              std::to_string(drd::test::free_loopback_port()) + "/postgres";
  PostgresNode p(cfg, runner);
  auto t0 = std::chrono::steady_clock::now();
  auto f = p.fence(10s);
  INFO((f.ok() ? "" : f.error().message));
  REQUIRE(f.ok());
  CHECK(std::chrono::steady_clock::now() - t0 < 8s);
  CHECK(p.last_action() == "server stopped at once with pg_ctl (-m immediate): it did not answer SQL");
  CHECK_FALSE(c.running(0));
  // Fencing it again: already stopped.
  REQUIRE(p.fence(5s).ok());
  CHECK(p.last_action() == "server already stopped");
}

namespace {

// Waits (bounded) for the result of a query sent with PQsendQuery; nullopt if none came in time.
// Returns the status of the last result, or PGRES_FATAL_ERROR once the connection is lost.
std::optional<ExecStatusType> await_result(PGconn* c, std::chrono::milliseconds timeout) {
  const auto until = std::chrono::steady_clock::now() + timeout;
  while (PQisBusy(c)) {
    if (std::chrono::steady_clock::now() >= until) return std::nullopt;
    if (!PQconsumeInput(c)) return PGRES_FATAL_ERROR;
    if (PQisBusy(c)) std::this_thread::sleep_for(5ms);
  }
  ExecStatusType last = PGRES_FATAL_ERROR;
  bool any = false;
  while (PGresult* r = PQgetResult(c)) {
    last = PQresultStatus(r);
    any = true;
    PQclear(r);
  }
  return any ? last : PGRES_FATAL_ERROR;
}

}  // namespace

TEST_CASE("fence in synchronous mode: a retry blocked behind a commit waiting for the standby is not acknowledged",
          "[pg][fence][sync]") {
  // The chaos suite's lost acknowledged commit, deterministically: a COMMIT waits for the
  // synchronous standby (frozen here), the client retries the same key with ON CONFLICT DO
  // NOTHING and blocks on the first transaction's row lock, then drd fences the primary.
  // Ending sessions with pg_terminate_backend releases the waiting COMMIT ("already committed
  // locally"), the retry then sees the row, writes nothing, waits for no WAL and reports
  // success: an acknowledgement of a row only the fenced server has.
  PgCluster c(drd::test::PgClusterOptions{1, {{"synchronous_standby_names", "node1"}}, true, {}, {}, {}});
  c.exec(0, "CREATE TABLE t(id int PRIMARY KEY)");
  c.wait_streaming();
  REQUIRE(c.wait_for(0, "SELECT sync_state FROM pg_stat_replication", "sync"));
  c.sigstop(1);  // the standby acknowledges nothing from now on

  // Idle sessions listed between the two in pg_stat_activity (the order pg_terminate_backend
  // goes through them): the retry is then ended last, after the waiting COMMIT has finished.
  const std::string conninfo = c.socket_conninfo(0);
  PGconn* first = PQconnectdb(conninfo.c_str());
  REQUIRE(PQstatus(first) == CONNECTION_OK);
  std::vector<PGconn*> idle;
  for (int i = 0; i < 60; ++i) {
    idle.push_back(PQconnectdb(conninfo.c_str()));
    REQUIRE(PQstatus(idle.back()) == CONNECTION_OK);
  }
  PGconn* retry = PQconnectdb(conninfo.c_str());
  REQUIRE(PQstatus(retry) == CONNECTION_OK);
  {
    // Checked, not assumed: the first session is listed before the retry.
    auto before = c.query(0, "SELECT (SELECT count(*) FROM (SELECT pid, row_number() OVER () AS n"
                             " FROM pg_stat_activity WHERE backend_type = 'client backend') a, (SELECT pid, row_number()"
                             " OVER () AS n FROM pg_stat_activity WHERE backend_type = 'client backend') b WHERE a.pid = " +
                                 std::to_string(PQbackendPID(first)) + " AND b.pid = " +
                                 std::to_string(PQbackendPID(retry)) + " AND a.n < b.n)");
    REQUIRE(before == std::optional<std::string>("1"));
  }
  REQUIRE(PQsendQuery(first, "INSERT INTO t VALUES (1)"));
  REQUIRE(c.wait_for(0, "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'", "1"));
  REQUIRE(PQsendQuery(retry, "INSERT INTO t VALUES (1) ON CONFLICT DO NOTHING"));
  REQUIRE(c.wait_for(0, "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'", "1"));

  RealProcessRunner runner;
  PostgresNode p(c.node_config(0), runner);
  auto f = p.fence(10s);
  INFO((f.ok() ? "" : f.error().message));
  REQUIRE(f.ok());
  INFO("fence: " << p.last_action());

  // The retry must not succeed: its session is gone (or it failed), never "INSERT 0 0".
  auto r = await_result(retry, 10s);
  REQUIRE(r.has_value());
  CHECK(*r != PGRES_COMMAND_OK);
  auto r1 = await_result(first, 10s);
  CHECK((r1.has_value() && *r1 != PGRES_COMMAND_OK));
  PQfinish(first);
  PQfinish(retry);
  for (PGconn* i : idle) PQfinish(i);
  // Nobody sees the row the standby never got: no session is admitted at all.
  CHECK(c.query(0, "SELECT count(*) FROM t WHERE id = 1") == std::nullopt);

  // The server was stopped at once, and comes back read-only if anyone starts it.
  CHECK(p.last_action().find("immediate") != std::string::npos);
  CHECK_FALSE(c.running(0));
  c.sigcont(1);
  c.start(0);
  CHECK(c.query(0, "SHOW default_transaction_read_only") == std::optional<std::string>("on"));
}

TEST_CASE("the switchover's fence keeps a synchronous primary running, read-only", "[pg][fence][sync]") {
  PgCluster c(drd::test::PgClusterOptions{1, {{"synchronous_standby_names", "node1"}}, true, {}, {}, {}});
  c.wait_streaming();
  RealProcessRunner runner;
  PostgresNode p(c.node_config(0), runner);
  auto f = p.fence_keep_running(5s);
  INFO((f.ok() ? "" : f.error().message));
  REQUIRE(f.ok());
  CHECK(p.last_action().find("read-only") != std::string::npos);
  CHECK(c.running(0));
  CHECK(c.query(0, "SELECT pg_current_wal_flush_lsn() IS NOT NULL") == std::optional<std::string>("t"));
}

TEST_CASE("follow: a standby re-points to the promoted one and streams from it", "[pg][follow]") {
  PgCluster c(2);
  c.wait_streaming();
  c.exec(0, "CREATE TABLE t(x int); INSERT INTO t VALUES (1)");
  REQUIRE(c.wait_for(2, "SELECT count(*) FROM t", "1"));
  c.kill9(0);
  RealProcessRunner runner;
  PostgresNode s1(c.node_config(1), runner), s2(c.node_config(2), runner);
  REQUIRE(s1.promote(10s).ok());

  auto f = s2.follow(c.node_config(1), 15s);
  INFO((f.ok() ? "" : f.error().message));
  REQUIRE(f.ok());
  c.exec(1, "INSERT INTO t VALUES (2)");
  CHECK(c.wait_for(2, "SELECT count(*) FROM t", "2"));
  auto r = s1.probe(2000ms, false);
  REQUIRE(r.ok);
  REQUIRE(r.replicas.size() == 1);
  CHECK(r.replicas[0].application_name == "node2");
  CHECK(r.replicas[0].state == "streaming");
  auto r2 = s2.probe(2000ms, false);
  REQUIRE(r2.ok);
  CHECK(r2.timeline == std::optional<std::uint32_t>(2));

  // A primary refuses to follow.
  auto bad = s1.follow(c.node_config(2), 2s);
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().code == Errc::refused);
  CHECK(bad.error().hint.find("rejoin") != std::string::npos);
}

TEST_CASE("rejoin: the crashed old primary is rewound and streams, reclone works too", "[pg][rewind]") {
  PgCluster c(1);
  c.wait_streaming();
  c.exec(0, "CREATE TABLE t(x int); INSERT INTO t VALUES (1)");
  REQUIRE(c.wait_for(1, "SELECT count(*) FROM t", "1"));
  c.kill9(0);  // crashed: not shut down cleanly
  RealProcessRunner runner;
  PostgresNode old_primary(c.node_config(0), runner), s1(c.node_config(1), runner);
  REQUIRE(s1.promote(10s).ok());
  c.exec(1, "INSERT INTO t VALUES (2)");
  // The old primary diverges: it comes back and writes on the old timeline.
  c.start(0);
  c.exec(0, "INSERT INTO t SELECT generate_series(100, 1000)");
  REQUIRE(old_primary.fence(5s).ok());

  auto rj = old_primary.rejoin_with_rewind(c.node_config(1), 60s);
  INFO((rj.ok() ? "" : rj.error().message + "\n" + old_primary.last_tool_output()));
  REQUIRE(rj.ok());
  auto r = old_primary.probe(2000ms, false);
  REQUIRE(r.ok);
  CHECK(r.role == Role::standby);
  CHECK(r.timeline == std::optional<std::uint32_t>(2));
  // Its own port survived (pg_rewind copied node1's postgresql.conf).
  CHECK(c.query(0, "SHOW port") == std::optional<std::string>(std::to_string(c.port(0))));
  c.exec(1, "INSERT INTO t VALUES (3)");
  CHECK(c.wait_for(0, "SELECT string_agg(x::text, ',' ORDER BY x) FROM t", "1,2,3"));

  auto rc = old_primary.reclone(c.node_config(1), 60s);
  INFO((rc.ok() ? "" : rc.error().message + "\n" + old_primary.last_tool_output()));
  REQUIRE(rc.ok());
  c.exec(1, "INSERT INTO t VALUES (4)");
  CHECK(c.wait_for(0, "SELECT count(*) FROM t", "4"));
  CHECK(old_primary.probe(2000ms, false).role == Role::standby);
}

TEST_CASE("a crashed server is definitely down on the first probe, a stopped one is not", "[pg][local]") {
  PgCluster c(0);
  RealProcessRunner runner;
  PostgresNode p(c.node_config(0), runner);
  REQUIRE(p.probe(2000ms, false).ok);
  c.kill9(0);  // postmaster.pid stays behind, naming a dead pid
  auto r = p.probe(500ms, false);
  INFO(r.error);
  CHECK_FALSE(r.ok);
  CHECK(r.definitely_down);
  CHECK_THAT(r.error, Catch::Contains("crashed"));
  CHECK(p.local_state(std::chrono::steady_clock::now() + 1s) == pg::PostmasterState::gone);

  c.start(0);
  REQUIRE(p.probe(2000ms, false).ok);
  CHECK(p.local_state(std::chrono::steady_clock::now() + 1s) == pg::PostmasterState::running);
  c.stop(0);  // a clean stop (an operator's restart, say) is not proof of anything
  r = p.probe(500ms, false);
  CHECK_FALSE(r.ok);
  CHECK_FALSE(r.definitely_down);
  CHECK(p.local_state(std::chrono::steady_clock::now() + 1s) == pg::PostmasterState::no_pid_file);
}

TEST_CASE("kill_local_server stops a frozen server hard: every process gone, connections refused at once",
          "[pg][local][fence]") {
  // The hard fence a failover applies to an old primary that does not answer
  // (postgres_cluster_promote.cpp: freeze before the promotion, kill after it).
  PgCluster c(0);
  RealProcessRunner runner;
  PostgresNode p(c.node_config(0), runner);
  REQUIRE(p.probe(2000ms, false).ok);
  auto pid = c.postmaster_pid(0);
  REQUIRE(pid);
  auto tree = pg::read_process_tree(*pid);
  REQUIRE(tree);
  REQUIRE(tree->size() > 3);  // checkpointer, walwriter, our session's backend, ...
  c.sigstop(0);
  auto hung = p.probe(300ms, false);
  CHECK_FALSE(hung.ok);
  CHECK_FALSE(hung.definitely_down);  // frozen is not proof of down: the threshold decides

  const auto data_dir = *c.node_config(0).data_dir;
  auto k = pg::kill_local_server(data_dir);
  REQUIRE(k.ok());
  CHECK(k->local);
  CHECK(k->pid == *pid);
  CHECK(k->killed == static_cast<int>(k->tree.size()));
  for (pid_t x : *tree) CHECK(std::find(k->tree.begin(), k->tree.end(), x) != k->tree.end());
  CHECK(test::eventually([&] { return std::all_of(tree->begin(), tree->end(), [](pid_t x) { return pg::process_dead(x); }); },
                   1s));
  CHECK_FALSE(c.running(0));
  // A client now gets "connection refused" at once instead of a 2 s connect_timeout.
  auto t0 = std::chrono::steady_clock::now();
  PGconn* conn = PQconnectdb(("host=127.0.0.1 port=" + std::to_string(c.port(0)) +
                              " user=postgres dbname=postgres connect_timeout=5").c_str());
  CHECK(PQstatus(conn) == CONNECTION_BAD);
  CHECK(std::string(PQerrorMessage(conn)).find("Connection refused") != std::string::npos);
  PQfinish(conn);
  CHECK(std::chrono::steady_clock::now() - t0 < 500ms);
  // Again: the stale postmaster.pid names a dead process, so nothing is touched.
  auto again = pg::kill_local_server(data_dir);
  REQUIRE(again.ok());
  CHECK_FALSE(again->local);
  CHECK(again->killed == 0);
}
