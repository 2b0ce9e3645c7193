// Failover primitives: fencing, salvage from a renamed-away primary,
// promotion clean-up and snapshot copies.
#include <catch2/catch.hpp>

#include "daemon/engines/sqlite/replication/position_file.hpp"
#include "daemon/engines/sqlite/replication/sqlite_replicator.hpp"
#include "tests/replication/db_helpers.hpp"
#include "tests/support/temp_dir.hpp"

using namespace drd::replication;
using drd::test::Conn;
using drd::test::dump_db;
using drd::test::integrity;
using drd::test::TempDir;
namespace fs = std::filesystem;

namespace {
fs::path make_primary(const TempDir& dir) {
  auto p = dir / "primary.db";
  Conn c(p);
  c.exec("PRAGMA journal_mode=WAL");
  c.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)");
  c.exec("INSERT INTO t(v) VALUES ('one'), ('two')");
  return p;
}
}  // namespace

TEST_CASE("fence_primary makes application writes fail with SQLITE_BUSY until released", "[replication][failover]") {
  TempDir dir{"drd-fence"};
  auto primary = make_primary(dir);
  SqliteReplicator r(primary, {dir / "s.db"});
  REQUIRE(r.start().ok());
  Conn app(primary, 0);
  REQUIRE(r.fence_primary().ok());
  CHECK(r.fenced());
  CHECK(app.try_exec("INSERT INTO t(v) VALUES ('blocked')") == SQLITE_BUSY);
  // Readers are not affected, and drd can still ship and checkpoint while fenced.
  CHECK(app.integer("SELECT count(*) FROM t") == 2);
  REQUIRE(r.step().ok());
  REQUIRE(r.checkpoint(true).ok());
  REQUIRE(r.release_fence().ok());
  CHECK(app.try_exec("INSERT INTO t(v) VALUES ('through')") == SQLITE_OK);
  REQUIRE(r.step().ok());
  CHECK(dump_db(dir / "s.db") == dump_db(primary));
}

TEST_CASE("fence holds even after the primary's path was renamed away", "[replication][failover]") {
  TempDir dir{"drd-fence"};
  auto primary = make_primary(dir);
  SqliteReplicator r(primary, {dir / "s.db"});
  REQUIRE(r.start().ok());
  Conn app(primary, 0);  // opened and used before the rename, like a running application
  CHECK(app.integer("SELECT count(*) FROM t") == 2);
  fs::rename(primary, dir / "moved.db");
  fs::rename(fs::path(primary.string() + "-wal"), dir / "moved.db-wal");
  fs::rename(fs::path(primary.string() + "-shm"), dir / "moved.db-shm");
  REQUIRE(r.fence_primary().ok());
  CHECK(app.try_exec("INSERT INTO t(v) VALUES ('blocked')") == SQLITE_BUSY);
  REQUIRE(r.release_fence().ok());
}

TEST_CASE("salvage_into applies the committed tail of a primary renamed away", "[replication][failover]") {
  TempDir dir{"drd-salvage"};
  auto primary = make_primary(dir);
  auto s1 = dir / "s1.db", s2 = dir / "s2.db";
  SqliteReplicator r(primary, {s1, s2});
  REQUIRE(r.start().ok());
  {
    Conn app(primary);
    app.exec("INSERT INTO t(v) VALUES ('three')");
    REQUIRE(r.step().ok());
    // Committed on the primary but never shipped by a step:
    app.exec("INSERT INTO t(v) VALUES ('four'), ('five')");
    app.exec("UPDATE t SET v = upper(v)");
  }
  auto moved = dir / "failed.db";
  fs::rename(primary, moved);
  fs::rename(fs::path(primary.string() + "-wal"), fs::path(moved.string() + "-wal"));
  fs::rename(fs::path(primary.string() + "-shm"), fs::path(moved.string() + "-shm"));
  // The path is gone but the open file is not: salvage reads the committed tail through it.
  auto saved = r.salvage_into(s1);
  REQUIRE(saved.ok());
  CHECK(*saved > 0);
  CHECK(integrity(s1) == "ok");
  CHECK(dump_db(s1) == dump_db(moved));
  // And step() keeps shipping through the open file too (noted once, not an error).
  auto st = r.step();
  REQUIRE(st.ok());
  CHECK(dump_db(s2) == dump_db(moved));
  // Salvaging again finds nothing new.
  auto again = r.salvage_into(s1);
  REQUIRE(again.ok());
  CHECK(*again == 0);
  CHECK_FALSE(r.salvage_into(dir / "unknown.db").ok());
  r.stop();
  REQUIRE(finalize_standby_for_promotion(s1).ok());
  CHECK_FALSE(fs::exists(fs::path(s1.string() + "-wal")));
  CHECK_FALSE(fs::exists(fs::path(s1.string() + "-shm")));
  CHECK_FALSE(fs::exists(position_path(s1)));
  Conn promoted(s1);
  CHECK(promoted.text("PRAGMA journal_mode") == "wal");
  CHECK(promoted.integer("SELECT count(*) FROM t") == 5);
}

TEST_CASE("seed_copy makes a consistent WAL-mode copy and finalize rejects a missing file", "[replication][failover]") {
  TempDir dir{"drd-seed"};
  auto primary = make_primary(dir);
  auto copy = dir / "copy.db";
  Conn app(primary);
  app.exec("BEGIN");
  app.exec("INSERT INTO t(v) VALUES ('uncommitted')");
  REQUIRE(seed_copy(primary, copy).ok());  // the open write transaction is not in the copy
  app.exec("COMMIT");
  Conn c(copy);
  CHECK(c.integer("SELECT count(*) FROM t") == 2);
  CHECK(c.text("PRAGMA journal_mode") == "wal");
  CHECK(c.text("PRAGMA integrity_check") == "ok");
  auto st = finalize_standby_for_promotion(dir / "nope.db");
  REQUIRE_FALSE(st.ok());
  CHECK(st.error().code == drd::Errc::not_found);
}
