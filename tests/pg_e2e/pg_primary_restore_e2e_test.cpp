// Rolling the live PostgreSQL primary back to a physical backup end to end: real drd + drctl on a
// real PostgreSQL 15 primary and standby, backup.pg_wal_archive on, automatic failover on after
// two failed probes 100 ms apart (the swap stops the primary for longer than that).
//
// Refused with the primary untouched: without --force; --to-time outside the archive (before any
// safety backup is taken); a backup of another cluster (after the safety backup). Then
// `restore ID --node node0 --force --to-time T` must leave exactly the rows committed before T,
// node0 still the primary (no failover, same term) on a new timeline, writable, node1 re-cloned
// and following new writes, the safety backup in the catalog and no folder left beside the data
// folder. A second roll-back of the same backup without --to-time (to its end) must end on yet
// another timeline, above the first roll-back's, though the backup predates it. In synchronous
// mode the primary runs asynchronous while its standbys are re-cloned (no standby can confirm a
// commit then), synchronous again once one streams.
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <thread>

#include "tests/pg_e2e/pg_backup_support.hpp"

using namespace drd;
using namespace drd::test;
namespace fs = std::filesystem;
namespace json = boost::json;

namespace {

const char* kCount = "SELECT count(*) || ':' || coalesce(max(id), 0) FROM items";

std::size_t backup_count(PgDrdFixture& f, const std::string& name = "") {
  std::size_t n = 0;
  const json::value list = json::parse(f.drctl({"--json", "backups"}).out);
  for (auto& b : list.as_array())
    if (name.empty() || b.as_object().at("name").as_string() == name) ++n;
  return n;
}

std::size_t failovers(PgDrdFixture& f) {
  const json::value h = json::parse(f.drctl({"--json", "history"}).out);
  return h.as_array().size();
}

// Completes WAL segments until `backups --segments` lists one archived on `timeline` (30 s).
bool archived_on(PgDrdFixture& f, int timeline) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  for (int i = 0; std::chrono::steady_clock::now() < deadline; ++i) {
    f.pg().exec(0, "INSERT INTO items VALUES (" + std::to_string(100000 + i) + ", 'switch')");
    f.pg().exec(0, "SELECT pg_switch_wal()");
    const json::value list = json::parse(f.drctl({"--json", "backups", "--segments"}).out);
    for (auto& b : list.as_array())
      if (const auto* tl = b.as_object().if_contains("timeline"); tl && tl->is_number() && tl->to_number<int>() == timeline &&
                                                                    b.as_object().contains("wal_file"))
        return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
  return false;
}

// The primary is still node0, untouched: same postmaster, same rows, writable.
void check_untouched(PgDrdFixture& f, pid_t pid, const std::string& rows) {
  CHECK(f.pg().postmaster_pid(0) == pid);
  CHECK(f.pg().query(0, kCount) == rows);
  CHECK(f.pg().query(0, "SELECT pg_is_in_recovery()") == std::optional<std::string>("f"));
  CHECK(f.status().at("primary").as_string() == "node0");
}

}  // namespace

