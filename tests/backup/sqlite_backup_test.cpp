// SQLite full backup / restore / verify on real files, with a concurrent writer.
#include <sys/mount.h>

#include <catch2/catch.hpp>
#include <cstring>

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

BackupSettings settings(const fs::path& dir, const MasterKey* key = nullptr) {
  BackupSettings s;
  s.directory = dir;
  s.threads = 2;
  if (key) s.key.emplace(*key);
  return s;
}

NewBackup info(const std::string& node = "primary") {
  NewBackup n;
  n.node = node;
  n.name = "test";
  return n;
}

fs::path manifest_of(const fs::path& dir, const Manifest& m) { return manifest_path(dir, m.id); }

// Restored rows must be exactly the source's rows 1..N for some N >= `at_least`: a consistent
// snapshot of an insert-only workload, compared row by row.
void check_snapshot(const fs::path& restored, const fs::path& source, std::size_t at_least) {
  auto got = read_rows(restored);
  auto all = read_rows(source);
  REQUIRE(got.size() >= at_least);
  REQUIRE(got.size() <= all.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    INFO("row " << i);
    REQUIRE(got[i] == all[i]);
  }
}

}  // namespace

TEST_CASE("SQLite backup while a writer keeps inserting restores a consistent snapshot", "[sqlite]") {
  TempDir dir("drd-bk-sqlite");
  MasterKey key = test_key();
  fs::path src = dir / "images.db";
  make_image_db(src, 20000);
  for (bool enc : {false, true}) {
    auto s = settings(dir / (enc ? "enc" : "plain"), enc ? &key : nullptr);
    Writer writer(src, enc ? 2'000'000 : 1'000'000);
    while (writer.batches() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    std::uint64_t last_done = 0;
    auto m = backup_sqlite(s, src, info(), [&](std::uint64_t done, std::uint64_t, const char*) { last_done = done; });
    auto during = writer.batches();
    writer.stop();
    INFO((m.ok() ? "" : m.error().message));
    REQUIRE(m.ok());
    CHECK(during > 1);  // the writer really ran alongside the backup
    CHECK(m->engine == "sqlite");
    CHECK(m->kind == "full");
    CHECK(m->encrypted == enc);
    CHECK(m->key_id == (enc ? key.id() : ""));
    CHECK(m->source_bytes > 3'000'000);
    CHECK(last_done == m->source_bytes);
    CHECK(m->size_bytes < m->source_bytes);  // compressed
    CHECK_THAT(m->source_position, Catch::Contains("wal_salt="));
    CHECK(fs::exists(s.directory / m->data_file));
    CHECK(fs::exists(manifest_of(s.directory, m.value())));
    for (auto& e : fs::directory_iterator(s.directory))  // nothing temporary left
      CHECK(e.path().extension() != ".partial");
    CHECK_FALSE(fs::exists(s.directory / (m->id + ".snapshot.tmp")));

    auto ref = resolve_backup(manifest_of(s.directory, m.value()));
    REQUIRE(ref.ok());
    fs::path target = dir / (enc ? "restored-enc.db" : "restored.db");
    auto r = restore_sqlite(ref.value(), target, RestoreOptions{false, enc ? &key : nullptr});
    INFO((r.ok() ? "" : r.error().message));
    REQUIRE(r.ok());
    CHECK(r->integrity == "ok");
    CHECK_FALSE(fs::exists(target.string() + ".restore-tmp"));
    check_snapshot(target, src, 20000);

    auto rep = verify_backup(ref.value(), enc ? &key : nullptr, dir / "scratch");
    for (auto& c : rep.checks) INFO(c.name << ": " << c.ok << " " << c.detail);
    CHECK(rep.ok);
    CHECK(rep.id == m->id);
    std::vector<std::string> names;
    for (auto& c : rep.checks) names.push_back(c.name);
    CHECK(names == std::vector<std::string>{"manifest", "data_file", "file_sha256", "decrypt", "plaintext_sha256",
                                            "test_restore", "integrity_check"});
  }
}

TEST_CASE("an encrypted SQLite backup contains none of the data", "[sqlite]") {
  TempDir dir("drd-bk-sqlite");
  MasterKey key = test_key();
  fs::path src = dir / "images.db";
  make_image_db(src, 2000);
  auto m = backup_sqlite(settings(dir / "b", &key), src, info());
  REQUIRE(m.ok());
  auto bytes = slurp(dir / "b" / m->data_file);
  std::string marker = "https://img.example.com/cats/";
  CHECK(std::search(bytes.begin(), bytes.end(), marker.begin(), marker.end()) == bytes.end());
  auto plain = backup_sqlite(settings(dir / "p"), src, info());
  REQUIRE(plain.ok());
  CHECK(slurp(dir / "p" / plain->data_file).size() > 1000);
}

TEST_CASE("restore refuses an existing target unless allowed, and replaces it atomically", "[sqlite]") {
  TempDir dir("drd-bk-sqlite");
  fs::path src = dir / "images.db";
  make_image_db(src, 3000);
  auto s = settings(dir / "b");
  auto m = backup_sqlite(s, src, info());
  REQUIRE(m.ok());
  auto ref = resolve_backup(s.directory / m->data_file);  // the data file finds its manifest
  REQUIRE(ref.ok());
  REQUIRE(ref->manifest.has_value());

  fs::path target = dir / "old.db";
  make_image_db(target, 10);
  spit(target.string() + "-wal", random_bytes(1000));  // a stale WAL must not be replayed
  auto refused = restore_sqlite(ref.value(), target, RestoreOptions{});
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().code == Errc::refused);
  CHECK_THAT(refused.error().hint, Catch::Contains("--force"));
  CHECK(read_rows(target).size() == 10);

  auto ok = restore_sqlite(ref.value(), target, RestoreOptions{true, nullptr});
  REQUIRE(ok.ok());
  CHECK_FALSE(fs::exists(target.string() + "-wal"));
  check_snapshot(target, src, 3000);
}

