// PostgresNode's server-file actions against a scripted runner: which commands
// run, as whom, with what, and how their failures are reported. The node's
// URL points at a closed loopback port, so every SQL step fails at once.
#include <catch2/catch.hpp>

#include "daemon/engines/postgres_node.hpp"
#include "tests/support/pg_cluster.hpp"
#include "tests/support/recording_runner.hpp"

using namespace drd;
using namespace std::chrono_literals;
using drd::test::RecordingRunner;

namespace {
NodeConfig unreachable(bool local, const std::string& password = "") {
  NodeConfig c;
  c.key = c.name = "pgx";
  c.engine = Engine::postgresql;
  const std::string auth = password.empty() ? "postgres" : "postgres:" + password;
  c.pg_conninfo = c.url = "postgresql://" + auth + "@127.0.0.1:" +
                          std::to_string(drd::test::free_loopback_port()) + "/postgres";
  if (local) {
    c.data_dir = "/srv/pg/data";
    c.bin_dir = "/opt/pg/bin";
    c.os_user = "postgres";
  }
  return c;
}
NodeConfig the_primary(const std::string& password = "") {
  NodeConfig p;
  p.key = p.name = "newprimary";
  p.engine = Engine::postgresql;
  p.pg_conninfo = p.url = "postgresql://postgres" + (password.empty() ? "" : ":" + password) +
                          "@127.0.0.1:" +
                          std::to_string(drd::test::free_loopback_port()) + "/postgres";
  return p;
}
}  // namespace

TEST_CASE("probe of a closed port fails fast without the password", "[pg][probe]") {
  RecordingRunner runner;
  PostgresNode node(unreachable(false, "Pa55word!"), runner);
  auto r = node.probe(1000ms, false);
  CHECK_FALSE(r.ok);
  CHECK(r.response_ms < 500);
  CHECK(r.error.find("pgx") != std::string::npos);
  CHECK(r.error.find("Pa55word!") == std::string::npos);
  CHECK(runner.calls().empty());
}

TEST_CASE("fence falls back to pg_ctl stop when the server does not answer", "[pg][fence]") {
  RecordingRunner runner;
  runner.on("pg_ctl status", 0, "pg_ctl: server is running (PID: 4242)\n");
  PostgresNode node(unreachable(true), runner);
  auto s = node.fence(2000ms);
  REQUIRE(s.ok());
  CHECK(node.last_action().find("pg_ctl") != std::string::npos);
  auto* stop = runner.find("pg_ctl stop");
  REQUIRE(stop);
  CHECK(stop->argv[0] == "/opt/pg/bin/pg_ctl");
  CHECK(stop->user == std::optional<std::string>("postgres"));
  CHECK(RecordingRunner::joined(*stop).find("-D /srv/pg/data -m fast") != std::string::npos);
  CHECK(runner.find("immediate") == nullptr);
}

TEST_CASE("fence escalates to immediate, then SIGKILL, for a frozen server", "[pg][fence]") {
  RecordingRunner runner;
  runner.on("pg_ctl status", 0, "running", 1)   // before stopping
      .on("pg_ctl status", 3, "no server running");  // after the kill
  runner.on_timeout("-m fast").on_timeout("-m immediate");
  runner.on("postmaster.pid", 0, "4242\n");
  PostgresNode node(unreachable(true), runner);
  auto s = node.fence(2000ms);
  REQUIRE(s.ok());
  auto* kill = runner.find("pg_ctl kill KILL");
  REQUIRE(kill);
  CHECK(kill->argv.back() == "4242");
}

TEST_CASE("fence of an already stopped server succeeds and says so", "[pg][fence]") {
  RecordingRunner runner;
  runner.on("pg_ctl status", 3, "pg_ctl: no server running\n");
  PostgresNode node(unreachable(true), runner);
  REQUIRE(node.fence(1000ms).ok());
  CHECK(node.last_action() == "server already stopped");
  CHECK(runner.find("pg_ctl stop") == nullptr);
}

TEST_CASE("fence without data_dir on an unreachable node is an error naming the gap", "[pg][fence]") {
  RecordingRunner runner;
  PostgresNode node(unreachable(false, "Secr3t"), runner);
  auto s = node.fence(500ms);
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().message.find("no data_dir/bin_dir") != std::string::npos);
  CHECK(s.error().message.find("Secr3t") == std::string::npos);
  CHECK(runner.calls().empty());
}

