// Crash safety of applying a batch to a standby: a crash while the standby's
// WAL is being written leaves a prefix of it on disk. Whatever the prefix,
// the standby must open as a valid database equal to the primary as of some
// commit, and re-applying the batch afterwards must give the final state.
#include <catch2/catch.hpp>

#include <fstream>
#include <random>
#include <set>
#include <vector>

#include "daemon/engines/sqlite/replication/position_file.hpp"
#include "daemon/engines/sqlite/replication/sqlite_replicator.hpp"
#include "daemon/engines/sqlite/replication/standby_ops.hpp"
#include "daemon/engines/sqlite/replication/wal_reader.hpp"
#include "daemon/engines/sqlite/replication/wal_writer.hpp"
#include "tests/replication/db_helpers.hpp"
#include "tests/support/temp_dir.hpp"

using namespace drd::replication;
using drd::test::Conn;
using drd::test::dump_db;
using drd::test::TempDir;
namespace fs = std::filesystem;

namespace {

void copy_prefix(const fs::path& from, const fs::path& to, std::uintmax_t bytes) {
  std::ifstream in(from, std::ios::binary);
  std::vector<char> buf(bytes);
  in.read(buf.data(), static_cast<std::streamsize>(bytes));
  std::ofstream out(to, std::ios::binary | std::ios::trunc);
  out.write(buf.data(), in.gcount());
}

void fresh_copy(const fs::path& from, const fs::path& to) {
  for (const char* suf : {"", "-wal", "-shm"}) fs::remove(fs::path(to.string() + suf));
  fs::copy_file(from, to);
}

struct Batch {
  fs::path wal;
  std::uint32_t frames = 0;
};

// The committed frames after the standby's position, written the way drd
// writes them (fresh header and salts, recomputed checksums).
Batch write_batch(const fs::path& primary, const fs::path& standby, const fs::path& out, bool big_endian) {
  auto pos = load_position(standby);
  REQUIRE(pos.ok());
  REQUIRE(pos->has_value());
  auto wal = WalFile::open(fs::path(primary.string() + "-wal"));
  REQUIRE(wal.ok());
  auto scan = wal->scan((*pos)->chain);
  REQUIRE(scan.ok());
  auto w = StandaloneWalWriter::create(out, (*pos)->chain.page_size, big_endian);
  REQUIRE(w.ok());
  REQUIRE(wal->read_frames((*pos)->chain, scan->committed.frames, [&](const FrameHeader& fh, const unsigned char* p) {
                return w->append(fh.page, fh.commit_size, p);
              }).ok());
  REQUIRE(w->finish().ok());
  return {out, w->frames()};
}

}  // namespace

TEST_CASE("a standby WAL cut at any offset leaves the standby valid and equal to an earlier commit",
          "[replication][crash]") {
  TempDir dir{"drd-crash"};
  auto primary = dir / "p.db", standby = dir / "s.db";
  Conn app(primary);  // stays open: its close must not checkpoint the WAL away
  app.exec("PRAGMA journal_mode=WAL");
  app.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)");
  app.exec("INSERT INTO t(v) VALUES ('seed')");
  // Started (so the standby is seeded and the WAL pinned), then never stepped:
  // the test applies the batch itself. The first write after start restarts
  // the (fully checkpointed) WAL; one step moves the position to the new generation.
  SqliteReplicator r(primary, {standby});
  REQUIRE(r.start().ok());
  app.exec("INSERT INTO t(v) VALUES ('first')");
  REQUIRE(r.step().ok());
  std::vector<std::string> states{dump_db(primary)};
  // Every statement is its own transaction: record the state after each commit.
  auto commit = [&](const std::string& sql) {
    app.exec(sql);
    states.push_back(dump_db(primary));
  };
  for (int i = 0; i < 8; ++i) {
    commit("INSERT INTO t(v) SELECT hex(randomblob(100)) FROM t");  // doubles, spans many pages
    commit("UPDATE t SET v = 'u" + std::to_string(i) + "' WHERE id % 3 = " + std::to_string(i % 3));
    if (i == 5) commit("DELETE FROM t WHERE id > 40");  // shrinks the database
    if (i == 6) commit("CREATE TABLE extra(x)");
  }
  const std::set<std::string> valid(states.begin(), states.end());
  const bool big_endian = GENERATE(true, false);
  auto batch = write_batch(primary, standby, dir / "batch.wal", big_endian);
  REQUIRE(batch.frames > 8);
  const auto total = fs::file_size(batch.wal);
  const auto page = read_db_header(standby)->page_size;

  std::vector<std::uintmax_t> cuts{0, 1, 31, 32, 33, 32 + 24, 32 + 24 + page, 32 + 24 + page + 1, total - 1, total};
  std::mt19937 rng(12345);
  for (int i = 0; i < 30; ++i) cuts.push_back(std::uniform_int_distribution<std::uintmax_t>(0, total)(rng));

  auto trial = dir / "trial.db";
  std::size_t seen_intermediate = 0;
  for (auto cut : cuts) {
    INFO("WAL cut at " << cut << " of " << total);
    fresh_copy(standby, trial);
    copy_prefix(batch.wal, fs::path(trial.string() + "-wal"), cut);
    {
      Conn c(trial);  // plain SQLite open: its WAL recovery decides what counts
      REQUIRE(c.text("PRAGMA integrity_check") == "ok");
    }
    auto d = dump_db(trial);
    REQUIRE(valid.count(d) == 1);
    if (d != states.front() && d != states.back()) ++seen_intermediate;
    if (cut == total) CHECK(d == states.back());
    // drd's restart path: finish the interrupted apply, then apply the whole batch again.
    REQUIRE(recover_standby(trial).ok());
    copy_prefix(batch.wal, fs::path(trial.string() + "-wal"), total);
    REQUIRE(checkpoint_standby(trial, batch.frames).ok());
    CHECK_FALSE(fs::exists(fs::path(trial.string() + "-wal")));
    CHECK(dump_db(trial) == states.back());
    CHECK(drd::test::integrity(trial) == "ok");
  }
  CHECK(seen_intermediate > 0);  // cuts inside the batch did land on earlier commits
}

