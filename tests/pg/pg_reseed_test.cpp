// PostgresNode::reseed_from (the swap of `drctl restore ID --node STANDBY`) and
// replace_primary_data (the primary rolled back, `--node PRIMARY --force`) against a scripted
// runner: the order of stop / move aside / rename / start, and that every failure leaves the node
// on its old data folder, started again when it ran, with the copy handed back for removal. The node's
// URL points at a closed loopback port, so these are the failures before streaming is awaited;
// the success path and a copy that cannot stream run on real servers in
// tests/pg_e2e/pg_standby_restore_e2e_test.cpp and pg_primary_restore_e2e_test.cpp.
#include <catch2/catch.hpp>

#include "daemon/engines/postgres/postgres_node.hpp"
#include "tests/support/pg_cluster.hpp"
#include "tests/support/recording_runner.hpp"

using namespace drd;
using namespace std::chrono_literals;
using drd::test::RecordingRunner;

namespace {
NodeConfig standby() {
  NodeConfig c;
  c.key = c.name = "pgx";
  c.engine = Engine::postgresql;
  c.pg_conninfo = c.url = "postgresql://postgres@127.0.0.1:" + std::to_string(drd::test::free_loopback_port()) + "/postgres";
  c.data_dir = "/srv/pg/data";
  c.bin_dir = "/opt/pg/bin";
  c.os_user = "postgres";
  return c;
}
NodeConfig primary() {
  NodeConfig p;
  p.key = p.name = "prim";
  p.engine = Engine::postgresql;
  p.pg_conninfo = p.url = "postgresql://postgres@127.0.0.1:" + std::to_string(drd::test::free_loopback_port()) + "/postgres";
  return p;
}
const std::filesystem::path kPrepared = "/srv/pg/data.drd-restore-tmp";

int pos(const RecordingRunner& r, const std::string& needle, int from = 0) {
  auto lines = r.lines();
  for (int i = from; i < static_cast<int>(lines.size()); ++i)
    if (lines[i].find(needle) != std::string::npos) return i;
  return -1;
}
}  // namespace

TEST_CASE("reseed: a restored copy that does not start is removed and the old folder put back and started",
          "[pg][reseed]") {
  RecordingRunner runner;
  runner.on("pg_ctl status", 0, "pg_ctl: server is running (PID: 4242)\n", 1);
  runner.on("pg_ctl status", 3, "pg_ctl: no server running\n");
  runner.on("/opt/pg/bin/pg_ctl start", 1, "pg_ctl: could not start server\n", 1);
  runner.on("tail -n 15", 0, "FATAL:  could not create lock file \"postmaster.pid\"\n");
  PostgresNode node(standby(), runner);
  std::vector<std::string> discard;
  auto s = node.reseed_from(primary(), kPrepared, 5000ms, discard);
  REQUIRE_FALSE(s.ok());
  const std::string& m = s.error().message;
  INFO(m);
  CHECK(m.find("restore onto pgx: pg_ctl start for pgx failed") != std::string::npos);
  CHECK(m.find("the old data folder was put back; pgx was started again as it was") != std::string::npos);
  CHECK(m.find("server log of the restored copy") != std::string::npos);
  CHECK(m.find("could not create lock file") != std::string::npos);
  CHECK(m.find("\n;") == std::string::npos);
  CHECK(s.error().hint.find("drctl rejoin pgx --reclone") != std::string::npos);
  // stop -> move aside -> rename the copy in -> start (fails) -> copy removed, old back -> start
  const int stop = pos(runner, "/opt/pg/bin/pg_ctl stop");
  const int aside = pos(runner, "mv -- /srv/pg/data /srv/pg/data.drd-old-");
  const int in = pos(runner, "mv -- /srv/pg/data.drd-restore-tmp /srv/pg/data");
  const int start = pos(runner, "/opt/pg/bin/pg_ctl start");
  const int back = pos(runner, "mv -- \"$1\" \"$3\" && mv -- \"$2\" \"$1\" sh /srv/pg/data /srv/pg/data.drd-old-");
  const int restart = pos(runner, "/opt/pg/bin/pg_ctl start", start + 1);
  CHECK(stop >= 0);
  CHECK(aside > stop);
  CHECK(in > aside);
  CHECK(start > in);
  CHECK(back > start);
  CHECK(restart > back);
  for (const auto& c : runner.calls()) CHECK(c.user == std::optional<std::string>("postgres"));
  // The failed copy is handed back for removal (off the cluster worker), nothing deleted here.
  REQUIRE(discard.size() == 1);
  CHECK(discard[0].rfind("/srv/pg/data.drd-discard-", 0) == 0);
  CHECK(runner.find("rm -rf") == nullptr);
}

