// PostgreSQL continuous WAL archiving and point-in-time restore end to end: real drd + drctl
// on a real PostgreSQL 15 primary with backup.pg_wal_archive on. A full backup, row A, time T,
// row B, pg_switch_wal(); once the WAL is archived, `drctl restore ID --to-time T --target DIR`
// must give a cluster with A and without B; a T after the archive is refused with nothing
// created; after a drd restart archiving resumes without a hole; verify reads the archived WAL;
// `backups` shows the window.
#include <signal.h>
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <set>
#include <thread>

#include "daemon/backup/pg_internal.hpp"
#include "daemon/backup/pg_wal.hpp"
#include "tests/pg_e2e/pg_backup_support.hpp"

using namespace drd;
using namespace drd::test;
namespace fs = std::filesystem;
namespace json = boost::json;


TEST_CASE("PostgreSQL WAL archiving and restore --to-time", "[pg_e2e][backup][pitr]") {
  TempDir tmp;
  ::chmod(tmp.path().c_str(), 0755);  // the spool and the restore folders are used by the postgres user
  PgDrdOptions o;
  o.standbys = 0;
  o.extra_yaml = backup_yaml(tmp / "backups", make_backup_key(tmp / "backup.key"), tmp / "spool");
  PgDrdFixture f(o);
  f.start();
  f.pg().exec(0, "CREATE TABLE items(id int PRIMARY KEY, v text)");

  const std::string id = take_backup(f);

  const std::string t = time_between(f.pg(), 0, "INSERT INTO items VALUES (1, 'A')", "INSERT INTO items VALUES (2, 'B')");

  // Archived once the window reaches past T (B's commit is the last one archived).
  const json::value w = wait_window_past(f, id, t);
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

    std::string why;
    auto rows = query_restored(target, tmp / "sock",
                               "SELECT string_agg(v, ',' ORDER BY id) || ' ' || pg_is_in_recovery() FROM items", &why);
    INFO(why);
    REQUIRE(rows);
    CHECK(*rows == "A false");
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
    const json::value w2 = wait_window_past(f, id, after);
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

// A crash of the primary, a promotion to timeline 2, writes there: the archive must hold the
// old timeline's WAL up to the switch and the new timeline's after it, so --to-time reaches a
// time on timeline 2.
//   no_receiver: the primary dies before drd's pg_receivewal ever reached it (drd just started),
//     so the promoted standby must serve the old timeline's WAL from the archive's next segment;
//   receiver: the receiver was live there, its spool continues on the new primary;
//   segment_end: the old timeline ends exactly where the spool's last complete segment ends;
//     pg_receivewal cannot start at a switch point on the old timeline, so drd starts it on the
//     new one;
//   lagging_standby: the standby's WAL receiver is frozen while the old primary writes segments
//     the archive gets but the standby never does. After the promotion the spool is past the
//     new primary's fork point: drd moves those files aside and starts at the fork's segment on
//     timeline 2 (the lost transaction is not in the restore: it died with the old primary).
enum class Case { no_receiver, receiver, segment_end, lagging_standby };

static void failover_case(Case c) {
  const bool receiver_ran = c != Case::no_receiver;
  TempDir tmp;
  ::chmod(tmp.path().c_str(), 0755);
  PgDrdOptions o;
  o.standbys = 1;
  o.extra_yaml = backup_yaml(tmp / "backups", std::nullopt, tmp / "spool", 1);
  // The lagging standby is ~40 MB behind when promoted: allowed here (the default is 16MB).
  if (c == Case::lagging_standby) o.extra_failover_yaml = "    max_lag: 1GB\n";
  // no_receiver: the receiver must never reach the old primary, whatever the timing. A file
  // where the spool folder goes keeps pg_receivewal from starting (drd says why and tries again
  // on every tick) until the test removes it after the crash.
  if (c == Case::no_receiver) std::ofstream(tmp / "spool") << "in the way of the spool folder\n";
  PgDrdFixture f(o);
  f.start();
  f.pg().exec(0, "CREATE TABLE items(id int PRIMARY KEY, v text)");
  const std::string id = take_backup(f);
  f.pg().exec(0, "INSERT INTO items VALUES (1, 'A')");
  if (receiver_ran) {
    REQUIRE(f.pg().wait_for(0, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'drd_archive' AND active", "1",
                            std::chrono::seconds(20)));
  }
  f.pg().wait_streaming(0, receiver_ran ? 2 : 1);  // pg_receivewal is listed too
  // Row A on the standby before the crash (asynchronous replication could lose it otherwise).
  REQUIRE(f.pg().wait_for(1, "SELECT count(*) FROM items WHERE id = 1", "1"));
  std::string walreceiver;
  if (c == Case::segment_end) {
    // The old timeline ends exactly at a segment boundary: a promotion right after a WAL switch.
    const std::string seg0 = f.pg().query(0, "SELECT pg_walfile_name(pg_current_wal_lsn())").value_or("");
    f.pg().exec(0, "SELECT pg_switch_wal()");
    const fs::path archived = tmp / "backups" / "pg-wal" / ("pg-wal-" + seg0 + ".drdbk");
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (std::chrono::steady_clock::now() < until && !fs::exists(archived))
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    REQUIRE(fs::exists(archived));
    f.pg().wait_streaming(0, 2);
  }
  if (c == Case::lagging_standby) {
    // The standby's WAL receiver frozen while the old primary writes ~40 MB in one transaction
    // (the test clusters' segments are 1 MiB): loopback socket buffers hold a few MB of it,
    // the archive gets all of it.
    walreceiver = f.pg().query(1, "SELECT pid FROM pg_stat_wal_receiver").value_or("");
    REQUIRE(!walreceiver.empty());
    REQUIRE(::kill(std::stoi(walreceiver), SIGSTOP) == 0);
    const std::string seg0 = f.pg().query(0, "SELECT pg_walfile_name(pg_current_wal_lsn())").value_or("");
    f.pg().exec(0, "INSERT INTO items SELECT g, repeat('x', 1000) FROM generate_series(100, 40000) g");
    const std::string seg1 = f.pg().query(0, "SELECT pg_walfile_name(pg_current_wal_lsn())").value_or("");
    REQUIRE(seg1 > seg0);
    // Archived from the old primary up to the segment before the current one.
    auto prev = backup::parse_wal_name(seg1, 1u << 20);
    REQUIRE(prev);
    const fs::path archived =
        tmp / "backups" / "pg-wal" / ("pg-wal-" + backup::wal_file_name(prev->timeline, prev->segno - 1, 1u << 20) + ".drdbk");
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (std::chrono::steady_clock::now() < until && !fs::exists(archived))
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    REQUIRE(fs::exists(archived));
  }
  if (c == Case::no_receiver) {  // drd tried to start the receiver and could not
    const std::string tried = "cannot create " + (tmp / "spool").string();
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (std::chrono::steady_clock::now() < until && f.log().find(tried) == std::string::npos)
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    CHECK(f.log().find(tried) != std::string::npos);
  }
  f.pg().kill9(0);
  if (!walreceiver.empty()) ::kill(std::stoi(walreceiver), SIGCONT);  // it finds its primary gone
  REQUIRE(f.wait_primary("node1", std::chrono::seconds(20)));
  if (c == Case::no_receiver) fs::remove(tmp / "spool");  // now the receiver may start, on node1
  // The store names the new primary before the promotion runs: wait until it takes writes.
  REQUIRE(f.pg().wait_for(1, "SHOW transaction_read_only", "off"));
  const std::string t = time_between(f.pg(), 1, "INSERT INTO items VALUES (2, 'B')", "INSERT INTO items VALUES (3, 'C')");
  const json::value w = wait_window_past(f, id, t);
  INFO(f.log() << "\n" << f.drctl({"--json", "backups", "--segments"}).out);
  REQUIRE(w.is_object());
  REQUIRE(std::string(w.as_object().at("to").as_string()) > t);
  CHECK(fs::exists(tmp / "backups" / "pg-wal" / "pg-wal-00000002.history.drdbk"));
  if (c == Case::no_receiver) CHECK(f.log().find("starts at 00000001") != std::string::npos);  // the placeholder path
  if (c == Case::segment_end) CHECK(f.log().find("starts at 00000002") != std::string::npos);  // not on timeline 1's end
  if (c == Case::lagging_standby) {
    CHECK(f.log().find("forked") != std::string::npos);
    CHECK(fs::exists(tmp / "spool" / "diverged"));
  }

  const fs::path target = tmp / "restored";
  auto r = f.drctl({"--json", "restore", id, "--to-time", t, "--target", target.string()});
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 0);
  std::string why;
  auto rows = query_restored(target, tmp / "sock", "SELECT string_agg(v, ',' ORDER BY id) FROM items", &why);
  INFO(why);
  REQUIRE(rows);
  CHECK(*rows == "A,B");  // A from timeline 1, B from timeline 2, not C
  if (c != Case::receiver) return;

  // The old primary returns and is rejoined as a standby. Its drd_archive slot would keep every
  // WAL segment from the crash on (a standby's restartpoints honour slots): drd drops it.
  f.pg().start(0);
  auto rj = f.drctl({"rejoin", "node0"});
  INFO(rj.out << rj.err << f.log());
  REQUIRE(rj.exit_code == 0);
  std::optional<std::string> slots;
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (std::chrono::steady_clock::now() < until) {
    slots = f.pg().query(0, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'drd_archive'");
    if (slots == std::optional<std::string>("0")) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  CHECK(slots == std::optional<std::string>("0"));
}

TEST_CASE("PostgreSQL WAL archiving follows a failover before the receiver reached the old primary",
          "[pg_e2e][backup][pitr]") {
  failover_case(Case::no_receiver);
}

TEST_CASE("PostgreSQL WAL archiving follows a failover, the old primary's slot is dropped after rejoin",
          "[pg_e2e][backup][pitr]") {
  failover_case(Case::receiver);
}

TEST_CASE("PostgreSQL WAL archiving after a promotion at a segment boundary", "[pg_e2e][backup][pitr]") {
  failover_case(Case::segment_end);
}

TEST_CASE("PostgreSQL WAL archiving continues from the fork when the promoted standby lagged",
          "[pg_e2e][backup][pitr]") {
  failover_case(Case::lagging_standby);
}