TEST_CASE("wrong key: restore fails, nothing is written", "[sqlite][key]") {
  TempDir dir("drd-bk-sqlite");
  MasterKey key = test_key(1), other = test_key(2);
  fs::path src = dir / "images.db";
  make_image_db(src, 500);
  auto s = settings(dir / "b", &key);
  auto m = backup_sqlite(s, src, info());
  REQUIRE(m.ok());
  auto ref = resolve_backup(manifest_path(s.directory, m->id));
  REQUIRE(ref.ok());
  auto r = restore_sqlite(ref.value(), dir / "t.db", RestoreOptions{false, &other});
  REQUIRE_FALSE(r.ok());
  CHECK_THAT(r.error().message, Catch::Contains("wrong key (key id " + other.id() + ", backup made with " + key.id() + ")"));
  CHECK_FALSE(fs::exists(dir / "t.db"));
  CHECK_FALSE(fs::exists(dir / "t.db.restore-tmp"));
  auto rep = verify_backup(ref.value(), &other, dir / "scratch");
  CHECK_FALSE(rep.ok);
}

TEST_CASE("a plain .sql file restores into a fresh database", "[sqlite]") {
  TempDir dir("drd-bk-sqlite");
  std::string sql =
      "CREATE TABLE images(id INTEGER PRIMARY KEY, url TEXT NOT NULL, sha256 TEXT NOT NULL, size INTEGER, path TEXT, "
      "crawled_at TEXT);\n"
      "INSERT INTO images VALUES(1,'https://a/1.jpg;x','aa',10,'/p/1','2026-01-01');\n"
      "INSERT INTO images VALUES(2,'https://a/2.jpg','bb',20,'/p/2','2026-01-02');\n";
  drd::test::write_file(dir / "dump.sql", sql);
  auto ref = resolve_backup(dir / "dump.sql");
  REQUIRE(ref.ok());
  CHECK(ref->plain_sql);
  auto r = restore_sqlite(ref.value(), dir / "t.db", RestoreOptions{});
  INFO((r.ok() ? "" : r.error().message));
  REQUIRE(r.ok());
  auto rows = read_rows(dir / "t.db");
  REQUIRE(rows.size() == 2);
  CHECK(rows[0].url == "https://a/1.jpg;x");
  CHECK(verify_backup(ref.value(), nullptr, dir / "scratch").ok);

  drd::test::write_file(dir / "bad.sql", "CREATE TABLE t(x);\nINSERT INTO nope VALUES(1);\n");
  auto bad = restore_sqlite(resolve_backup(dir / "bad.sql").value(), dir / "u.db", RestoreOptions{});
  REQUIRE_FALSE(bad.ok());
  CHECK_THAT(bad.error().message, Catch::Contains("statement 2") && Catch::Contains("no such table"));
  CHECK_FALSE(fs::exists(dir / "u.db"));
}