TEST_CASE("reseed: a data folder that cannot be moved aside changes nothing", "[pg][reseed]") {
  RecordingRunner runner;
  runner.on("pg_ctl status", 0, "pg_ctl: server is running (PID: 4242)\n", 1);
  runner.on("pg_ctl status", 3, "pg_ctl: no server running\n");
  runner.on("mv -- /srv/pg/data /srv/pg/data.drd-old-", 1, "mv: cannot move: Permission denied\n");
  PostgresNode node(standby(), runner);
  std::vector<std::string> discard;
  auto s = node.reseed_from(primary(), kPrepared, 5000ms, discard);
  REQUIRE_FALSE(s.ok());
  INFO(s.error().message);
  CHECK(s.error().message.find("cannot move /srv/pg/data aside") != std::string::npos);
  CHECK(s.error().message.find("nothing was changed, pgx was started again as it was") != std::string::npos);
  CHECK(s.error().hint.find("writable by postgres") != std::string::npos);
  CHECK(discard == std::vector<std::string>{kPrepared.string()});          // the copy goes
  CHECK(pos(runner, "mv -- /srv/pg/data.drd-restore-tmp") < 0);             // never renamed in
  CHECK(pos(runner, "/opt/pg/bin/pg_ctl start") > pos(runner, "mv -- /srv/pg/data /srv/pg/data.drd-old-"));
}

TEST_CASE("reseed: an incomplete prepared copy is refused before the server is stopped", "[pg][reseed]") {
  RecordingRunner runner;
  runner.on("global/pg_control", 1);
  PostgresNode node(standby(), runner);
  std::vector<std::string> discard;
  auto s = node.reseed_from(primary(), kPrepared, 5000ms, discard);
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().message.find("missing or incomplete; nothing was changed") != std::string::npos);
  CHECK(runner.find("pg_ctl") == nullptr);
  CHECK(discard == std::vector<std::string>{kPrepared.string()});
}

TEST_CASE("reseed needs data_dir and bin_dir", "[pg][reseed]") {
  RecordingRunner runner;
  NodeConfig c = standby();
  c.data_dir.reset();
  PostgresNode node(c, runner);
  std::vector<std::string> discard;
  auto s = node.reseed_from(primary(), kPrepared, 5000ms, discard);
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().message.find("data_dir or bin_dir is not configured") != std::string::npos);
  CHECK(runner.calls().empty());
}

TEST_CASE("primary roll-back: a copy that does not start is set aside and the old primary put back and started",
          "[pg][reseed][rollback]") {
  RecordingRunner runner;
  runner.on("pg_ctl status", 0, "pg_ctl: server is running (PID: 4242)\n", 1);
  runner.on("pg_ctl status", 3, "pg_ctl: no server running\n");
  runner.on("/opt/pg/bin/pg_ctl start", 1, "pg_ctl: could not start server\n", 1);
  runner.on("tail -n 15", 0, "FATAL:  invalid value for parameter \"port\"\n");
  PostgresNode node(standby(), runner);
  std::vector<std::string> discard;
  auto s = node.replace_primary_data(kPrepared, 3, 5000ms, discard);
  REQUIRE_FALSE(s.ok());
  const std::string& m = s.error().message;
  INFO(m);
  CHECK(m.find("restore onto the primary pgx: pg_ctl start for pgx failed") != std::string::npos);
  CHECK(m.find("the old data folder was put back; pgx was started again as it was") != std::string::npos);
  CHECK(m.find("invalid value for parameter") != std::string::npos);  // the copy's log
  CHECK(s.error().hint.find("--target PATH") != std::string::npos);
  REQUIRE(discard.size() == 1);
  CHECK(discard[0].rfind("/srv/pg/data.drd-discard-", 0) == 0);  // the failed copy, never the old data
  // Stopped, moved aside, copy renamed in, its own config written, standby.signal removed, started.
  const int stop = pos(runner, "/opt/pg/bin/pg_ctl stop");
  const int aside = pos(runner, "mv -- /srv/pg/data /srv/pg/data.drd-old-");
  const int in = pos(runner, "mv -- /srv/pg/data.drd-restore-tmp /srv/pg/data");
  const int conf = pos(runner, "/srv/pg/data/postgresql.auto.conf", in);
  const int signal = pos(runner, "/srv/pg/data/standby.signal", in);
  const int start = pos(runner, "/opt/pg/bin/pg_ctl start");
  CHECK(stop >= 0);
  CHECK(stop < aside);
  CHECK(aside < in);
  CHECK(in < conf);
  CHECK(conf < start);
  CHECK(in < signal);
  CHECK(signal < start);
  CHECK(runner.lines()[signal].find("rm -f") != std::string::npos);
}

TEST_CASE("primary roll-back: an incomplete copy is refused before the primary is stopped", "[pg][reseed][rollback]") {
  RecordingRunner runner;
  runner.on("global/pg_control", 1);
  PostgresNode node(standby(), runner);
  std::vector<std::string> discard;
  auto s = node.replace_primary_data(kPrepared, 3, 5000ms, discard);
  REQUIRE_FALSE(s.ok());
  CHECK(s.error().message.find("missing or incomplete; nothing was changed") != std::string::npos);
  CHECK(runner.find("pg_ctl") == nullptr);
  CHECK(discard == std::vector<std::string>{kPrepared.string()});
}
