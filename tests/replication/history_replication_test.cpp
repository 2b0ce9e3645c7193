// The database's own history on real SQLite files (docs/sqlite-replication.md, "Never
// destroy a copy"): drd stamps the primary, and never overwrites a copy whose history the
// source does not continue, whatever the side files say.
#include <catch2/catch.hpp>

#include "daemon/engines/sqlite/replication/history_table.hpp"
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

ReplicatorOptions every_step() {
  ReplicatorOptions o;
  o.stamp_interval = std::chrono::milliseconds(0);  // stamp after every step with new commits
  o.refused_retry = std::chrono::milliseconds(0);
  o.reseed_retry = std::chrono::milliseconds(0);
  return o;
}

struct Cluster {
  TempDir dir{"drd-history"};
  fs::path primary = dir / "primary.db";
  fs::path s1 = dir / "standby1.db";
  fs::path s2 = dir / "standby2.db";

  Cluster() {
    Conn c(primary);
    c.exec("PRAGMA journal_mode=WAL");
    c.exec("CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT)");
  }
  void insert(int from, int to) {
    Conn c(primary);
    for (int i = from; i <= to; ++i) c.exec("INSERT INTO items(id, name) VALUES (" + std::to_string(i) + ", 'row')");
  }
  static long long rows(const fs::path& p) { return Conn(p).integer("SELECT count(*) FROM items"); }
  static FileHistory history(const fs::path& p) {
    auto h = read_history_file(p);
    REQUIRE(h.ok());
    return *h;
  }
  // A consistent copy of `src` as it is now (what an operator's backup would be).
  void copy_of(const fs::path& src, const fs::path& dst) {
    Conn c(src);
    c.exec("VACUUM INTO '" + dst.string() + "'");
  }
  void replace(const fs::path& path, const fs::path& with) {
    fs::remove(fs::path(path.string() + "-wal"));
    fs::remove(fs::path(path.string() + "-shm"));
    fs::rename(with, path);
  }
};

}  // namespace

TEST_CASE("drd stamps the primary's history and every standby receives it", "[replication][history]") {
  Cluster c;
  SqliteReplicator r(c.primary, {c.s1, c.s2}, every_step());
  REQUIRE(r.start().ok());
  auto first = c.history(c.primary);
  REQUIRE(first.stamped);
  CHECK(first.db_id.size() == 32);
  CHECK(first.last_node == "primary");
  c.insert(1, 10);
  REQUIRE(r.step().ok());  // sees the commits, stamps, ships both
  auto now = c.history(c.primary);
  CHECK(now.epoch == first.epoch + 1);
  REQUIRE(r.step().ok());
  CHECK(c.history(c.s1) == now);
  CHECK(c.history(c.s2) == now);
  REQUIRE(r.step().ok());  // nothing new: no stamp
  CHECK(c.history(c.primary).epoch == now.epoch);
  for (auto& st : r.standbys()) {
    CHECK(st.history_known);
    CHECK(st.history.epoch == now.epoch);
  }
  r.stop();  // nothing committed since the last stamp: stop adds none
  CHECK(c.history(c.primary).epoch == now.epoch);
}

TEST_CASE("an empty file created at the primary's path is a lost primary, and no standby is touched",
          "[replication][history]") {
  Cluster c;
  c.insert(1, 100);
  SqliteReplicator r(c.primary, {c.s1, c.s2}, every_step());
  REQUIRE(r.start().ok());
  REQUIRE(r.step().ok());
  const auto before = dump_db(c.s1);
  // The README's demo: the file moved away, an application writes through the dangling link.
  fs::rename(c.primary, c.dir / "lost.db");
  { Conn app(c.primary); app.exec("CREATE TABLE IF NOT EXISTS items(id INTEGER PRIMARY KEY, name TEXT)"); }
  auto rep = r.step();
  REQUIRE(rep.ok());
  INFO(r.primary_lost());
  CHECK(r.primary_lost().find("replaced by another file") != std::string::npos);
  CHECK(r.primary_lost().find("no drd history") != std::string::npos);
  CHECK_FALSE(rep->warnings.empty());
  for (int i = 0; i < 3; ++i) REQUIRE(r.step().ok());
  CHECK_FALSE(rep->reseeded);
  CHECK(dump_db(c.s1) == before);
  CHECK(dump_db(c.s2) == before);
  CHECK(c.rows(c.s1) == 100);
  CHECK_FALSE(c.history(c.primary).stamped);  // drd never stamps a stranger
}

TEST_CASE("an older copy put at the primary's path while drd is stopped is not followed", "[replication][history]") {
  Cluster c;
  c.insert(1, 50);
  {
    SqliteReplicator r(c.primary, {c.s1, c.s2}, every_step());
    REQUIRE(r.start().ok());
    REQUIRE(r.step().ok());
    c.copy_of(c.primary, c.dir / "older.db");  // 50 rows
    c.insert(51, 100);
    REQUIRE(r.step().ok());
    REQUIRE(r.step().ok());
    REQUIRE(c.rows(c.s1) == 100);
  }
  c.replace(c.primary, c.dir / "older.db");  // a hand restore, -wal/-shm removed
  SqliteReplicator r(c.primary, {c.s1, c.s2}, every_step());
  StepReport rep;
  auto st = r.start(&rep);
  REQUIRE_FALSE(st.ok());
  CHECK(st.error().code == drd::Errc::refused);
  CHECK(r.primary_lost().find("longer history") != std::string::npos);
  CHECK(c.rows(c.s1) == 100);
  CHECK(c.rows(c.s2) == 100);
  CHECK(c.rows(c.primary) == 50);
}