TEST_CASE("flipped bytes and truncations are caught by verify and restore (sampled)", "[sqlite][tamper]") {
  TempDir dir("drd-bk-sqlite");
  MasterKey key = test_key();
  fs::path src = dir / "images.db";
  make_image_db(src, 300);
  auto s = settings(dir / "b", &key);
  s.chunk_size = 1024;
  auto m = backup_sqlite(s, src, info());
  REQUIRE(m.ok());
  fs::path data = s.directory / m->data_file;
  auto good = slurp(data);
  auto ref = resolve_backup(manifest_path(s.directory, m->id)).value();
  REQUIRE(verify_backup(ref, &key, dir / "scratch").ok);
  fs::path target = dir / "t.db";
  std::size_t step = std::max<std::size_t>(1, good.size() / 150);
  for (std::size_t i = 0; i < good.size(); i += step) {
    auto b = good;
    b[i] ^= 0x01;
    spit(data, b);
    INFO("flipped byte " << i << " of " << good.size());
    CHECK_FALSE(verify_backup(ref, &key, dir / "scratch").ok);
    CHECK_FALSE(restore_sqlite(ref, target, RestoreOptions{}).ok());
    CHECK_FALSE(fs::exists(target));
  }
  for (std::size_t len = 0; len < good.size(); len += step) {
    spit(data, std::vector<std::uint8_t>(good.begin(), good.begin() + static_cast<long>(len)));
    INFO("truncated to " << len);
    auto rep = verify_backup(ref, &key, dir / "scratch");
    CHECK_FALSE(rep.ok);
    CHECK_FALSE(restore_sqlite(ref, target, RestoreOptions{}).ok());
    CHECK_FALSE(fs::exists(target));
  }
  spit(data, good);
  auto rep = verify_backup(ref, &key, dir / "scratch");
  CHECK(rep.ok);
  CHECK(fs::is_empty(dir / "scratch"));
}

TEST_CASE("a backup directory that fills up leaves nothing behind", "[sqlite][enospc]") {
  TempDir dir("drd-bk-sqlite");
  fs::path src = dir / "images.db";
  make_image_db(src, 20000);  // ~5 MiB
  fs::path mnt = dir / "small";
  fs::create_directory(mnt);
  if (::mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=1m") != 0) {
    WARN("cannot mount a tmpfs here: SQLite ENOSPC not tested");
    return;
  }
  struct Unmount {
    fs::path p;
    ~Unmount() { ::umount2(p.c_str(), MNT_DETACH); }
  } unmount{mnt};
  auto m = backup_sqlite(settings(mnt), src, info());
  REQUIRE_FALSE(m.ok());
  CHECK_THAT(m.error().message, Catch::Contains("full") || Catch::Contains("FULL"));
  CHECK(fs::is_empty(mnt));
}

TEST_CASE("stale partial files are cleaned at startup", "[sqlite]") {
  TempDir dir("drd-bk-sqlite");
  drd::test::write_file(dir / "x.drdbk.partial", "x");
  drd::test::write_file(dir / "y.snapshot.tmp", "x");
  drd::test::write_file(dir / "z.manifest.json", "{}");
  CHECK(remove_stale_partials(dir.path()) == 2);
  CHECK(fs::exists(dir / "z.manifest.json"));
}