TEST_CASE("applying the same batch twice gives the same result", "[replication][crash]") {
  TempDir dir{"drd-crash"};
  auto primary = dir / "p.db", standby = dir / "s.db";
  Conn app(primary);
  app.exec("PRAGMA journal_mode=WAL");
  app.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)");
  // Started (so the standby is seeded and the WAL pinned), then never stepped:
  // the test applies the batch itself. The first write after start restarts
  // the (fully checkpointed) WAL; one step moves the position to the new generation.
  SqliteReplicator r(primary, {standby});
  REQUIRE(r.start().ok());
  app.exec("INSERT INTO t(v) VALUES ('first')");
  REQUIRE(r.step().ok());
  app.exec("WITH RECURSIVE s(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM s WHERE x < 500) INSERT INTO t(v) SELECT hex(randomblob(50)) FROM s");
  app.exec("DELETE FROM t WHERE id % 2 = 0");
  auto batch = write_batch(primary, standby, dir / "batch.wal", true);
  auto wal = fs::path(standby.string() + "-wal");
  for (int i = 0; i < 2; ++i) {
    copy_prefix(batch.wal, wal, fs::file_size(batch.wal));
    REQUIRE(checkpoint_standby(standby, batch.frames).ok());
    CHECK(dump_db(standby) == dump_db(primary));
    CHECK(drd::test::integrity(standby) == "ok");
  }
}

TEST_CASE("an apply cut before its commit frame is set aside, not left to block the standby",
          "[replication][crash]") {
  // drd killed while writing a transaction's frames into a standby's WAL: the frames are
  // valid but none commits, so SQLite ignores them and even a TRUNCATE checkpoint leaves
  // the file. recover_standby must clear the way (the position file was not advanced, so
  // they are shipped again) instead of failing on every retry (seen in the chaos suite).
  TempDir dir{"drd-crash"};
  auto db = dir / "s.db";
  {
    Conn c(db);
    c.exec("PRAGMA journal_mode=WAL");
    c.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)");
    c.exec("INSERT INTO t(v) VALUES ('kept')");
  }
  const auto before = dump_db(db);
  const auto page = read_db_header(db)->page_size;
  const fs::path wal = db.string() + "-wal";
  {
    auto w = StandaloneWalWriter::create(wal, page);
    REQUIRE(w.ok());
    std::vector<unsigned char> junk(page, 0xAB);
    for (std::uint32_t p = 2; p <= 4; ++p) REQUIRE(w->append(p, 0, junk.data()).ok());  // no commit frame
    REQUIRE(w->finish().ok());
  }
  REQUIRE(fs::file_size(wal) > 0);
  REQUIRE(recover_standby(db).ok());
  CHECK_FALSE(fs::exists(wal));
  CHECK(fs::exists(db.string() + "-wal.drd-incomplete"));  // kept for an operator, never applied
  CHECK(dump_db(db) == before);
  CHECK(drd::test::integrity(db) == "ok");
}
