// PostgreSQL backups through the pipeline on a real PostgreSQL 15 cluster: physical and
// logical round trips compared row by row, verify catching a flipped byte and a truncation,
// a wrong key, and a failing pg_basebackup leaving nothing behind.
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <fstream>

#include "daemon/backup/pg_backup.hpp"
#include "daemon/backup/pg_internal.hpp"
#include "helpers.hpp"
#include "tests/support/pg_cluster.hpp"
#include "tests/support/recording_runner.hpp"
#include "tests/support/temp_dir.hpp"

using namespace drd;
using namespace drd::backup;
using drd::test::PgCluster;
using drd::test::TempDir;
namespace fs = std::filesystem;
namespace bt = drd::backup::test;

namespace {

PgTools tools_for(const PgCluster& c, int i, const std::string& db = "postgres") {
  PgTools t;
  t.bin_dir = PgCluster::bin_dir();
  t.os_user = PgCluster::kOsUser;
  t.conninfo = "host=127.0.0.1 port=" + std::to_string(c.port(i)) + " user=postgres dbname=" + db;
  t.timeout = Millis{120'000};
  t.idle_timeout = Millis{60'000};
  return t;
}

BackupSettings settings_in(const fs::path& dir, const MasterKey* key) {
  BackupSettings s;
  s.directory = dir;
  s.level = 3;
  s.threads = 1;
  if (key) s.key.emplace(*key);
  return s;
}

NewBackup new_backup(const std::string& node) {
  NewBackup b;
  b.node = node;
  return b;
}

// Every row of the test table, in order: what "equal" means for the round trips.
// (An md5 over all rows in id order, with the count: a mismatch in any row changes it.)
const char* kRows = "SELECT count(*) || ' ' || md5(string_agg(id || ':' || coalesce(v, '~'), ',' ORDER BY id)) FROM items";

void fill(PgCluster& c) {
  c.exec(0, "CREATE TABLE items(id int PRIMARY KEY, v text)");
  c.exec(0, "INSERT INTO items SELECT g, md5(g::text) FROM generate_series(1, 5000) g");
  c.exec(0, "UPDATE items SET v = NULL WHERE id % 97 = 0");
}

BackupRef ref_of(const Manifest& m, const fs::path& dir) {
  BackupRef r;
  r.data = dir / m.data_file;
  r.manifest = m;
  return r;
}

std::vector<std::string> failed(const VerifyReport& r) {
  std::vector<std::string> out;
  for (auto& c : r.checks)
    if (!c.ok) out.push_back(c.name + ": " + c.detail);
  return out;
}

std::size_t files_in(const fs::path& dir) {
  std::size_t n = 0;
  for (auto& e : fs::directory_iterator(dir)) (void)e, ++n;
  return n;
}

}  // namespace

TEST_CASE("pg_basebackup's verbose lines give the WAL range", "[pg_backup]") {
  auto p = parse_basebackup_output(
      "pg_basebackup: write-ahead log start point: 0/2000028 on timeline 3\n"
      "pg_basebackup: checkpoint completed\npg_basebackup: write-ahead log end point: 1A/B0000100\n");
  CHECK(p.start_lsn == "0/2000028");
  CHECK(p.timeline == 3);
  CHECK(p.stop_lsn == "1A/B0000100");
  auto none = parse_basebackup_output("pg_basebackup: error: connection refused\n");
  CHECK(none.start_lsn.empty());
  CHECK(none.stop_lsn.empty());
  CHECK(tool_output_tail("a\nb\nc\nd\ne\nFATAL: password s3cret wrong\n", {"s3cret"}) ==
        "c d e FATAL: password *** wrong");
}

TEST_CASE("a runner that cannot stream fails the backup cleanly", "[pg_backup]") {
  TempDir dir;
  drd::test::RecordingRunner runner;
  PgTools t;
  t.conninfo = "host=127.0.0.1";
  auto m = backup_pg_physical(settings_in(dir.path(), nullptr), runner, t, new_backup("n"));
  REQUIRE_FALSE(m);
  CHECK(m.error().message.find("cannot start pg_basebackup") != std::string::npos);
  CHECK(files_in(dir.path()) == 0);
}

TEST_CASE("physical backup: round trip, verify, corruption, truncation, wrong key", "[pg_backup][pg]") {
  PgCluster c(0);
  fill(c);
  const std::string want = c.query(0, kRows).value();
  TempDir dir;
  RealProcessRunner runner;
  auto key = bt::test_key(3);
  auto m = backup_pg_physical(settings_in(dir.path(), &key), runner, tools_for(c, 0), new_backup("node0"));
  REQUIRE(m);
  CHECK(m->engine == "postgresql");
  CHECK(m->kind == "full");
  CHECK(m->content == "pg-tar");
  CHECK(m->encrypted);
  CHECK(m->pg_timeline == 1);
  CHECK_FALSE(m->pg_start_lsn.empty());
  CHECK_FALSE(m->pg_stop_lsn.empty());
  CHECK(m->source_bytes > m->size_bytes);  // compressed
  auto on_disk = read_manifest(manifest_path(dir.path(), m->id));
  REQUIRE(on_disk);
  CHECK(on_disk->pg_start_lsn == m->pg_start_lsn);
  CHECK(on_disk->pg_stop_lsn == m->pg_stop_lsn);
  c.exec(0, "INSERT INTO items VALUES (999999, 'after the backup')");

  // Restore into a new data folder, start it, compare every row.
  fs::path target = c.root() / "restored";
  auto r = restore_pg_physical(ref_of(*m, dir.path()), target, RestoreOptions{false, &key}, runner, tools_for(c, 0));
  REQUIRE(r);
  CHECK(r->detail.find("pg_verifybackup ok") != std::string::npos);
  struct stat st{};
  REQUIRE(::stat(target.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0700);
  {
    auto server = pgi::ScratchServer::start(target, c.root(), runner, tools_for(c, 0));
    REQUIRE(server);
    auto rows = server.value()->query("postgres", "postgres", kRows);
    REQUIRE(rows);
    CHECK(*rows == want);  // the row written after the backup is not there
  }
  // An existing non-empty target is refused without --force.
  auto again = restore_pg_physical(ref_of(*m, dir.path()), target, RestoreOptions{false, &key}, runner, tools_for(c, 0));
  REQUIRE_FALSE(again);
  CHECK(again.error().message.find("is not empty") != std::string::npos);

  // verify: all checks pass, including a started copy.
  auto rep = verify_pg_backup(ref_of(*m, dir.path()), &key, dir.path(), runner, tools_for(c, 0), "postgres");
  INFO(Catch::Detail::stringify(failed(rep)));
  CHECK(rep.ok);
  std::vector<std::string> names;
  for (auto& ch : rep.checks) names.push_back(ch.name);
  CHECK(names == std::vector<std::string>{"manifest", "data_file", "file_sha256", "decrypt", "plaintext_sha256",
                                          "test_restore", "pg_verifybackup", "start_server", "query"});

  // Wrong key: refused before anything is written.
  auto other = bt::test_key(4);
  fs::path t2 = c.root() / "wrongkey";
  auto wk = restore_pg_physical(ref_of(*m, dir.path()), t2, RestoreOptions{false, &other}, runner, tools_for(c, 0));
  REQUIRE_FALSE(wk);
  CHECK(wk.error().message.find("wrong key") != std::string::npos);
  CHECK_FALSE(fs::exists(t2));
  CHECK_FALSE(fs::exists(c.root() / "wrongkey.restore-tmp"));

  // A flipped byte in the middle: verify names the file checksum and the chunk; restore refuses.
  fs::path data = dir.path() / m->data_file;
  auto bytes = bt::slurp(data);
  auto flipped = bytes;
  flipped[flipped.size() / 2] ^= 0x40;
  bt::spit(data, flipped);
  auto bad = verify_pg_backup(ref_of(*m, dir.path()), &key, dir.path(), runner, tools_for(c, 0), "postgres");
  CHECK_FALSE(bad.ok);
  auto f = failed(bad);
  INFO(Catch::Detail::stringify(f));
  REQUIRE(f.size() >= 2);
  CHECK(f[0].rfind("file_sha256", 0) == 0);
  CHECK(f[1].find("failed authentication") != std::string::npos);
  fs::path t3 = c.root() / "corrupt";
  auto cr = restore_pg_physical(ref_of(*m, dir.path()), t3, RestoreOptions{false, &key}, runner, tools_for(c, 0));
  REQUIRE_FALSE(cr);
  CHECK_FALSE(fs::exists(t3));
  CHECK_FALSE(fs::exists(c.root() / "corrupt.restore-tmp"));

  // Truncated: named as such.
  bytes.resize(bytes.size() * 2 / 3);
  bt::spit(data, bytes);
  auto cut = verify_pg_backup(ref_of(*m, dir.path()), &key, dir.path(), runner, tools_for(c, 0), "postgres");
  CHECK_FALSE(cut.ok);
  auto fc = failed(cut);
  INFO(Catch::Detail::stringify(fc));
  bool named = false;
  for (auto& s : fc) named = named || s.find("file ends") != std::string::npos;
  CHECK(named);
}

TEST_CASE("logical backup: pg_dump round trip into another database, verify", "[pg_backup][pg]") {
  PgCluster c(0);
  fill(c);
  const std::string want = c.query(0, kRows).value();
  TempDir dir;
  RealProcessRunner runner;
  auto m = backup_pg_logical(settings_in(dir.path(), nullptr), runner, tools_for(c, 0), "postgres", new_backup("node0"));
  REQUIRE(m);
  CHECK(m->kind == "logical");
  CHECK(m->content == "pg-dump");
  CHECK(m->pg_database == "postgres");
  c.exec(0, "CREATE DATABASE copy");
  auto r = restore_pg_logical(ref_of(*m, dir.path()), RestoreOptions{}, false, runner, tools_for(c, 0, "copy"));
  REQUIRE(r);
  // The harness queries database postgres; read "copy" through psql.
  auto rows = pgi::run_tool(runner, tools_for(c, 0),
                            {(PgCluster::bin_dir() / "psql").string(), "-X", "-A", "-t", "-d",
                             tools_for(c, 0, "copy").conninfo, "-c", kRows});
  REQUIRE(rows);
  std::string text = rows->output;
  while (!text.empty() && text.back() == '\n') text.pop_back();
  CHECK(text == want);
  // Restoring again without --clean fails inside one transaction: nothing changes.
  c.exec(0, "CREATE DATABASE copy2");
  auto again = restore_pg_logical(ref_of(*m, dir.path()), RestoreOptions{}, false, runner, tools_for(c, 0, "copy"));
  CHECK_FALSE(again);
  auto clean = restore_pg_logical(ref_of(*m, dir.path()), RestoreOptions{}, true, runner, tools_for(c, 0, "copy"));
  CHECK(clean);

  auto rep = verify_pg_backup(ref_of(*m, dir.path()), nullptr, dir.path(), runner, tools_for(c, 0), "postgres");
  INFO(Catch::Detail::stringify(failed(rep)));
  CHECK(rep.ok);
  bool restored = false;
  for (auto& ch : rep.checks) restored = restored || (ch.name == "query" && ch.detail == "1 tables restored");
  CHECK(restored);
}

TEST_CASE("a failing pg_basebackup leaves no backup files and says why", "[pg_backup]") {
  TempDir dir, bin;
  // Writes half a tar, then fails the way a dropped connection does.
  {
    std::ofstream s(bin / "pg_basebackup");
    s << "#!/bin/sh\nhead -c 3000000 /dev/zero\necho 'pg_basebackup: error: could not read COPY data: server closed "
         "the connection unexpectedly' >&2\nexit 1\n";
  }
  ::chmod((bin / "pg_basebackup").c_str(), 0755);
  RealProcessRunner runner;
  PgTools t;
  t.bin_dir = bin.path();
  t.conninfo = "host=127.0.0.1";
  auto m = backup_pg_physical(settings_in(dir.path(), nullptr), runner, t, new_backup("n"));
  REQUIRE_FALSE(m);
  CHECK(m.error().message.find("exited with status 1") != std::string::npos);
  CHECK(m.error().message.find("server closed the connection") != std::string::npos);
  CHECK(files_in(dir.path()) == 0);
}

TEST_CASE("a stalled pg_basebackup is killed after the idle timeout", "[pg_backup]") {
  TempDir dir, bin;
  {
    std::ofstream s(bin / "pg_basebackup");
    s << "#!/bin/sh\nhead -c 1000 /dev/zero\nsleep 30\n";
  }
  ::chmod((bin / "pg_basebackup").c_str(), 0755);
  RealProcessRunner runner;
  PgTools t;
  t.bin_dir = bin.path();
  t.idle_timeout = Millis{500};
  auto started = std::chrono::steady_clock::now();
  auto m = backup_pg_physical(settings_in(dir.path(), nullptr), runner, t, new_backup("n"));
  REQUIRE_FALSE(m);
  CHECK(m.error().code == Errc::timeout);
  CHECK(m.error().message.find("made no progress") != std::string::npos);
  CHECK(std::chrono::steady_clock::now() - started < std::chrono::seconds(10));
  CHECK(files_in(dir.path()) == 0);
}
