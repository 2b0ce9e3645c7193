// SqliteCluster::promote() on real files, driven directly (no drd process): what the
// failover's history row is made of when the promoted standby was behind.
#include <catch2/catch.hpp>

#include "common/config.hpp"
#include "daemon/engines/sqlite/sqlite_cluster.hpp"
#include "tests/e2e/drd_fixture.hpp"

using namespace drd;
namespace fs = std::filesystem;

TEST_CASE("a promotion of a standby that was behind reports how far behind it was and where it was promoted",
          "[sqlite-cluster]") {
  test::TempDir dir{"drd-promote"};
  const auto p = dir / "p.db", s1 = dir / "s1.db", s2 = dir / "s2.db";
  test::make_sqlite_db(p, 10);
  Config cfg;
  for (auto& [name, path] : std::vector<std::pair<std::string, fs::path>>{{"p", p}, {"s1", s1}, {"s2", s2}}) {
    NodeConfig n;
    n.name = name;
    n.type = name == "p" ? NodeType::primary : NodeType::secondary;
    n.engine = Engine::sqlite;
    n.sqlite_path = path;
    cfg.nodes.push_back(n);
  }
  cfg.current_link = dir / "current.db";
  SqliteCluster c(cfg);
  REQUIRE(c.attach("p", {}).ok());
  for (int i = 0; i < 3; ++i) REQUIRE(c.tick().ok());
  const auto before = c.replicas().at("s1");
  REQUIRE(before.position);
  REQUIRE(before.lag_bytes == 0);
  // Committed on the primary, seen by no tick yet: the standbys are behind when the failover begins.
  test::app_exec(p, "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 200) "
                    "INSERT INTO images (id, url) SELECT 1000 + x, hex(randomblob(500)) FROM c");
  PromoteRequest req;
  req.old_primary = "p";
  req.target = "s1";
  req.term = 2;
  auto out = c.promote(req);
  REQUIRE(out.ok());
  std::string notes;
  for (auto& n : out->notes) notes += n + "\n";
  INFO(notes);
  CHECK(out->lag_bytes > 200 * 500);  // what the last shipping brought over
  REQUIRE(out->position.has_value());
  CHECK(*out->position >= *before.position + out->lag_bytes);
  CHECK(notes.find("bytes behind when the failover began") != std::string::npos);
  CHECK(test::count_rows(s1) == 210);
  // The other standby continues from the new primary, and its position goes on from there.
  for (int i = 0; i < 5; ++i) (void)c.tick();
  const auto s2_now = c.replicas().at("s2");
  REQUIRE(s2_now.position);
  CHECK(*s2_now.position >= *out->position);
  c.detach();
  CHECK(test::count_rows(s2) == 210);
}
