// PostgresNode's server-file actions against a scripted runner: which commands
// run, as whom, with what, and how their failures are reported. The node's
// URL points at a closed loopback port, so every SQL step fails at once.
#include <catch2/catch.hpp>

#include "daemon/engines/postgres/postgres_node.hpp"
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

TEST_CASE("fence stops a server that does not answer with pg_ctl stop -m immediate, never fast", "[pg][fence]") {
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
  // fast would end sessions with SIGTERM: a COMMIT waiting for a synchronous standby would
  // finish locally for others to see (pg::fence_method).
  CHECK(RecordingRunner::joined(*stop).find("-D /srv/pg/data -m immediate") != std::string::npos);
  CHECK(runner.find("-m fast") == nullptr);
}

TEST_CASE("fence escalates to SIGKILL for a frozen server", "[pg][fence]") {
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
  CHECK(s.error().hint.find("drctl rejoin pgx --reclone") != std::string::npos);
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

TEST_CASE("rejoin is refused before anything is stopped when pg_controldata shows no checksums and no hints",
          "[pg][rewind]") {
  RecordingRunner runner;
  runner.on("pg_controldata", 0,
            "Database cluster state:               shut down\n"
            "wal_log_hints setting:                off\n"
            "Data page checksum version:           0\n");
  PostgresNode node(unreachable(true), runner);
  auto s = node.rejoin_with_rewind(the_primary(), 5000ms);
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().code == Errc::refused);
  CHECK(s.error().message.find("wal_log_hints") != std::string::npos);
  CHECK(s.error().message.find("nothing was changed") != std::string::npos);
  CHECK(s.error().hint.find("drctl rejoin pgx --reclone") != std::string::npos);
  auto* cd = runner.find("pg_controldata");
  REQUIRE(cd);
  CHECK(cd->argv[0] == "/opt/pg/bin/pg_controldata");
  CHECK(cd->user == std::optional<std::string>("postgres"));
  CHECK(cd->env.at("LC_ALL") == "C");
  CHECK(runner.find("pg_ctl") == nullptr);
  CHECK(runner.find("pg_rewind") == nullptr);
}

TEST_CASE("rejoin whose WAL is gone is refused with --reclone, and a server that ran is started again",
          "[pg][rewind]") {
  RecordingRunner runner;
  runner.on("pg_ctl status", 0, "pg_ctl: server is running (PID: 4242)", 1);
  runner.on("pg_ctl status", 3, "pg_ctl: no server running");
  runner.on("pg_rewind", 1,
            "pg_rewind: servers diverged at WAL location 0/9000000 on timeline 1\n"
            "pg_rewind: error: could not find previous WAL record at 0/5000028\n");
  PostgresNode node(unreachable(true), runner);
  auto s = node.rejoin_with_rewind(the_primary(), 5000ms);
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().code == Errc::refused);
  CHECK(s.error().message.find("diverged from newprimary too long ago") != std::string::npos);
  CHECK(s.error().message.find("/srv/pg/data/pg_wal") != std::string::npos);
  CHECK(s.error().hint.find("--reclone") != std::string::npos);
  auto lines = runner.lines();
  auto pos = [&](const std::string& needle) {
    for (std::size_t i = 0; i < lines.size(); ++i)
      if (lines[i].find(needle) != std::string::npos) return static_cast<int>(i);
    return -1;
  };
  CHECK(pos("pg_ctl stop") >= 0);
  CHECK(pos("pg_ctl start") > pos("pg_rewind"));
}

TEST_CASE("clone into a data folder that does not exist yet: pg_basebackup straight in, own port", "[pg][reclone]") {
  RecordingRunner runner;
  runner.on("PG_VERSION", 3);  // the folder is missing
  runner.on("postgresql.auto.conf", 0, "# Do not edit this file manually!\nsynchronous_standby_names = 'x'\n");
  PostgresNode node(unreachable(true), runner);
  auto s = node.reclone(the_primary("ClonePw2"), 1500ms);
  // It cannot stream from a closed port; everything up to that point ran.
  REQUIRE_FALSE(s.ok());
  CHECK(runner.find("mv --") == nullptr);
  CHECK(runner.find("pg_ctl stop") == nullptr);
  auto* bb = runner.find("pg_basebackup");
  REQUIRE(bb);
  CHECK(bb->argv[0] == "/opt/pg/bin/pg_basebackup");
  CHECK(bb->user == std::optional<std::string>("postgres"));
  CHECK(bb->env.at("PGPASSWORD") == "ClonePw2");
  for (const auto& line : runner.lines()) CHECK(line.find("ClonePw2") == std::string::npos);
  // postgresql.auto.conf is written with this node's port, without the primary's sync names.
  const ProcessSpec* auto_conf = nullptr;
  for (const auto& c : runner.calls())
    if (!c.stdin_data.empty() && c.argv.back().find("postgresql.auto.conf") != std::string::npos) auto_conf = &c;
  REQUIRE(auto_conf);
  const auto& cfg = node.config();
  auto port = cfg.pg_conninfo.substr(cfg.pg_conninfo.rfind(':') + 1);
  port = port.substr(0, port.find('/'));
  CHECK(auto_conf->stdin_data.find("port = '" + port + "'") != std::string::npos);
  CHECK(auto_conf->stdin_data.find("synchronous_standby_names") == std::string::npos);
  CHECK(auto_conf->stdin_data.find("primary_conninfo = ") != std::string::npos);
  CHECK(runner.find("pg_ctl start") != nullptr);
}

TEST_CASE("clone refuses a folder that is neither empty nor a data folder", "[pg][reclone]") {
  RecordingRunner runner;
  runner.on("PG_VERSION", 5);
  PostgresNode node(unreachable(true), runner);
  auto s = node.reclone(the_primary(), 3000ms);
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().code == Errc::refused);
  CHECK(s.error().message.find("neither empty nor a PostgreSQL data folder") != std::string::npos);
  CHECK(runner.find("pg_basebackup") == nullptr);
  CHECK(runner.find("mv --") == nullptr);
}

TEST_CASE("unfence starts a server that fence stopped", "[pg][fence]") {
  RecordingRunner runner;
  runner.on("pg_ctl status", 0, "running", 1).on("pg_ctl status", 3, "no server running");
  PostgresNode node(unreachable(true), runner);
  REQUIRE(node.fence(1000ms).ok());
  CHECK(node.last_action() == "server stopped at once with pg_ctl (-m immediate): it did not answer SQL");
  auto u = node.unfence(1000ms);  // starts it; the SQL part then fails (nothing listens)
  CHECK_FALSE(u.ok());
  auto* start = runner.find("pg_ctl start");
  REQUIRE(start);
  CHECK(RecordingRunner::joined(*start).find("-D /srv/pg/data -w") != std::string::npos);
  CHECK(start->user == std::optional<std::string>("postgres"));
}
