// Replication on real SQLite files: every test ends with each standby equal to
// the primary row for row and passing PRAGMA integrity_check.
#include <catch2/catch.hpp>

#include <atomic>
#include <fstream>
#include <iterator>
#include <thread>

#include "daemon/engines/sqlite/replication/position_file.hpp"
#include "daemon/engines/sqlite/replication/sqlite_replicator.hpp"
#include "daemon/engines/sqlite/replication/wal_reader.hpp"
#include "tests/replication/db_helpers.hpp"
#include "tests/support/temp_dir.hpp"

using namespace drd::replication;
using drd::test::Conn;
using drd::test::dump_db;
using drd::test::integrity;
using drd::test::TempDir;
namespace fs = std::filesystem;

namespace {

struct Fixture {
  TempDir dir{"drd-repl"};
  fs::path primary = dir / "primary.db";
  fs::path s1 = dir / "standby1.db";
  fs::path s2 = dir / "sub/standby2.db";

  Fixture() {
    Conn c(primary);
    c.exec("PRAGMA journal_mode=WAL");
    c.exec("CREATE TABLE items(id INTEGER PRIMARY KEY, name TEXT, n INTEGER)");
    c.exec("INSERT INTO items(name, n) VALUES ('a', 1), ('b', 2)");
  }

  void expect_equal(const fs::path& standby) {
    INFO("standby " << standby);
    REQUIRE(integrity(standby) == "ok");
    REQUIRE(dump_db(standby) == dump_db(primary));
  }

  void step_and_check(SqliteReplicator& r) {
    auto rep = r.step();
    REQUIRE(rep.ok());
    for (auto& st : r.standbys()) {
      INFO(st.path << " error: " << st.last_error);
      REQUIRE(st.last_error.empty());
      REQUIRE(st.seeded);
      REQUIRE(st.lag_bytes == 0);
      REQUIRE(st.lag_ms == 0);
    }
    expect_equal(s1);
    expect_equal(s2);
  }
};

bool has_note(const StepReport& r, const std::string& word) {
  for (auto& n : r.notes)
    if (n.find(word) != std::string::npos) return true;
  return false;
}

}  // namespace

TEST_CASE("missing standbys are seeded and follow inserts, updates and deletes", "[replication]") {
  Fixture f;
  SqliteReplicator r(f.primary, {f.s1, f.s2});
  StepReport rep;
  REQUIRE(r.start(&rep).ok());
  CHECK(has_note(rep, "seeded standby"));
  f.expect_equal(f.s1);
  CHECK(fs::exists(position_path(f.s1)));
  Conn app(f.primary);
  for (int round = 0; round < 5; ++round) {
    app.exec("INSERT INTO items(name, n) SELECT 'x' || value, value FROM (WITH RECURSIVE s(value) AS (SELECT 1 UNION ALL SELECT value + 1 FROM s WHERE value < 50) SELECT value FROM s)");
    app.exec("UPDATE items SET n = n * 2 WHERE id % 3 = 0");
    app.exec("DELETE FROM items WHERE id % 7 = 0");
    auto st = r.standbys();
    REQUIRE(r.step().ok());
    f.step_and_check(r);
    CHECK(r.standbys()[0].applied_bytes == r.primary_wal_end_bytes());
  }
  // Lag is visible before a step.
  app.exec("INSERT INTO items(name, n) VALUES ('late', 1)");
  REQUIRE(r.step().ok());
  auto before = r.primary_wal_end_bytes();
  app.exec("INSERT INTO items(name, n) VALUES ('later', 2)");
  CHECK(r.primary_wal_end_bytes() == before);  // not seen until the next step
  CHECK(r.standbys()[0].reseeds == 0);
}

TEST_CASE("schema changes, a large transaction and VACUUM replicate", "[replication]") {
  Fixture f;
  SqliteReplicator r(f.primary, {f.s1, f.s2});
  REQUIRE(r.start().ok());
  Conn app(f.primary);
  app.exec("CREATE TABLE t2(k TEXT PRIMARY KEY, v BLOB)");
  app.exec("CREATE INDEX items_n ON items(n)");
  f.step_and_check(r);
  // > 1000 pages of 4 KiB in one transaction.
  app.exec("INSERT INTO t2 SELECT 'k' || value, randomblob(3000) FROM (WITH RECURSIVE s(value) AS (SELECT 1 UNION ALL SELECT value + 1 FROM s WHERE value < 2000) SELECT value FROM s)");
  auto rep = r.step();
  REQUIRE(rep.ok());
  CHECK(rep->frames > 1000);
  CHECK(rep->transactions == 1);
  f.step_and_check(r);
  app.exec("DROP INDEX items_n");
  app.exec("DELETE FROM t2 WHERE rowid % 2 = 0");
  app.exec("DROP TABLE items");
  f.step_and_check(r);
  app.exec("VACUUM");
  f.step_and_check(r);
  Conn p(f.primary), s(f.s1, 5000, true);
  CHECK(s.integer("PRAGMA page_count") == p.integer("PRAGMA page_count"));
}

