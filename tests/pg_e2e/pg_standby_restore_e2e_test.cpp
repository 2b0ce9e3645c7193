// Re-seeding a PostgreSQL standby from a physical backup end to end: real drd + drctl on a real
// PostgreSQL 15 primary and standby, backup.pg_wal_archive on. A backup, rows after it, then the
// primary drops that WAL (only drd's archive has it). `drctl restore ID --node node1` while rows
// keep being written: node1 must stream again with every row (also those written after the
// backup and during the restore), follow a later write, and neither its old data folder nor the
// temporary one may be left. Refused with nothing changed: onto the live primary, and a backup of
// another cluster (its own initdb, so another database system identifier). With a segment hidden
// from the archive the restored copy cannot stream: node1 is put back on its old folder.
#include <sys/stat.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <fstream>
#include <thread>

#include "common/process.hpp"
#include "daemon/backup/pg_backup.hpp"
#include "daemon/backup/pg_wal.hpp"
#include "tests/pg_e2e/pg_backup_support.hpp"

using namespace drd;
using namespace drd::test;
namespace fs = std::filesystem;
namespace json = boost::json;

namespace {

const char* kIds = "SELECT count(*) || ':' || coalesce(md5(string_agg(id::text, ',' ORDER BY id)), '') FROM items";

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}


// Whether `backups --json` shows WAL archived past the base backup `id` (a commit after it).
bool wal_archived_after(PgDrdFixture& f, const std::string& id) {
  auto r = f.drctl({"--json", "backups"});
  if (r.exit_code != 0) return false;
  const json::value list = json::parse(r.out);
  for (auto& b : list.as_array())
    if (b.as_object().at("id").as_string() == id) {
      const auto& w = b.as_object().at("restorable");
      return w.is_object() && w.as_object().at("segments").to_number<int>() >= 1;
    }
  return false;
}

// node1 streams from the primary (pg_stat_replication also lists the archive's pg_receivewal).
bool node1_streams(PgDrdFixture& f) {
  return f.pg().wait_for(0, "SELECT count(*) FROM pg_stat_replication WHERE application_name = 'node1' "
                            "AND state = 'streaming'", "1", std::chrono::seconds(20));
}

}  // namespace