TEST_CASE("drctl restore ID --node PRIMARY --force rolls the PostgreSQL primary back", "[pg_e2e][backup][rollback]") {
  TempDir tmp;
  ::chmod(tmp.path().c_str(), 0755);  // the spool is used by the postgres user
  PgDrdOptions o;
  o.standbys = 1;
  // A failover would follow two failed probes: the swap stops the primary for longer.
  o.interval = "100ms";
  o.threshold = 2;
  o.extra_yaml = backup_yaml(tmp / "backups", make_backup_key(tmp / "backup.key"), tmp / "spool");
  PgDrdFixture f(o);
  f.start();
  f.pg().exec(0, "CREATE TABLE items(id int PRIMARY KEY, v text)");
  f.pg().exec(0, "INSERT INTO items SELECT g, 'before' FROM generate_series(1, 1000) g");
  REQUIRE(f.pg().wait_for(0, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'drd_archive' AND active",
                          "1", std::chrono::seconds(20)));
  const std::string id = take_backup(f);
  const std::string t = time_between(f.pg(), 0, "INSERT INTO items SELECT g, 'mid' FROM generate_series(1001, 1500) g",
                                     "INSERT INTO items SELECT g, 'late' FROM generate_series(1501, 2000) g");
  wait_window_past(f, id, t);
  REQUIRE(f.pg().wait_for(1, kCount, "2000:2000", std::chrono::seconds(20)));
  const std::string all_rows = "2000:2000";
  const auto term = f.status().at("term").as_int64();
  const std::size_t history = failovers(f);

  {  // without --force: refused, untouched
    const auto pid = f.pg().postmaster_pid(0).value();
    auto r = f.drctl({"restore", id, "--node", "node0"});
    INFO(r.out << r.err);
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("rolls the whole cluster back") != std::string::npos);
    check_untouched(f, pid, all_rows);
  }
  {  // --to-time before the backup: refused before a safety backup is taken
    const auto pid = f.pg().postmaster_pid(0).value();
    const std::size_t backups = backup_count(f);
    auto r = f.drctl({"restore", id, "--node", "node0", "--force", "--to-time", "2020-01-01T00:00:00Z"});
    INFO(r.out << r.err);
    CHECK(r.exit_code != 0);
    CHECK(r.err.find("nothing was changed") != std::string::npos);
    CHECK(backup_count(f) == backups);
    check_untouched(f, pid, all_rows);
  }
  {  // a backup of another cluster: refused after the safety backup, which is kept
    const auto pid = f.pg().postmaster_pid(0).value();
    const fs::path other = foreign_backup(tmp / "other");
    auto r = f.drctl({"restore", other.string(), "--node", "node0", "--force"});
    INFO(r.out << r.err << f.log());
    CHECK(r.exit_code != 0);
    CHECK(r.err.find("another PostgreSQL cluster") != std::string::npos);
    CHECK(r.err.find("node0 was not touched") != std::string::npos);
    CHECK(r.err.find("safety backup") != std::string::npos);
    CHECK(backup_count(f, "before-restore") == 1);
    check_untouched(f, pid, all_rows);
    CHECK(leftovers(f.pg().data_dir(0)).empty());
  }

  // To T: the rows before it, on a new timeline, node0 still the primary.
  auto r = f.drctl({"--json", "restore", id, "--node", "node0", "--force", "--to-time", t});
  INFO(r.out << r.err << f.log());
  REQUIRE(r.exit_code == 0);
  const json::object out = json::parse(r.out).as_object();
  CHECK(out.at("restored_to").as_string() == "node0");
  CHECK(out.at("id").as_string() == id);
  CHECK(out.at("to_time").as_string() == t);
  const auto timeline = out.at("timeline").to_number<int>();
  CHECK(timeline > out.at("previous_timeline").to_number<int>());
  CHECK(out.at("standbys").at("node1").as_string() == "re-cloned, streaming");
  const std::string safety(out.at("safety_backup").as_string());
  CHECK(!safety.empty());
  CHECK(backup_count(f, "before-restore") == 2);

  CHECK(f.pg().query(0, kCount) == std::optional<std::string>("1500:1500"));
  CHECK(f.pg().query(0, "SELECT count(*) FROM items WHERE v = 'late'") == std::optional<std::string>("0"));
  CHECK(f.pg().query(0, "SELECT timeline_id FROM pg_control_checkpoint()") == std::to_string(timeline));
  CHECK(f.status().at("primary").as_string() == "node0");
  CHECK(f.status().at("term").as_int64() == term);
  CHECK(failovers(f) == history);
  CHECK(leftovers(f.pg().data_dir(0)).empty());
  // Writable, and the re-cloned standby follows.
  f.pg().exec(0, "INSERT INTO items VALUES (3000, 'after the roll-back')");
  CHECK(f.pg().wait_for(1, kCount, "1501:3000", std::chrono::seconds(20)));
  CHECK(f.pg().query(1, "SELECT pg_is_in_recovery()") == std::optional<std::string>("t"));
  // WAL archiving goes on, on the new timeline (its slot was not in the backup).
  CHECK(archived_on(f, timeline));

  // Again, to the end of the backup: its own timeline is an old branch now; the copy must still
  // end above every timeline in use.
  auto again = f.drctl({"--json", "restore", id, "--node", "node0", "--force"});
  INFO(again.out << again.err << f.log());
  REQUIRE(again.exit_code == 0);
  const json::object o2 = json::parse(again.out).as_object();
  CHECK(o2.at("timeline").to_number<int>() > timeline);
  CHECK(f.pg().query(0, kCount) == std::optional<std::string>("1000:1000"));
  CHECK(f.status().at("primary").as_string() == "node0");
  CHECK(failovers(f) == history);
  f.pg().exec(0, "INSERT INTO items VALUES (4000, 'after the second roll-back')");
  CHECK(f.pg().wait_for(1, kCount, "1001:4000", std::chrono::seconds(20)));
}

TEST_CASE("rolling back a synchronous PostgreSQL primary: asynchronous while the standby is re-cloned, then synchronous again",
          "[pg_e2e][backup][rollback]") {
  TempDir tmp;
  PgDrdOptions o;
  o.standbys = 1;
  o.synchronous = true;
  o.extra_yaml = backup_yaml(tmp / "backups", std::nullopt);
  PgDrdFixture f(o);
  f.start();
  REQUIRE(eventually([&] { return f.status().at("synchronous").as_string() == "on"; }, std::chrono::seconds(10)));
  REQUIRE(f.pg().query(0, "SHOW synchronous_standby_names").value_or("") != "");
  f.pg().exec(0, "CREATE TABLE items(id int PRIMARY KEY, v text)");
  f.pg().exec(0, "INSERT INTO items SELECT g, 'before' FROM generate_series(1, 100) g");
  const std::string id = take_backup(f);
  f.pg().exec(0, "INSERT INTO items SELECT g, 'after' FROM generate_series(101, 200) g");

  auto r = f.drctl({"--json", "restore", id, "--node", "node0", "--force"});
  INFO(r.out << r.err << f.log());
  REQUIRE(r.exit_code == 0);
  CHECK(json::parse(r.out).at("standbys").at("node1").as_string() == "re-cloned, streaming");
  CHECK(f.log().find("synchronous mode set to asynchronous on node0 while its standbys are re-cloned") !=
        std::string::npos);
  CHECK(f.pg().query(0, kCount) == std::optional<std::string>("100:100"));
  // Synchronous again once the re-cloned standby streams: a commit waits for it and is there.
  CHECK(eventually([&] { return f.pg().query(0, "SHOW synchronous_standby_names").value_or("") != ""; },
                   std::chrono::seconds(10)));
  CHECK(eventually([&] { return f.status().at("synchronous").as_string() == "on"; }, std::chrono::seconds(10)));
  f.pg().exec(0, "INSERT INTO items VALUES (300, 'synchronous again')");
  CHECK(f.pg().wait_for(1, "SELECT count(*) FROM items WHERE id = 300", "1", std::chrono::seconds(10)));
}