TEST_CASE("application checkpoints of every mode between steps", "[replication]") {
  Fixture f;
  SqliteReplicator r(f.primary, {f.s1, f.s2});
  REQUIRE(r.start().ok());
  Conn app(f.primary, 50);  // short busy timeout: drd's pin makes blocking modes give up
  for (const char* mode : {"PASSIVE", "FULL", "RESTART", "TRUNCATE"}) {
    INFO(mode);
    app.exec("INSERT INTO items(name, n) SELECT 'm' || value, value FROM (WITH RECURSIVE s(value) AS (SELECT 1 UNION ALL SELECT value + 1 FROM s WHERE value < 100) SELECT value FROM s)");
    app.exec(std::string("PRAGMA wal_checkpoint(") + mode + ")");
    app.exec("UPDATE items SET n = n + 1");
    app.exec(std::string("PRAGMA wal_checkpoint(") + mode + ")");
    f.step_and_check(r);
    REQUIRE(r.checkpoint(false).ok());
    // Right after drd's checkpoint the WAL is fully backfilled, so the
    // application's checkpoint can really restart/truncate it now.
    app.exec(std::string("PRAGMA wal_checkpoint(") + mode + ")");
    app.exec("DELETE FROM items WHERE id % 5 = 0");
    app.exec(std::string("PRAGMA wal_checkpoint(") + mode + ")");
    f.step_and_check(r);
  }
  for (auto& st : r.standbys()) CHECK(st.reseeds == 0);
}

TEST_CASE("drd's own TRUNCATE checkpoint shrinks the WAL and replication continues", "[replication]") {
  Fixture f;
  SqliteReplicator r(f.primary, {f.s1, f.s2});
  REQUIRE(r.start().ok());
  {
    Conn app(f.primary);
    app.exec("INSERT INTO items(name, n) SELECT hex(randomblob(200)), value FROM (WITH RECURSIVE s(value) AS (SELECT 1 UNION ALL SELECT value + 1 FROM s WHERE value < 3000) SELECT value FROM s)");
  }
  f.step_and_check(r);
  auto wal = fs::path(f.primary.string() + "-wal");
  auto big = drd::test::file_size_or_zero(wal);
  REQUIRE(big > 500000);
  REQUIRE(r.checkpoint(true).ok());
  CHECK(drd::test::file_size_or_zero(wal) < 10000);
  f.step_and_check(r);
  Conn app(f.primary);
  app.exec("INSERT INTO items(name, n) VALUES ('after', 1)");
  f.step_and_check(r);
  REQUIRE(r.checkpoint(false).ok());
  app.exec("INSERT INTO items(name, n) VALUES ('after2', 2)");  // restarts the WAL (expected)
  f.step_and_check(r);
  for (auto& st : r.standbys()) CHECK(st.reseeds == 0);
}