TEST_CASE("an older file moved onto the primary's path while drd runs is a lost primary", "[replication][history]") {
  Cluster c;
  c.insert(1, 50);
  SqliteReplicator r(c.primary, {c.s1, c.s2}, every_step());
  REQUIRE(r.start().ok());
  REQUIRE(r.step().ok());
  c.copy_of(c.primary, c.dir / "older.db");
  c.insert(51, 100);
  REQUIRE(r.step().ok());
  REQUIRE(r.step().ok());
  c.replace(c.primary, c.dir / "older.db");
  REQUIRE(r.step().ok());
  CHECK(r.primary_lost().find("replaced by another file") != std::string::npos);
  REQUIRE(r.step().ok());
  CHECK(c.rows(c.s1) == 100);
  CHECK(c.rows(c.s2) == 100);
}

TEST_CASE("a standby replaced by an older copy is not trusted, and is re-seeded from the primary that continues it",
          "[replication][history]") {
  Cluster c;
  c.insert(1, 50);
  SqliteReplicator r(c.primary, {c.s1, c.s2}, every_step());
  REQUIRE(r.start().ok());
  REQUIRE(r.step().ok());
  fs::copy_file(c.s1, c.dir / "s1-older.db");
  c.insert(51, 100);
  REQUIRE(r.step().ok());
  REQUIRE(r.step().ok());
  c.replace(c.s1, c.dir / "s1-older.db");  // its position file still says "caught up"
  c.insert(101, 110);
  for (int i = 0; i < 4; ++i) REQUIRE(r.step().ok());
  CHECK(integrity(c.s1) == "ok");
  CHECK(dump_db(c.s1) == dump_db(c.primary));
  CHECK(r.standbys()[0].reseeds == 1);
}

TEST_CASE("a standby replaced by an older copy while drd is stopped is re-seeded at start, not continued",
          "[replication][history]") {
  Cluster c;
  c.insert(1, 50);
  {
    SqliteReplicator r(c.primary, {c.s1}, every_step());
    REQUIRE(r.start().ok());
    REQUIRE(r.step().ok());
    fs::copy_file(c.s1, c.dir / "s1-older.db");
    c.insert(51, 100);
    REQUIRE(r.step().ok());
    REQUIRE(r.step().ok());
  }
  c.replace(c.s1, c.dir / "s1-older.db");
  c.insert(101, 110);
  SqliteReplicator r(c.primary, {c.s1}, every_step());
  StepReport rep;
  REQUIRE(r.start(&rep).ok());
  std::string notes;
  for (auto& n : rep.notes) notes += n + "\n";
  INFO(notes);
  CHECK(notes.find("changed by someone else") != std::string::npos);
  REQUIRE(r.step().ok());
  CHECK(dump_db(c.s1) == dump_db(c.primary));
}

TEST_CASE("a copy with a longer history is never overwritten, unless the operator discards it",
          "[replication][history]") {
  Cluster c;
  c.insert(1, 50);
  {
    SqliteReplicator r(c.primary, {c.s1}, every_step());
    REQUIRE(r.start().ok());
    REQUIRE(r.step().ok());
    c.copy_of(c.primary, c.dir / "older.db");
    c.insert(51, 100);
    REQUIRE(r.step().ok());
    REQUIRE(r.step().ok());
  }
  const auto older = c.dir / "older.db";
  {
    // A cluster configured (by mistake) with the older copy as primary and s1 as standby.
    SqliteReplicator r(older, {c.s1}, every_step());
    REQUIRE_FALSE(r.start().ok());
    CHECK(c.rows(c.s1) == 100);
  }
  ReplicatorOptions o = every_step();
  o.discard = {c.s1};
  SqliteReplicator r(older, {c.s1}, o);
  REQUIRE(r.start().ok());
  REQUIRE(r.step().ok());
  CHECK(c.rows(c.s1) == 50);
  CHECK(dump_db(c.s1) == dump_db(older));
}

TEST_CASE("a standby that is another database is kept, reported, and the primary goes on", "[replication][history]") {
  Cluster c;
  c.insert(1, 10);
  auto foreign = c.dir / "foreign.db";
  {
    Conn f(foreign);
    f.exec("PRAGMA journal_mode=WAL");
    f.exec("CREATE TABLE mine(x)");
    f.exec("INSERT INTO mine VALUES (7)");
    REQUIRE(create_history(f.get(), foreign.string(), new_database_id(), 1, "elsewhere").ok());
  }
  {
    SqliteReplicator first(c.primary, {c.s2}, every_step());  // the database gets its history
    REQUIRE(first.start().ok());
  }
  fs::copy_file(foreign, c.s1);
  SqliteReplicator r(c.primary, {c.s1, c.s2}, every_step());
  StepReport rep;
  REQUIRE(r.start(&rep).ok());
  CHECK(r.primary_lost().empty());
  REQUIRE_FALSE(rep.warnings.empty());
  CHECK(rep.warnings.front().find("another database") != std::string::npos);
  REQUIRE(r.step().ok());
  auto st = r.standbys();
  CHECK(st[0].refused.find("another database") != std::string::npos);
  CHECK_FALSE(st[0].seeded);
  CHECK(Conn(c.s1).integer("SELECT x FROM mine") == 7);
  CHECK(st[1].seeded);
  CHECK(dump_db(c.s2) == dump_db(c.primary));
}
