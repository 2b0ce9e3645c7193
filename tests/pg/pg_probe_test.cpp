// PostgresNode::probe against real clusters: roles, LSNs, replicas, frozen and
// crashed servers, passwords.
#include <catch2/catch.hpp>

#include <chrono>
#include <thread>

#include "daemon/engines/postgres/postgres_node.hpp"
#include "tests/support/pg_cluster.hpp"
#include "tests/support/process.hpp"
#include "tests/support/temp_dir.hpp"

using namespace drd;
using namespace std::chrono_literals;
using drd::test::PgCluster;
using drd::test::PgClusterOptions;
using drd::test::eventually;

namespace {
double elapsed_ms(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

TEST_CASE("probe reports roles, LSNs and streaming replicas", "[pg][probe]") {
  PgCluster c(2);
  c.wait_streaming();
  RealProcessRunner runner;
  PostgresNode p(c.node_config(0), runner), s1(c.node_config(1), runner), s2(c.node_config(2), runner);

  auto rp = p.probe(2000ms, false);
  INFO(rp.error);
  REQUIRE(rp.ok);
  CHECK(rp.role == Role::primary);
  CHECK(rp.writable);
  CHECK(rp.timeline == std::optional<std::uint32_t>(1));
  REQUIRE(rp.current_lsn);
  CHECK(rp.position == rp.current_lsn);
  CHECK(rp.response_ms > 0);
  REQUIRE(rp.replicas.size() == 2);
  CHECK(rp.replicas[0].application_name == "node1");
  CHECK(rp.replicas[1].application_name == "node2");
  for (const auto& r : rp.replicas) {
    CHECK(r.state == "streaming");
    CHECK(r.sync_state == "async");
    CHECK(r.client_addr == "127.0.0.1");
    CHECK(r.sent_lsn > 0);
  }

  c.exec(0, "CREATE TABLE t(x int); INSERT INTO t SELECT generate_series(1, 10000)");
  auto rp2 = p.probe(2000ms, false);
  REQUIRE(rp2.ok);
  CHECK(*rp2.current_lsn > *rp.current_lsn);

  // Standbys catch up to the primary's position.
  REQUIRE(c.wait_for(1, "SELECT count(*) FROM t", "10000"));
  REQUIRE(c.wait_for(2, "SELECT count(*) FROM t", "10000"));
  for (auto* s : {&s1, &s2}) {
    ProbeResult rs;
    for (int i = 0; i < 100; ++i) {
      rs = s->probe(2000ms, false);
      REQUIRE(rs.ok);
      if (rs.replay_lsn && *rs.replay_lsn >= *rp2.current_lsn) break;
      std::this_thread::sleep_for(20ms);
    }
    CHECK(rs.role == Role::standby);
    CHECK_FALSE(rs.writable);
    CHECK(rs.timeline == std::optional<std::uint32_t>(1));
    REQUIRE(rs.receive_lsn);
    REQUIRE(rs.replay_lsn);
    CHECK(*rs.replay_lsn >= *rp2.current_lsn);
    CHECK(rs.position == rs.receive_lsn);
    CHECK_FALSE(rs.current_lsn);
    CHECK(rs.replay_delay_ms);
    CHECK(rs.replicas.empty());
  }

  // Synchronous standby names show up in sync_state.
  REQUIRE(p.set_synchronous_standby_names("node1").ok());
  bool sync_seen = false;
  for (int i = 0; i < 100 && !sync_seen; ++i) {
    auto r = p.probe(2000ms, false);
    REQUIRE(r.ok);
    for (const auto& rep : r.replicas)
      if (rep.application_name == "node1" && rep.sync_state == "sync") sync_seen = true;
    if (!sync_seen) std::this_thread::sleep_for(20ms);
  }
  CHECK(sync_seen);
  REQUIRE(p.set_synchronous_standby_names("").ok());
  CHECK(c.query(0, "SHOW synchronous_standby_names") == std::optional<std::string>(""));
}

TEST_CASE("probe of a SIGSTOPped server returns within its timeout, then recovers", "[pg][probe]") {
  PgCluster c(0);
  RealProcessRunner runner;
  PostgresNode reused(c.node_config(0), runner);
  REQUIRE(reused.probe(2000ms, false).ok);  // holds a session from now on

  c.sigstop(0);
  // On the established session (query phase).
  auto t0 = std::chrono::steady_clock::now();
  auto r = reused.probe(400ms, false);
  CHECK(elapsed_ms(t0) < 400 + 350);  // margin for a loaded 2-core machine
  CHECK_FALSE(r.ok);
  CHECK(r.error.find("timed out") != std::string::npos);
  // On a new connection (startup phase: the kernel accepts, the server never answers).
  PostgresNode fresh(c.node_config(0), runner);
  t0 = std::chrono::steady_clock::now();
  auto r2 = fresh.probe(400ms, false);
  CHECK(elapsed_ms(t0) < 400 + 350);  // margin for a loaded 2-core machine
  CHECK_FALSE(r2.ok);

  c.sigcont(0);
  auto r3 = reused.probe(3000ms, false);
  INFO(r3.error);
  CHECK(r3.ok);
  CHECK(r3.role == Role::primary);
  CHECK(fresh.probe(3000ms, false).ok);
}

TEST_CASE("probe after kill -9 fails fast, after a restart the session is remade", "[pg][probe]") {
  PgCluster c(0);
  RealProcessRunner runner;
  PostgresNode node(c.node_config(0), runner);
  REQUIRE(node.probe(2000ms, false).ok);
  c.kill9(0);
  auto t0 = std::chrono::steady_clock::now();
  auto r = node.probe(2000ms, false);
  CHECK(elapsed_ms(t0) < 500);
  CHECK_FALSE(r.ok);
  CHECK(r.error.find("node0") != std::string::npos);
  c.start(0);
  auto r2 = node.probe(5000ms, false);
  INFO(r2.error);
  CHECK(r2.ok);
}

TEST_CASE("passwords work from URL and password_file and never appear in errors", "[pg][secrets]") {
  PgCluster c(0);
  const std::string good = "Gh7!q'secret";
  c.exec(0, "CREATE ROLE drd_pw LOGIN SUPERUSER PASSWORD 'Gh7!q''secret'");
  RealProcessRunner runner;
  drd::test::TempDir dir("drd-pgpw");
  auto cfg = c.node_config(0);
  const std::string host = "@127.0.0.1:" + std::to_string(c.port(0)) + "/postgres";

  SECTION("wrong password in the URL") {
    cfg.pg_conninfo = cfg.url = "postgresql://drd_pw:WrongPassw0rd" + host;
    PostgresNode node(cfg, runner);
    auto r = node.probe(2000ms, false);
    REQUIRE_FALSE(r.ok);
    CHECK(r.error.find("password authentication failed") != std::string::npos);
    CHECK(r.error.find("WrongPassw0rd") == std::string::npos);
    auto f = node.fence(1000ms);  // no data_dir in this config -> error
    cfg.data_dir.reset();
    PostgresNode remote(cfg, runner);
    auto f2 = remote.fence(1000ms);
    REQUIRE_FALSE(f2.ok());
    CHECK(f2.error().message.find("WrongPassw0rd") == std::string::npos);
    auto p = remote.promote(1000ms);
    REQUIRE_FALSE(p.ok());
    CHECK(p.error().message.find("WrongPassw0rd") == std::string::npos);
    (void)f;
  }
  SECTION("right password in a percent-encoded URL") {
    cfg.pg_conninfo = cfg.url = "postgresql://drd_pw:Gh7%21q%27secret" + host;
    PostgresNode node(cfg, runner);
    auto r = node.probe(2000ms, false);
    INFO(r.error);
    CHECK(r.ok);
  }
  SECTION("password_file, right and wrong") {
    cfg.pg_conninfo = cfg.url = "postgresql://drd_pw" + host;
    cfg.password_file = dir / "pw";
    drd::test::write_file(*cfg.password_file, good + "\n");
    PostgresNode node(cfg, runner);
    auto r = node.probe(2000ms, false);
    INFO(r.error);
    CHECK(r.ok);
    drd::test::write_file(*cfg.password_file, "NotTheRightOne\n");
    PostgresNode bad(cfg, runner);
    auto r2 = bad.probe(2000ms, false);
    REQUIRE_FALSE(r2.ok);
    CHECK(r2.error.find("NotTheRightOne") == std::string::npos);
    cfg.password_file = dir / "missing";
    PostgresNode missing(cfg, runner);
    auto r3 = missing.probe(2000ms, false);
    REQUIRE_FALSE(r3.ok);
    CHECK(r3.error.find("password_file") != std::string::npos);
  }
}

TEST_CASE("a query that times out keeps its session, which the next query reuses", "[pg][probe][keep_session]") {
  PgCluster c(0);
  pg::PgConn conn({{"dbname", c.url(0)}}, {});
  auto a = conn.query("SELECT pg_backend_pid()", std::chrono::steady_clock::now() + 3000ms);
  REQUIRE(a);
  const std::string pid = *a->back().rows[0][0];
  // A slow answer: the deadline passes, the session stays (a server with every slot taken
  // would refuse a new one).
  auto slow = conn.query("SELECT pg_sleep(0.4)", std::chrono::steady_clock::now() + 100ms);
  REQUIRE_FALSE(slow);
  CHECK(slow.error().code == Errc::timeout);
  CHECK(conn.connected());
  CHECK(conn.pending());
  auto b = conn.query("SELECT pg_backend_pid()", std::chrono::steady_clock::now() + 3000ms);
  INFO((b ? std::string() : b.error().message));
  REQUIRE(b);
  CHECK(*b->back().rows[0][0] == pid);
  CHECK_FALSE(conn.pending());
}

TEST_CASE("connection refusals carry the server's SQLSTATE: too many clients is saturated, not down", "[pg][probe][saturated]") {
  PgCluster c(PgClusterOptions{0, {{"max_connections", "5"}, {"superuser_reserved_connections", "0"}}, true, {}, {}});
  RealProcessRunner runner;
  PostgresNode node(c.node_config(0), runner);
  std::vector<std::unique_ptr<pg::PgConn>> held;
  for (int i = 0; i < 20; ++i) {
    auto h = std::make_unique<pg::PgConn>(pg::ConnParams{{"dbname", c.url(0)}}, std::vector<std::string>{});
    if (!h->connect(std::chrono::steady_clock::now() + 3000ms)) {
      CHECK(h->sqlstate() == "53300");
      break;
    }
    held.push_back(std::move(h));
  }
  auto r = node.probe(2000ms, false);
  INFO(r.error);
  CHECK_FALSE(r.ok);
  CHECK(r.server == ServerState::saturated);
  CHECK(r.error.find("too many clients") != std::string::npos);
  CHECK(r.error.find("53300:") == std::string::npos);  // the text as libpq prints it by default
  CHECK_FALSE(r.definitely_down);
  // One slot free: drd's session, then the slots fill again: still probed on its own session.
  held.pop_back();
  REQUIRE(eventually([&] { return node.probe(2000ms, false).ok; }, 10s));
  auto h = std::make_unique<pg::PgConn>(pg::ConnParams{{"dbname", c.url(0)}}, std::vector<std::string>{});
  CHECK_FALSE(h->connect(std::chrono::steady_clock::now() + 3000ms));
  // The admission check (at most once a second) finds no slot: up and saturated, on its own session.
  ProbeResult r2;
  CHECK(eventually([&] { r2 = node.probe(2000ms, false); return r2.server == ServerState::saturated; }, 10s));
  INFO(r2.error);
  CHECK(r2.ok);
}
