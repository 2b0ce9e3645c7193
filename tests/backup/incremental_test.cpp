// SQLite WAL segments and point-in-time restore on real files.
#include <catch2/catch.hpp>

#include "daemon/backup/incremental.hpp"
#include "tests/backup/helpers.hpp"
#include "tests/backup/sqlite_fixture.hpp"
#include "tests/support/temp_dir.hpp"

using namespace drd;
using namespace drd::backup;
using namespace drd::backup::test;
using drd::test::TempDir;
namespace fs = std::filesystem;

namespace {
constexpr std::uint32_t kPage = 4096;

// The frames that turn database image `from` into `to`: every differing page, the last one a
// commit frame carrying `to`'s size — what the replication engine would hand over.
std::vector<WalFrame> diff_frames(const std::vector<std::uint8_t>& from, const std::vector<std::uint8_t>& to) {
  std::vector<WalFrame> out;
  std::uint32_t pages = static_cast<std::uint32_t>(to.size() / kPage);
  for (std::uint32_t p = 0; p < pages; ++p) {
    bool same = (p + 1) * kPage <= from.size() &&
                std::equal(to.begin() + p * kPage, to.begin() + (p + 1) * kPage, from.begin() + p * kPage);
    if (!same) out.push_back(WalFrame{p + 1, 0, std::vector<std::uint8_t>(to.begin() + p * kPage, to.begin() + (p + 1) * kPage)});
  }
  if (out.empty() || out.back().page_no != 1)  // page 1 always changes; make the commit frame explicit
    out.push_back(WalFrame{1, 0, std::vector<std::uint8_t>(to.begin(), to.begin() + kPage)});
  out.back().commit_db_size = pages;
  return out;
}

// Source database file bytes after folding its WAL in.
std::vector<std::uint8_t> checkpointed(const fs::path& db) {
  sqlite3* h = open_db(db);
  exec_or_throw(h, "PRAGMA wal_checkpoint(TRUNCATE)");
  sqlite3_close(h);
  return slurp(db);
}
}  // namespace

TEST_CASE("WAL segments restore to a point in time", "[incremental]") {
  TempDir dir("drd-bk-incr");
  MasterKey key = test_key();
  fs::path src = dir / "images.db";
  make_image_db(src, 3000);
  BackupSettings s;
  s.directory = dir / "backups";
  s.key.emplace(key);
  NewBackup nb;
  nb.node = "primary";
  nb.now = parse_time_utc("2026-11-24T00:00:00Z").value();
  auto full = backup_sqlite(s, src, nb);
  REQUIRE(full.ok());
  auto ref = resolve_backup(manifest_path(s.directory, full->id)).value();

  // The full's own image, as the base of the first diff.
  REQUIRE(restore_sqlite(ref, dir / "base.db", RestoreOptions{false, &key}).ok());
  auto img0 = slurp(dir / "base.db");
  auto rows0 = read_rows(dir / "base.db");

  sqlite3* db = open_db(src);
  insert_rows(db, 100000, 2000);
  exec_or_throw(db, "UPDATE images SET size = size + 1 WHERE id % 10 = 0");
  sqlite3_close(db);
  auto img1 = checkpointed(src);
  auto rows1 = read_rows(src);
  db = open_db(src);
  exec_or_throw(db, "DELETE FROM images WHERE id < 2500");
  sqlite3_close(db);
  auto img2 = checkpointed(src);
  auto rows2 = read_rows(src);
  REQUIRE(rows1 != rows0);
  REQUIRE(rows2 != rows1);

  auto t1 = parse_time_utc("2026-11-24T01:00:00Z").value(), t2 = parse_time_utc("2026-11-24T02:00:00Z").value();
  auto s1 = append_wal_segment(s, full->id, kPage, diff_frames(img0, img1), t1);
  INFO((s1.ok() ? "" : s1.error().message));
  REQUIRE(s1.ok());
  CHECK(s1->n == 1);
  auto s2 = append_wal_segment(s, full->id, kPage, diff_frames(img1, img2), t2);
  REQUIRE(s2.ok());
  CHECK(s2->n == 2);
  CHECK(fs::exists(s.directory / full->id / "seg-2.json"));
  CHECK(list_segments(s.directory, full->id)->size() == 2);

  struct Row {
    const char* to;
    std::uint64_t applied;
    const std::vector<drd::backup::test::Row>* rows;
  };
  for (auto& r : std::vector<Row>{{"2026-11-24T00:30:00Z", 0, &rows0},
                                  {"2026-11-24T01:00:00Z", 1, &rows1},
                                  {"2026-11-24T01:59:59Z", 1, &rows1},
                                  {"2026-11-24T02:00:00Z", 2, &rows2}}) {
    INFO("to_time " << r.to);
    fs::path target = dir / (std::string("pitr-") + r.to + ".db");
    auto res = restore_sqlite_to_time(ref, target, parse_time_utc(r.to).value(), RestoreOptions{false, &key});
    INFO((res.ok() ? "" : res.error().message));
    REQUIRE(res.ok());
    CHECK(res->applied_segments == r.applied);
    CHECK(read_rows(target) == *r.rows);
  }

  // After the last segment the WAL is not archived: an error naming the window's end.
  auto late = restore_sqlite_to_time(ref, dir / "late.db", parse_time_utc("2026-11-24T09:00:00Z").value(), RestoreOptions{false, &key});
  REQUIRE_FALSE(late.ok());
  CHECK_THAT(late.error().message, Catch::Contains("is missing") && Catch::Contains("2026-11-24T02:00:00"));
  CHECK_FALSE(fs::exists(dir / "late.db"));

  auto early = restore_sqlite_to_time(ref, dir / "x.db", parse_time_utc("2026-11-23T00:00:00Z").value(), RestoreOptions{false, &key});
  REQUIRE_FALSE(early.ok());
  CHECK_THAT(early.error().message, Catch::Contains("before backup"));

  // A damaged segment fails the restore and leaves no target.
  auto bytes = slurp(s2->path);
  bytes[bytes.size() / 2] ^= 1;
  spit(s2->path, bytes);
  auto bad = restore_sqlite_to_time(ref, dir / "bad.db", t2, RestoreOptions{false, &key});
  REQUIRE_FALSE(bad.ok());
  CHECK_THAT(bad.error().message, Catch::Contains("seg-2"));
  CHECK_FALSE(fs::exists(dir / "bad.db"));
}

TEST_CASE("append_wal_segment validates its input", "[incremental]") {
  TempDir dir("drd-bk-incr");
  BackupSettings s;
  s.directory = dir / "backups";
  fs::create_directories(s.directory);
  SysTime t{};
  std::vector<WalFrame> ok_frames{WalFrame{1, 1, std::vector<std::uint8_t>(kPage)}};
  CHECK(append_wal_segment(s, "nope", kPage, ok_frames, t).error().code == Errc::not_found);
  make_image_db(dir / "db", 10);
  auto full = backup_sqlite(s, dir / "db", NewBackup{});
  REQUIRE(full.ok());
  CHECK_THAT(append_wal_segment(s, full->id, kPage, {WalFrame{1, 0, std::vector<std::uint8_t>(kPage)}}, t).error().message,
             Catch::Contains("commit frame"));
  CHECK_THAT(append_wal_segment(s, full->id, kPage, {WalFrame{1, 1, std::vector<std::uint8_t>(100)}}, t).error().message,
             Catch::Contains("page size 4096"));
  CHECK(append_wal_segment(s, full->id, kPage, {}, t).error().code == Errc::invalid_argument);
}
