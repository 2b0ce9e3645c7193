// Continuing standbys after a failover (docs/sqlite-replication.md, "Seeding"): a standby
// drd left as it is holds a state of the database the new primary continues, and is
// brought up to date by rewriting only the pages that differ, never by a full copy; a
// standby whose history diverged is still refused and kept.
#include <catch2/catch.hpp>
#include <sys/stat.h>

#include "daemon/engines/sqlite/replication/history_table.hpp"
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

ReplicatorOptions quick() {
  ReplicatorOptions o;
  o.stamp_interval = std::chrono::milliseconds(0);
  o.refused_retry = std::chrono::milliseconds(0);
  o.reseed_retry = std::chrono::milliseconds(0);
  return o;
}

ino_t inode(const fs::path& p) {
  struct stat st {};
  REQUIRE(::stat(p.c_str(), &st) == 0);
  return st.st_ino;
}

// `n` rows of about 2 KiB each, ids from `first`.
void add_rows(const fs::path& db, int first, int n) {
  Conn c(db);
  c.exec("BEGIN");
  for (int i = first; i < first + n; ++i)
    c.exec("INSERT INTO blobs(id, data) VALUES (" + std::to_string(i) + ", randomblob(2000))");
  c.exec("COMMIT");
}

void step_n(SqliteReplicator& r, int n = 3) {
  for (int i = 0; i < n; ++i) REQUIRE(r.step().ok());
}

}  // namespace

TEST_CASE("after a failover a standby that followed is brought up to date page by page, a diverged one is kept",
          "[replication][incremental]") {
  TempDir dir{"drd-incr"};
  const auto p = dir / "primary.db", s1 = dir / "s1.db", s2 = dir / "s2.db", s3 = dir / "s3.db";
  {
    Conn c(p);
    c.exec("PRAGMA journal_mode=WAL");
    c.exec("CREATE TABLE blobs(id INTEGER PRIMARY KEY, data BLOB)");
  }
  add_rows(p, 1, 3000);  // about 6 MB
  std::uint64_t s1_position = 0;
  {
    SqliteReplicator r(p, {s1, s2, s3}, quick());
    REQUIRE(r.start().ok());
    step_n(r);
    add_rows(p, 3001, 50);
    step_n(r);
    for (auto& st : r.standbys()) REQUIRE(st.lag_bytes == 0);
  }
  {
    // s1 goes on alone: s2 stays behind (a prefix of what s1 holds).
    SqliteReplicator r(p, {s1}, quick());
    REQUIRE(r.start().ok());
    add_rows(p, 3051, 40);
    Conn(p).exec("UPDATE blobs SET data = randomblob(100) WHERE id % 500 = 0");
    step_n(r);
    REQUIRE(r.standbys()[0].lag_bytes == 0);
    s1_position = r.standbys()[0].applied_bytes;
  }
  REQUIRE(Conn(s2).integer("SELECT count(*) FROM blobs") == 3050);
  // The failover: s1 is promoted and begins term 2; applications write there.
  REQUIRE(finalize_standby_for_promotion(s1).ok());
  {
    Conn c(s1);
    REQUIRE(begin_term(c.get(), s1.string(), 2, "s1").ok());
  }
  add_rows(s1, 4000, 20);
  // s3 went its own way: another term begun from the same point, with rows s1 lacks.
  {
    Conn c(s3);
    REQUIRE(begin_term(c.get(), s3.string(), 3, "rogue").ok());
    c.exec("INSERT INTO blobs(id, data) VALUES (9999, 'mine')");
  }
  const auto s3_before = dump_db(s3);
  const auto s2_inode = inode(s2);
  const auto size = fs::file_size(s1);
  REQUIRE(size > 5'000'000);

  ReplicatorOptions o = quick();
  o.node = "s1";
  o.term = 2;
  o.base_bytes = s1_position;
  SqliteReplicator r(s1, {s2, s3}, o);
  StepReport rep;
  REQUIRE(r.start(&rep).ok());
  std::string notes;
  for (auto& n : rep.notes) notes += n + "\n";
  for (auto& n : rep.warnings) notes += n + "\n";
  INFO(notes);
  auto st = r.standbys();
  // s2 continues: same file, only the pages that differ rewritten, equal to the new primary.
  CHECK(st[0].seeded);
  CHECK(st[0].incremental_seeds == 1);
  CHECK(st[0].full_seeds == 0);
  CHECK(st[0].seed_bytes_written > 0);
  CHECK(st[0].seed_bytes_written < size / 10);
  CHECK(inode(s2) == s2_inode);
  CHECK(integrity(s2) == "ok");
  CHECK(dump_db(s2) == dump_db(s1));
  CHECK(notes.find("rewriting") != std::string::npos);
  // Positions continue from the promoted standby's instead of starting again at 0.
  CHECK(st[0].applied_bytes >= s1_position);
  // s3 diverged: refused, untouched.
  CHECK_FALSE(st[1].seeded);
  CHECK(st[1].refused.find("diverges") != std::string::npos);
  CHECK(dump_db(s3) == s3_before);
  // And s2 follows the new primary from there.
  add_rows(s1, 5000, 10);
  step_n(r);
  CHECK(dump_db(s2) == dump_db(s1));
  CHECK(r.standbys()[0].full_seeds == 0);
}

TEST_CASE("an incremental seed rebuilds the snapshot from the file and the WAL, including a shrunken database",
          "[replication][incremental]") {
  TempDir dir{"drd-incr2"};
  const auto p = dir / "primary.db", s = dir / "s.db";
  {
    Conn c(p);
    c.exec("PRAGMA journal_mode=WAL");
    c.exec("CREATE TABLE blobs(id INTEGER PRIMARY KEY, data BLOB)");
  }
  add_rows(p, 1, 1500);
  {
    SqliteReplicator r(p, {s}, quick());
    REQUIRE(r.start().ok());
    step_n(r);
  }
  // While drd is away an application deletes, vacuums (the file shrinks) and writes again,
  // and its checkpoints restart the WAL: the standby's position no longer matches.
  Conn keep(p);  // keeps the WAL from being deleted when the writer closes
  {
    Conn app(p);
    app.exec("DELETE FROM blobs WHERE id > 700");
    app.exec("VACUUM");
    app.exec("PRAGMA wal_checkpoint(TRUNCATE)");
    app.exec("UPDATE blobs SET data = randomblob(300) WHERE id % 7 = 0");
    app.exec("INSERT INTO blobs(id, data) VALUES (20000, 'late')");
  }
  const auto s_inode = inode(s);
  const auto before_size = fs::file_size(s);
  SqliteReplicator r(p, {s}, quick());
  StepReport rep;
  REQUIRE(r.start(&rep).ok());
  std::string notes;
  for (auto& n : rep.notes) notes += n + "\n";
  INFO(notes);
  auto st = r.standbys();
  CHECK(st[0].incremental_seeds == 1);
  CHECK(st[0].full_seeds == 0);
  CHECK(inode(s) == s_inode);
  CHECK(fs::file_size(s) < before_size);
  CHECK(integrity(s) == "ok");
  CHECK(dump_db(s) == dump_db(p));
  // Seeding an equal file writes nothing.
  r.stop();
  fs::remove(position_path(s));  // not trusted: a full copy, never in place
  SqliteReplicator r2(p, {s}, quick());
  REQUIRE(r2.start().ok());
  CHECK(r2.standbys()[0].full_seeds == 1);
  CHECK(inode(s) != s_inode);
  CHECK(dump_db(s) == dump_db(p));
}
