// Backup catalog on a real SQLite state database, and scanning a backup folder.
#include <catch2/catch.hpp>

#include "daemon/backup/catalog.hpp"
#include "daemon/backup/sqlite_backup.hpp"
#include "tests/backup/helpers.hpp"
#include "tests/backup/sqlite_fixture.hpp"
#include "tests/support/temp_dir.hpp"

using namespace drd;
using namespace drd::backup;
using namespace drd::backup::test;
using drd::test::TempDir;
namespace fs = std::filesystem;

namespace {
Manifest make_backup_at(const BackupSettings& s, const fs::path& src, SysTime t, const std::string& node) {
  NewBackup n;
  n.node = node;
  n.now = t;
  auto m = backup_sqlite(s, src, n);
  if (!m) throw std::runtime_error(m.error().message);
  return m.value();
}
}  // namespace

TEST_CASE("catalog: insert, list newest first, get, mark verified, remove", "[catalog]") {
  TempDir dir("drd-bk-cat");
  make_image_db(dir / "db", 200);
  BackupSettings s;
  s.directory = dir / "backups";
  auto t0 = SysTime(std::chrono::seconds(1'790'000'000));
  auto a = make_backup_at(s, dir / "db", t0, "primary");
  auto b = make_backup_at(s, dir / "db", t0 + std::chrono::hours(6), "secondary1");

  sqlite3* db = open_db(dir / "state.db");
  exec_or_throw(db, catalog_schema_sql());
  exec_or_throw(db, catalog_schema_sql());  // idempotent
  REQUIRE(catalog_insert(db, a, s.directory).ok());
  REQUIRE(catalog_insert(db, b, s.directory).ok());
  auto dup = catalog_insert(db, a, s.directory);
  REQUIRE_FALSE(dup.ok());
  CHECK(dup.error().code == Errc::conflict);

  auto list = catalog_list(db);
  REQUIRE(list.ok());
  REQUIRE(list->size() == 2);
  CHECK(list.value()[0].manifest.id == b.id);
  CHECK(list.value()[1].manifest.id == a.id);
  CHECK_FALSE(list.value()[0].verified.has_value());
  CHECK(list.value()[0].manifest.file_sha256 == b.file_sha256);
  CHECK(fs::exists(list.value()[0].data_file()));

  REQUIRE(catalog_mark_verified(db, a.id, true, t0 + std::chrono::hours(1), "").ok());
  REQUIRE(catalog_mark_verified(db, b.id, false, t0 + std::chrono::hours(7), "file_sha256: mismatch").ok());
  auto ga = catalog_get(db, a.id);
  REQUIRE(ga.ok());
  CHECK(ga->verified == std::optional<bool>(true));
  CHECK(ga->verified_at == std::optional<SysTime>(t0 + std::chrono::hours(1)));
  auto gb = catalog_get(db, b.id);
  CHECK(gb->verified == std::optional<bool>(false));
  CHECK(gb->verify_detail == "file_sha256: mismatch");

  auto j = backup_to_json(ga.value());
  for (const char* k : {"id", "name", "node", "engine", "kind", "created_at", "size_bytes", "source_bytes", "encrypted",
                        "verified", "path"})
    CHECK(j.contains(k));
  CHECK(j["verified"].as_bool());
  CHECK(j["kind"].as_string() == "full");
  CHECK(j["created_at"].as_string() == format_time_utc(t0));
  CHECK(j["path"].as_string() == fs::absolute(s.directory / a.data_file).lexically_normal().string());
  CHECK(backup_to_json(list.value()[0])["verified"].is_null());  // listed before verification

  CHECK(catalog_get(db, "nope").error().code == Errc::not_found);
  CHECK(catalog_mark_verified(db, "nope", true, t0, "").error().code == Errc::not_found);
  REQUIRE(catalog_remove(db, a.id).ok());
  CHECK(catalog_remove(db, a.id).error().code == Errc::not_found);
  CHECK(catalog_list(db)->size() == 1);
  sqlite3_close(db);
}

TEST_CASE("scan_directory reads manifests, skips broken ones with a reason", "[catalog]") {
  TempDir dir("drd-bk-cat");
  make_image_db(dir / "db", 100);
  BackupSettings s;
  s.directory = dir / "backups";
  auto t0 = SysTime(std::chrono::seconds(1'790'000'000));
  auto a = make_backup_at(s, dir / "db", t0, "primary");
  auto b = make_backup_at(s, dir / "db", t0 + std::chrono::minutes(1), "primary");
  auto c = make_backup_at(s, dir / "db", t0 + std::chrono::minutes(2), "primary");
  fs::remove(s.directory / c.data_file);
  drd::test::write_file(s.directory / "junk.manifest.json", "{not json");
  std::vector<std::string> problems;
  auto found = scan_directory(s.directory, &problems);
  REQUIRE(found.size() == 2);
  CHECK(found[0].manifest.id == b.id);
  CHECK(found[1].manifest.id == a.id);
  REQUIRE(problems.size() == 2);
  std::string all = problems[0] + "\n" + problems[1];
  CHECK_THAT(all, Catch::Contains("junk.manifest.json") && Catch::Contains(c.id + " is missing"));

  REQUIRE(remove_backup_files(s.directory, a).ok());
  CHECK_FALSE(fs::exists(s.directory / a.data_file));
  CHECK(scan_directory(s.directory).size() == 1);
}