TEST_CASE("a concurrent writer thread with periodic drd checkpoints", "[replication]") {
  Fixture f;
  SqliteReplicator r(f.primary, {f.s1, f.s2});
  REQUIRE(r.start().ok());
  std::atomic<bool> stop{false};
  std::atomic<int> commits{0};
  std::thread writer([&] {
    Conn app(f.primary, 5000);
    int i = 0;
    while (!stop) {
      app.exec("BEGIN IMMEDIATE");
      app.exec("INSERT INTO items(name, n) VALUES ('w" + std::to_string(i) + "', " + std::to_string(i) + ")");
      if (i % 10 == 0) app.exec("UPDATE items SET n = n + 1 WHERE id % 10 = " + std::to_string(i % 10));
      if (i % 25 == 0) app.exec("DELETE FROM items WHERE id % 13 = 0");
      app.exec("COMMIT");
      ++i;
      commits = i;
      // A realistic writer pauses between transactions; SQLite's busy
      // handler is not fair, so a writer in a tight loop can starve drd's
      // BEGIN IMMEDIATE (it then reports a conflict and the caller retries).
      std::this_thread::sleep_for(std::chrono::microseconds(300));
    }
  });
  struct Joiner {
    std::atomic<bool>& stop;
    std::thread& t;
    ~Joiner() {
      stop = true;
      if (t.joinable()) t.join();
    }
  } joiner{stop, writer};
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(1500);
  int steps = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    auto rep = r.step();
    INFO((rep.ok() ? std::string() : rep.error().message));
    REQUIRE(rep.ok());
    if (++steps % 20 == 0) {
      auto cs = r.checkpoint(steps % 40 == 0);
      INFO((cs.ok() ? std::string() : cs.error().message));
      REQUIRE(cs.ok());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  stop = true;
  writer.join();
  CHECK(commits > 50);
  f.step_and_check(r);
  for (auto& st : r.standbys()) CHECK(st.reseeds == 0);
}

TEST_CASE("a restarted replicator continues from the position files without re-seeding", "[replication]") {
  Fixture f;
  Conn app(f.primary);
  {
    SqliteReplicator r(f.primary, {f.s1, f.s2});
    REQUIRE(r.start().ok());
    app.exec("INSERT INTO items(name, n) SELECT 'r' || value, value FROM (WITH RECURSIVE s(value) AS (SELECT 1 UNION ALL SELECT value + 1 FROM s WHERE value < 100) SELECT value FROM s)");
    f.step_and_check(r);
    app.exec("UPDATE items SET n = 0 WHERE id < 10");  // not shipped before stop
    r.stop();
  }
  app.exec("INSERT INTO items(name, n) VALUES ('while down', 7)");
  SqliteReplicator r2(f.primary, {f.s1, f.s2});
  StepReport rep;
  REQUIRE(r2.start(&rep).ok());
  CHECK_FALSE(rep.reseeded);
  CHECK_FALSE(has_note(rep, "seed"));
  f.step_and_check(r2);
  app.exec("DELETE FROM items WHERE n = 0");
  f.step_and_check(r2);
}

TEST_CASE("a WAL reset drd did not see is detected and answered by re-seeding", "[replication]") {
  Fixture f;
  {
    SqliteReplicator r(f.primary, {f.s1, f.s2});
    REQUIRE(r.start().ok());
    Conn app(f.primary);
    app.exec("INSERT INTO items(name, n) SELECT 'u' || value, value FROM (WITH RECURSIVE s(value) AS (SELECT 1 UNION ALL SELECT value + 1 FROM s WHERE value < 100) SELECT value FROM s)");
    f.step_and_check(r);
    r.stop();
    // drd is down: the application checkpoints and restarts the WAL; the
    // frames written in between are gone from the WAL.
    app.exec("UPDATE items SET n = -1");
    app.exec("PRAGMA wal_checkpoint(TRUNCATE)");
    app.exec("INSERT INTO items(name, n) VALUES ('new generation', 1)");
  }
  INFO("wal size before restart " << drd::test::file_size_or_zero(f.primary.string() + "-wal"));
  SqliteReplicator r2(f.primary, {f.s1, f.s2});
  StepReport rep;
  REQUIRE(r2.start(&rep).ok());
  std::string notes;
  for (auto& n : rep.notes) notes += n + "\n";
  INFO(notes);
  CHECK(rep.reseeded);
  CHECK(has_note(rep, "does not match"));
  f.step_and_check(r2);
  for (auto& st : r2.standbys()) CHECK(st.reseeds == 1);
}

TEST_CASE("a primary file replaced by a copy of itself is a lost primary: standbys keep what they have",
          "[replication]") {
  // Even at the same stamp the copy may lack the newest commits (history_replication_test.cpp
  // has the other replacements).
  Fixture f;
  SqliteReplicator r(f.primary, {f.s1, f.s2});
  REQUIRE(r.start().ok());
  f.step_and_check(r);
  const auto before = dump_db(f.s1);
  auto other = f.dir / "other.db";
  {
    Conn c(f.primary);
    c.exec("VACUUM INTO '" + other.string() + "'");
  }
  {
    Conn c(other);
    c.exec("PRAGMA journal_mode=WAL");
    c.exec("INSERT INTO items(name, n) VALUES ('only in the copy', 42)");
  }
  fs::rename(other, f.primary);
  fs::remove(fs::path(f.primary.string() + "-wal"));
  fs::remove(fs::path(f.primary.string() + "-shm"));
  auto rep = r.step();
  REQUIRE(rep.ok());
  CHECK_FALSE(r.primary_lost().empty());
  CHECK_FALSE(rep->reseeded);
  CHECK(dump_db(f.s1) == before);
  CHECK(dump_db(f.s2) == before);
}

TEST_CASE("a primary in rollback-journal mode is switched to WAL", "[replication]") {
  TempDir dir{"drd-repl"};
  auto primary = dir / "p.db";
  {
    Conn c(primary);
    c.exec("PRAGMA journal_mode=DELETE");
    c.exec("CREATE TABLE t(x)");
    c.exec("INSERT INTO t VALUES (1), (2)");
  }
  SqliteReplicator r(primary, {dir / "s.db"});
  StepReport rep;
  REQUIRE(r.start(&rep).ok());
  CHECK(has_note(rep, "switched it to WAL"));
  Conn app(primary);
  CHECK(app.text("PRAGMA journal_mode") == "wal");
  app.exec("INSERT INTO t VALUES (3)");
  REQUIRE(r.step().ok());
  CHECK(dump_db(dir / "s.db") == dump_db(primary));
  CHECK(integrity(dir / "s.db") == "ok");
}

TEST_CASE("a damaged position file or an empty standby leads to a seed", "[replication]") {
  Fixture f;
  {
    SqliteReplicator r(f.primary, {f.s1, f.s2});
    REQUIRE(r.start().ok());
    r.stop();
  }
  drd::test::write_file(position_path(f.s1), "garbage\n");
  drd::test::write_file(f.s2, "");
  SqliteReplicator r(f.primary, {f.s1, f.s2});
  StepReport rep;
  REQUIRE(r.start(&rep).ok());
  CHECK(rep.reseeded);
  f.step_and_check(r);
}

TEST_CASE("a commit a dying writer wrote but SQLite never published is taken back from the standbys",
          "[replication][crash]") {
  // A writer killed after writing its transaction's commit frame, before publishing it in the
  // WAL index: the frames verify, drd reads and ships them, but to SQLite they are no commit
  // and the next writer writes over them (found by the chaos suite, writer-kill9).
  Fixture f;
  SqliteReplicator r(f.primary, {f.s1, f.s2});
  REQUIRE(r.start().ok());
  Conn app(f.primary);
  app.exec("INSERT INTO items(name, n) VALUES ('before', 1)");
  f.step_and_check(r);
  app.exec("INSERT INTO items(name, n) VALUES ('before 2', 2)");  // the WAL has a header and frames

  // The dying writer's frames: made on a copy of the two files (the same WAL, so they chain
  // on where the primary's published frames end) and written into the primary's WAL at that
  // place, without touching its -shm, as the killed writer left them.
  const fs::path wal = f.primary.string() + "-wal";
  auto wf = WalFile::open(wal);
  REQUIRE(wf.ok());
  auto hdr = wf->read_header();
  REQUIRE(hdr.ok());
  REQUIRE(hdr->has_value());
  auto published = wf->scan(chain_start(**hdr));
  REQUIRE(published.ok());
  const std::uint64_t frame_bytes = 24 + (*hdr)->page_size;
  const std::uint64_t end = 32 + std::uint64_t(published->committed.frames) * frame_bytes;
  const fs::path scratch = f.dir / "scratch";
  fs::create_directories(scratch);
  fs::copy_file(f.primary, scratch / "primary.db");
  fs::copy_file(wal, scratch / "primary.db-wal");
  std::string ghost_frames;
  {
    Conn ghost(scratch / "primary.db");
    ghost.exec("INSERT INTO items(name, n) VALUES ('never committed', 99)");
    std::ifstream in(scratch / "primary.db-wal", std::ios::binary);
    std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    REQUIRE(all.size() > end);
    ghost_frames = all.substr(end);
  }
  {
    std::fstream out(wal, std::ios::binary | std::ios::in | std::ios::out);
    out.seekp(static_cast<std::streamoff>(end));
    out.write(ghost_frames.data(), static_cast<std::streamsize>(ghost_frames.size()));
  }
  // drd reads and ships them: the standbys now hold a row the primary does not.
  REQUIRE(r.step().ok());
  CHECK(Conn(f.s1, 5000, true).integer("SELECT count(*) FROM items WHERE name = 'never committed'") == 1);
  CHECK(Conn(f.primary).integer("SELECT count(*) FROM items WHERE name = 'never committed'") == 0);

  // The next writer writes over them; drd notices under its write lock and takes them back.
  app.exec("INSERT INTO items(name, n) VALUES ('after', 3)");
  REQUIRE(r.checkpoint(false).ok());
  f.step_and_check(r);
  CHECK(Conn(f.s1, 5000, true).integer("SELECT count(*) FROM items WHERE name = 'never committed'") == 0);
  CHECK(Conn(f.s2, 5000, true).integer("SELECT count(*) FROM items WHERE name = 'after'") == 1);
  // And replication goes on.
  app.exec("INSERT INTO items(name, n) VALUES ('later', 4)");
  f.step_and_check(r);
}
