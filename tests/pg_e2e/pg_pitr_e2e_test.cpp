// PostgreSQL continuous WAL archiving and point-in-time restore end to end: real drd + drctl
// on a real PostgreSQL 15 primary with backup.pg_wal_archive on. A full backup, row A, time T,
// row B, pg_switch_wal(); once the WAL is archived, `drctl restore ID --to-time T --target DIR`
// must give a cluster with A and without B; a T after the archive is refused with nothing
// created; after a drd restart archiving resumes without a hole; verify reads the archived WAL;
// `backups` shows the window.
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <set>
#include <thread>

#include "daemon/backup/pg_internal.hpp"
#include "tests/pg_e2e/pg_drd_fixture.hpp"

using namespace drd;
using namespace drd::test;
namespace fs = std::filesystem;
namespace json = boost::json;

namespace {

fs::path make_key(const fs::path& p) {
  std::ofstream(p) << "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n";
  ::chmod(p.c_str(), 0600);
  return p;
}

// The "restorable" object of backup `id` in `drctl --json backups` (null when none).
json::value window_of(PgDrdFixture& f, const std::string& id) {
  auto r = f.drctl({"--json", "backups"});
  if (r.exit_code != 0) return nullptr;
  const json::value list = json::parse(r.out);
  for (auto& b : list.as_array())
    if (b.as_object().at("id").as_string() == id) return b.as_object().at("restorable");
  return nullptr;
}

}  // namespace

