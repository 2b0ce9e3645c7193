// PostgreSQL switchover under a write load: no acknowledged commit lost, and
// the old primary comes back as a streaming standby of the new one.
#include <catch2/catch.hpp>

#include "tests/pg_e2e/pg_drd_fixture.hpp"

using namespace drd::test;
using namespace std::chrono_literals;
namespace json = boost::json;

TEST_CASE("pg: switchover under load loses no commits and the old primary streams from the new one", "[pg_e2e]") {
  PgDrdFixture f;
  f.start();
  auto& pg = f.pg();
  REQUIRE(f.wait_streaming_in_status("node1"));
  auto writer = f.start_writer(10, 300);
  REQUIRE(eventually([&] { return read_acks(f.dir() / "acks.txt").size() >= 150; }, 10s));

  auto r = f.call("switchover", {{"node", "node1"}});
  INFO(json::serialize(r) << "\n" << f.log());
  CHECK(std::string(r.at("mode").as_string()) == "switchover");
  CHECK(std::string(f.status().at("primary").as_string()) == "node1");
  REQUIRE(writer->wait(30s).has_value());

  auto acks = read_acks(f.dir() / "acks.txt");
  auto present = ids_on(pg, 1);
  std::size_t missing = 0, on_old = 0, on_new = 0;
  long long last_old = 0, first_new = 0;
  for (auto& a : acks) {
    if (!present.count(a.id)) ++missing;
    if (a.port == pg.port(0)) ++on_old, last_old = a.ms;
    if (a.port == pg.port(1) && !first_new) first_new = a.ms;
    if (a.port == pg.port(1)) ++on_new;
  }
  WARN("switchover: " << acks.size() << " commits acknowledged (" << on_old << " on node0, " << on_new
                      << " on node1), write gap " << (first_new - last_old) << " ms");
  CHECK(missing == 0);
  CHECK(on_old > 0);
  CHECK(on_new > 0);

  // The old primary is a standby of node1 again, not fenced, and receives new rows.
  CHECK(pg.query(0, "SELECT pg_is_in_recovery()") == std::optional<std::string>("t"));
  REQUIRE(pg.wait_for(1, "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'", "2", 15s));
  pg.exec(1, "INSERT INTO drd_writer (id) VALUES (-1)");
  REQUIRE(pg.wait_for(0, "SELECT count(*) FROM drd_writer WHERE id = -1", "1", 10s));
  REQUIRE(f.wait_streaming_in_status("node0"));
  auto n0 = f.node_status("node0");
  CHECK(std::string(n0.at("role").as_string()) == "standby");
  CHECK_FALSE(n0.at("fenced").as_bool());
  auto hist = f.call("history").as_array();
  REQUIRE(!hist.empty());
  CHECK(std::string(hist[0].at("mode").as_string()) == "switchover");
}