TEST_CASE("rejoin runs pg_rewind as os_user with the password only in the environment", "[pg][rewind]") {
  RecordingRunner runner;
  runner.on("pg_ctl status", 3, "no server running");
  runner.on("pg_rewind", 1,
            "pg_rewind: error: target server needs to use either data checksums or \"wal_log_hints = on\"\n");
  PostgresNode node(unreachable(true), runner);
  auto s = node.rejoin_with_rewind(the_primary("RewindPw1"), 5000ms);
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().code == Errc::refused);
  CHECK(s.error().hint.find("rejoin --reclone") != std::string::npos);
  auto* rw = runner.find("pg_rewind");
  REQUIRE(rw);
  CHECK(rw->argv[0] == "/opt/pg/bin/pg_rewind");
  CHECK(rw->user == std::optional<std::string>("postgres"));
  CHECK(rw->argv[1] == "--target-pgdata=/srv/pg/data");
  CHECK(rw->argv[2].find("--source-server=") == 0);
  CHECK(rw->argv[2].find("host='127.0.0.1'") != std::string::npos);
  for (const auto& line : runner.lines()) CHECK(line.find("RewindPw1") == std::string::npos);
  CHECK(rw->env.at("PGPASSWORD") == "RewindPw1");
  CHECK(s.error().message.find("RewindPw1") == std::string::npos);
  // The node's own config files were read before pg_rewind could replace them.
  CHECK(runner.find("postgresql.auto.conf") != nullptr);
}

TEST_CASE("rejoin and reclone need data_dir and bin_dir", "[pg][rewind]") {
  RecordingRunner runner;
  PostgresNode node(unreachable(false), runner);
  auto a = node.rejoin_with_rewind(the_primary(), 1000ms);
  REQUIRE_FALSE(a.ok());
  CHECK(a.error().code == Errc::invalid_argument);
  CHECK(a.error().message.find("data_dir") != std::string::npos);
  auto b = node.reclone(the_primary(), 1000ms);
  REQUIRE_FALSE(b.ok());
  CHECK(b.error().code == Errc::invalid_argument);
  CHECK(runner.calls().empty());
}

TEST_CASE("reclone puts the old data folder back when pg_basebackup fails", "[pg][reclone]") {
  RecordingRunner runner;
  runner.on("pg_ctl status", 3, "no server running");
  runner.on("pg_basebackup", 1, "pg_basebackup: error: connection to server failed: password BasePw9 wrong\n");
  PostgresNode node(unreachable(true), runner);
  auto s = node.reclone(the_primary("BasePw9"), 5000ms);
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().message.find("pg_basebackup failed") != std::string::npos);
  CHECK(s.error().message.find("put back") != std::string::npos);
  CHECK(s.error().message.find("BasePw9") == std::string::npos);
  auto lines = runner.lines();
  // stop check, config reads, move aside, basebackup, move back: in that order.
  auto pos = [&](const std::string& needle) {
    for (std::size_t i = 0; i < lines.size(); ++i)
      if (lines[i].find(needle) != std::string::npos) return static_cast<int>(i);
    return -1;
  };
  CHECK(pos("pg_ctl status") >= 0);
  CHECK(pos("mv -- /srv/pg/data /srv/pg/data.drd-old-") > pos("pg_ctl status"));
  CHECK(pos("pg_basebackup -D /srv/pg/data -R") > pos("mv -- /srv/pg/data"));
  CHECK(pos("rm -rf") > pos("pg_basebackup"));
}

TEST_CASE("unfence starts a server that fence stopped", "[pg][fence]") {
  RecordingRunner runner;
  runner.on("pg_ctl status", 0, "running", 1).on("pg_ctl status", 3, "no server running");
  PostgresNode node(unreachable(true), runner);
  REQUIRE(node.fence(1000ms).ok());
  CHECK(node.last_action() == "server stopped with pg_ctl");
  auto u = node.unfence(1000ms);  // starts it; the SQL part then fails (nothing listens)
  CHECK_FALSE(u.ok());
  auto* start = runner.find("pg_ctl start");
  REQUIRE(start);
  CHECK(RecordingRunner::joined(*start).find("-D /srv/pg/data -w") != std::string::npos);
  CHECK(start->user == std::optional<std::string>("postgres"));
}