TEST_CASE("PostgreSQL WAL archiving and restore --to-time", "[pg_e2e][backup][pitr]") {
  TempDir tmp;
  ::chmod(tmp.path().c_str(), 0755);  // the spool and the restore folders are used by the postgres user
  PgDrdOptions o;
  o.standbys = 0;
  o.extra_yaml = "  backup:\n    enabled: true\n    directory: " + (tmp / "backups").string() +
                 "\n    compression: { algorithm: zstd, level: 3, threads: 1 }\n    encryption: { key_file: " +
                 make_key(tmp / "backup.key").string() + " }\n    pg_wal_archive: { enabled: true, spool: " +
                 (tmp / "spool").string() + " }\n";
  PgDrdFixture f(o);
  f.start();
  f.pg().exec(0, "CREATE TABLE items(id int PRIMARY KEY, v text)");

  auto b = f.drctl({"--json", "backup"});
  INFO(b.err << f.log());
  REQUIRE(b.exit_code == 0);
  const std::string id(json::parse(b.out).as_object().at("id").as_string());

  f.pg().exec(0, "INSERT INTO items VALUES (1, 'A')");
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const std::string t = backup::format_time_utc(std::chrono::system_clock::now());
  std::this_thread::sleep_for(std::chrono::milliseconds(1200));
  f.pg().exec(0, "INSERT INTO items VALUES (2, 'B')");
  f.pg().exec(0, "SELECT pg_switch_wal()");

  // Archived once the window reaches past T (B's commit is the last one archived).
  json::value w;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (std::chrono::steady_clock::now() < deadline) {
    w = window_of(f, id);
    if (w.is_object() && std::string(w.as_object().at("to").as_string()) > t) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  INFO(f.log() << "\n" << f.drctl({"--json", "backups", "--segments"}).out);
  REQUIRE(w.is_object());
  CHECK(std::string(w.as_object().at("from").as_string()) < t);
  REQUIRE(std::string(w.as_object().at("to").as_string()) > t);
  CHECK(w.as_object().at("archiving").as_bool());
  auto text = f.drctl({"backups"});
  CHECK(text.out.find("(live)") != std::string::npos);
  auto segs = f.drctl({"--json", "backups", "--segments"});
  REQUIRE(segs.exit_code == 0);
  int wal_rows = 0;
  const json::value seg_list = json::parse(segs.out);
  for (auto& r : seg_list.as_array())
    if (r.as_object().at("content").as_string() == "pg-wal") ++wal_rows;
  CHECK(wal_rows >= 1);

  {  // restore to T: row A, not row B
    const fs::path target = tmp / "restored";
    auto r = f.drctl({"--json", "restore", id, "--to-time", t, "--target", target.string()});
    INFO(r.out << r.err);
    REQUIRE(r.exit_code == 0);
    auto ro = json::parse(r.out).as_object();
    CHECK(ro.at("restored_to").as_string() == target.string());
    REQUIRE(ro.contains("restored_time"));
    CHECK(std::string(ro.at("restored_time").as_string()) <= t);
    CHECK_FALSE(fs::exists(target / "drd_pitr_wal"));
    CHECK_FALSE(fs::exists(target / "recovery.signal"));
    CHECK_FALSE(fs::exists(fs::path(target.string() + ".pitr-tmp")));

    backup::PgTools tools;
    tools.bin_dir = PgCluster::bin_dir();
    tools.os_user = PgCluster::kOsUser;
    RealProcessRunner runner;
    fs::path sock = tmp / "sock";
    fs::create_directories(sock);
    ::chmod(sock.c_str(), 0777);
    auto server = backup::pgi::ScratchServer::start(target, sock, runner, tools);
    REQUIRE(server);
    auto rows = (*server)->query("postgres", "postgres", "SELECT string_agg(v, ',' ORDER BY id) FROM items");
    REQUIRE(rows);
    CHECK(*rows == "A");
    auto rec = (*server)->query("postgres", "postgres", "SELECT pg_is_in_recovery()");
    REQUIRE(rec);
    CHECK(*rec == "f");
  }

  {  // a time after the archived WAL is refused, nothing created
    const fs::path target = tmp / "too-late";
    const std::string late = backup::format_time_utc(std::chrono::system_clock::now() + std::chrono::hours(1));
    auto r = f.drctl({"restore", id, "--to-time", late, "--target", target.string()});
    CHECK(r.exit_code != 0);
    CHECK(r.err.find("is missing from the archive") != std::string::npos);
    CHECK(r.err.find("restorable window") != std::string::npos);
    CHECK_FALSE(fs::exists(target));
    CHECK_FALSE(fs::exists(fs::path(target.string() + ".pitr-tmp")));
    // Before the backup's end: refused as well.
    auto early = f.drctl({"restore", id, "--to-time", "2020-01-01T00:00:00Z", "--target", target.string()});
    CHECK(early.exit_code != 0);
    CHECK(early.err.find("before the end of backup") != std::string::npos);
    CHECK_FALSE(fs::exists(target));
  }

  {  // drd killed and restarted: archiving resumes from the spool/slot, no hole, no duplicate
    f.kill_drd();
    f.pg().exec(0, "INSERT INTO items VALUES (3, 'C')");  // written while drd is down
    f.pg().exec(0, "SELECT pg_switch_wal()");
    f.start();
    const std::string after = backup::format_time_utc(std::chrono::system_clock::now());
    f.pg().exec(0, "INSERT INTO items VALUES (4, 'D')");
    f.pg().exec(0, "SELECT pg_switch_wal()");
    json::value w2;
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (std::chrono::steady_clock::now() < until) {
      w2 = window_of(f, id);
      if (w2.is_object() && std::string(w2.as_object().at("to").as_string()) > after) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
    }
    INFO(f.log());
    REQUIRE(w2.is_object());
    CHECK(std::string(w2.as_object().at("to").as_string()) > after);
    CHECK_FALSE(w2.as_object().contains("gap"));
    CHECK(w2.as_object().at("segments").to_number<int>() > w.as_object().at("segments").to_number<int>());
    auto again = f.drctl({"--json", "backups", "--segments"});
    const json::value rows = json::parse(again.out);
    std::set<std::string> ids;
    for (auto& r : rows.as_array()) CHECK(ids.insert(std::string(r.as_object().at("id").as_string())).second);
  }

  {  // verify reads the archived WAL
    auto v = f.drctl({"--json", "verify", id});
    INFO(v.out << v.err);
    bool found = false;
    const json::value report = json::parse(v.out);
    for (auto& c : report.as_object().at("checks").as_array())
      if (c.as_object().at("name").as_string() == "wal_archive") {
        found = true;
        CHECK(c.as_object().at("ok").as_bool());
      }
    CHECK(found);
    CHECK(v.exit_code == 0);
  }
}