TEST_CASE("drctl restore ID --node STANDBY re-seeds a PostgreSQL standby from a backup", "[pg_e2e][backup][reseed]") {
  TempDir tmp;
  ::chmod(tmp.path().c_str(), 0755);  // the spool is used by the postgres user
  PgDrdOptions o;
  o.standbys = 1;
  o.extra_yaml = backup_yaml(tmp / "backups", make_backup_key(tmp / "backup.key"), tmp / "spool");
  PgDrdFixture f(o);
  f.start();
  f.pg().exec(0, "CREATE TABLE items(id int PRIMARY KEY, v text)");
  f.pg().exec(0, "INSERT INTO items SELECT g, md5(g::text) FROM generate_series(1, 2000) g");
  // The archive's receiver (slot drd_archive) must be running before the backup, or the WAL
  // right after it may never reach the archive.
  REQUIRE(f.pg().wait_for(0, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'drd_archive' AND active",
                          "1", std::chrono::seconds(20)));

  const std::string id = take_backup(f);

  // Rows after the backup; then the primary drops its WAL since the backup (wal_keep_size 0,
  // switches, CHECKPOINT), so the restored copy can only get it from drd's archive.
  const json::value full = json::parse(slurp(tmp / "backups" / (id + ".manifest.json")));
  const std::uint64_t seg = 1u << 20;  // the test clusters' --wal-segsize
  const std::uint64_t stop_lsn =
      backup::parse_lsn(std::string(full.at("postgresql").at("stop_lsn").as_string())).value();
  const std::string next_seg = backup::wal_file_name(1, stop_lsn / seg + 1, seg);  // the first one after the backup's end
  f.pg().exec(0, "INSERT INTO items SELECT g, 'after' FROM generate_series(2001, 3000) g");
  f.pg().exec(0, "ALTER SYSTEM SET wal_keep_size = 0");
  f.pg().exec(0, "SELECT pg_reload_conf()");
  const fs::path archive = tmp / "backups" / "pg-wal";
  auto oldest_on_primary = [&] {
    return f.pg().query(0, "SELECT min(name) FROM pg_ls_waldir() WHERE name ~ '^[0-9A-F]{24}$'").value_or("");
  };
  auto archived_before = [&](const std::string& wal) {  // every segment before `wal` since the backup
    auto w = backup::parse_wal_name(wal, seg);
    if (!w || w->segno == 0) return false;
    for (std::uint64_t n = stop_lsn / seg; n < w->segno; ++n)
      if (!fs::exists(archive / ("pg-wal-" + backup::wal_file_name(1, n, seg) + ".manifest.json"))) return false;
    return true;
  };
  std::string oldest;
  auto ready = [&] {
    oldest = oldest_on_primary();
    return oldest > next_seg && archived_before(oldest) && wal_archived_after(f, id);
  };
  // Switches, CHECKPOINT (removes what is older than its redo segment), a switch that completes
  // the redo segment; again until the primary dropped the WAL after the backup and drd archived
  // every segment the primary no longer has.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(40);
  for (int i = 0; !ready() && std::chrono::steady_clock::now() < deadline; ++i) {
    for (int k = 0; k < 2; ++k) {
      f.pg().exec(0, "INSERT INTO items VALUES (" + std::to_string(5000 + 10 * i + k) + ", 'switch')");
      f.pg().exec(0, "SELECT pg_switch_wal()");
    }
    f.pg().exec(0, "CHECKPOINT");
    f.pg().exec(0, "INSERT INTO items VALUES (" + std::to_string(5000 + 10 * i + 9) + ", 'switch')");
    f.pg().exec(0, "SELECT pg_switch_wal()");
    for (int w = 0; w < 12 && !ready(); ++w) std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  INFO("oldest on the primary " << oldest << ", first after the backup " << next_seg << "\n"
                                << f.drctl({"--json", "backups", "--segments"}).out);
  REQUIRE(oldest > next_seg);
  REQUIRE(archived_before(oldest));
  REQUIRE(wal_archived_after(f, id));

  const fs::path data1 = f.pg().data_dir(1);
  REQUIRE(node1_streams(f));

  {  // onto the live primary: refused, nothing changed
    const std::string before = f.pg().query(0, kIds).value();
    const auto pid = f.pg().postmaster_pid(0);
    auto r = f.drctl({"restore", id, "--node", "node0"});
    INFO(r.out << r.err);
    CHECK(r.exit_code != 0);
    CHECK(r.err.find("node0 is the live primary") != std::string::npos);
    CHECK(r.err.find("--target PATH") != std::string::npos);
    CHECK(f.pg().query(0, kIds).value() == before);
    CHECK(f.pg().postmaster_pid(0) == pid);
    CHECK(f.pg().query(0, "SELECT pg_is_in_recovery()") == std::optional<std::string>("f"));
  }

  {  // a backup of another cluster: refused before node1 is touched, still streaming
    const fs::path other = foreign_backup(tmp / "other");
    const auto pid = f.pg().postmaster_pid(1);
    auto r = f.drctl({"restore", other.string(), "--node", "node1"});
    INFO(r.out << r.err << f.log());
    CHECK(r.exit_code != 0);
    CHECK(r.err.find("another PostgreSQL cluster") != std::string::npos);
    CHECK(r.err.find("node1 was not touched") != std::string::npos);
    CHECK(f.pg().postmaster_pid(1) == pid);
    INFO(leftovers(data1).size());
    CHECK(leftovers(data1).empty());
    CHECK(node1_streams(f));
  }

  std::ofstream(data1 / "drd-test-marker") << "the old folder\n";
  {  // the archive lacks a segment the primary removed too: node1 starts on the restored copy,
     // cannot stream, and is put back on its old folder and started again
    const fs::path man = archive / ("pg-wal-" + next_seg + ".manifest.json"), hidden = tmp / "hidden.manifest.json";
    REQUIRE(fs::exists(man));
    fs::rename(man, hidden);
    const auto pid = f.pg().postmaster_pid(1);
    auto r = f.drctl({"restore", id, "--node", "node1"});
    fs::rename(hidden, man);
    INFO(r.out << r.err << f.log());
    CHECK(r.exit_code != 0);
    CHECK(r.err.find("has already removed") != std::string::npos);
    CHECK(r.err.find("the old data folder was put back; node1 was started again as it was") != std::string::npos);
    CHECK(r.err.find("server log of the restored copy") != std::string::npos);
    CHECK(fs::exists(data1 / "drd-test-marker"));
    CHECK(f.pg().postmaster_pid(1) != pid);
    CHECK(leftovers(data1).empty());
    CHECK(node1_streams(f));
  }

  // The restore, with rows written all the while.
  const auto old_pid = f.pg().postmaster_pid(1);
  std::atomic<bool> stop{false};
  std::atomic<int> written{0};
  std::thread writer([&] {
    for (int i = 10001; !stop; ++i) {
      try {
        f.pg().exec(0, "INSERT INTO items VALUES (" + std::to_string(i) + ", 'during')");
        ++written;
      } catch (...) {
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  });
  auto r = f.drctl({"--json", "restore", id, "--node", "node1"});
  stop = true;
  writer.join();
  INFO(r.out << r.err << f.log());
  REQUIRE(r.exit_code == 0);
  CHECK(written > 0);
  const auto ro = json::parse(r.out).as_object();
  CHECK(ro.at("restored_to").as_string() == "node1");
  CHECK(ro.at("id").as_string() == id);
  CHECK(ro.at("bytes").to_number<std::int64_t>() > 0);
  CHECK(ro.at("wal_files").to_number<int>() >= 1);
  CHECK(ro.at("streaming_from").as_string() == "node0");
  CHECK(std::string(ro.at("detail").as_string()).find("pg_verifybackup ok") != std::string::npos);

  // node1 runs on the restored copy (new postmaster, old folder's marker gone) and streams.
  CHECK(f.pg().postmaster_pid(1) != old_pid);
  CHECK_FALSE(fs::exists(data1 / "drd-test-marker"));
  CHECK(f.pg().query(1, "SELECT pg_is_in_recovery()") == std::optional<std::string>("t"));
  CHECK(node1_streams(f));
  CHECK(f.wait_streaming_in_status("node1"));
  f.pg().exec(0, "INSERT INTO items VALUES (99999, 'afterwards')");
  const std::string want = f.pg().query(0, kIds).value();
  CHECK(f.pg().wait_for(1, kIds, want));
  CHECK(f.pg().query(1, "SELECT count(*) FROM items WHERE v = 'during'") ==
        f.pg().query(0, "SELECT count(*) FROM items WHERE v = 'during'"));
  CHECK(leftovers(data1).empty());

  auto text = f.drctl({"audit"});
  CHECK(text.out.find("restore") != std::string::npos);
}
