// SQLite high availability with real files and real processes: replication,
// automatic and manual failover, switchover, fencing, rejoin, restarts.
#include <catch2/catch.hpp>
#include <signal.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include <cstdio>
#include <fstream>
#include <set>
#include <thread>

#include "tests/e2e/drd_fixture.hpp"

using namespace drd::test;
namespace json = boost::json;

namespace {

// The tests read the databases the way applications do: with a busy timeout. A reader
// without one gets SQLITE_BUSY while another connection (drd starting replication on a
// new primary, say) runs SQLite's WAL recovery on its first open -- a lock, not a
// problem with the file (docs/reliability.md, "Flaky tests").
constexpr int kReaderBusyMs = 2000;

std::set<long long> acked_ids(const std::filesystem::path& ack_file) {
  std::set<long long> ids;
  std::ifstream in(ack_file);
  std::string line;
  while (std::getline(in, line)) {  // "id unix_ms reopens"
    long long id = 0;
    if (std::sscanf(line.c_str(), "%lld", &id) == 1) ids.insert(id);
  }
  return ids;
}

std::set<long long> ids_in(const std::filesystem::path& db_file) {
  std::set<long long> ids;
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(db_file.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_busy_timeout(db, kReaderBusyMs);
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(db, "SELECT id FROM images", -1, &st, nullptr);
    while (sqlite3_step(st) == SQLITE_ROW) ids.insert(sqlite3_column_int64(st, 0));
    sqlite3_finalize(st);
  }
  sqlite3_close(db);
  return ids;
}

// "ok", the first problem integrity_check names, or why it could not run (with SQLite's
// own message: "database is locked" and "cannot open" are different failures).
std::string integrity(const std::filesystem::path& db_file) {
  sqlite3* db = nullptr;
  std::string out;
  int rc = sqlite3_open_v2(db_file.c_str(), &db, SQLITE_OPEN_READONLY, nullptr);
  if (rc == SQLITE_OK) {
    sqlite3_busy_timeout(db, kReaderBusyMs);
    sqlite3_stmt* st = nullptr;
    rc = sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, nullptr);
    if (rc == SQLITE_OK) rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) out = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
  }
  if (out.empty())
    out = "cannot check (" + std::to_string(sqlite3_extended_errcode(db)) + "): " + (db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
  sqlite3_close(db);
  return out;
}

void write_rows(const std::filesystem::path& db_file, int first, int count) {
  std::string sql = "BEGIN;";
  for (int i = first; i < first + count; ++i)
    sql += "INSERT INTO images (id, url, sha256, size, path, crawled_at) VALUES (" + std::to_string(i) +
           ", 'u', 's', 1, 'p', 'now');";
  sql += "COMMIT;";
  // Like an application: reopen and retry when the attempt fails (docs/applications.md).
  app_exec(db_file, sql);
}

std::unique_ptr<Background> start_writer(DrdFixture& f, double seconds, int rate = 300) {
  return std::make_unique<Background>(
      std::vector<std::string>{bin("drd-example-writer"), "--db", (f.dir() / "data/current.db").string(), "--rate",
                               std::to_string(rate), "--duration", std::to_string(seconds), "--ack",
                               (f.dir() / "acks.txt").string(), "--start-id", "100000"},
      f.dir() / "writer.log");
}

// drd replicates from the primary to `standby` and it is caught up: status shows its
// position and no replication note. After a restart this is the moment drd has settled.
bool replicating(DrdFixture& f, const std::string& standby) {
  auto n = f.node_status(standby);
  return n.at("role").as_string() == "standby" && n.contains("position") && !n.contains("replication") &&
         n.at("lag_bytes").to_number<double>() == 0;
}

// Every acknowledged row is on `node`'s file.
void check_no_acked_row_lost(DrdFixture& f, const std::string& node) {
  auto acked = acked_ids(f.dir() / "acks.txt");
  auto present = ids_in(f.db(node));
  std::vector<long long> missing;
  for (auto id : acked)
    if (!present.count(id)) missing.push_back(id);
  INFO("acked " << acked.size() << ", missing " << missing.size() << (missing.empty() ? "" : ", first " + std::to_string(missing.front())));
  CHECK(acked.size() > 50);
  CHECK(missing.empty());
}

}  // namespace

TEST_CASE("standbys are seeded and follow every committed write", "[e2e][sqlite-ha]") {
  DrdFixture f;
  std::filesystem::remove(f.db("secondary2"));  // a missing standby is seeded automatically
  f.start();
  CHECK(std::filesystem::read_symlink(f.dir() / "data/current.db") == f.db("primary"));
  write_rows(f.dir() / "data/current.db", 1000, 500);
  CHECK(eventually([&] { return ids_in(f.db("secondary1")) == ids_in(f.db("primary")); }));
  CHECK(eventually([&] { return ids_in(f.db("secondary2")) == ids_in(f.db("primary")); }));
  CHECK(integrity(f.db("secondary2")) == "ok");
  auto s1 = f.node_status("secondary1");
  CHECK(eventually([&] { return f.node_status("secondary1").at("lag_bytes").to_number<double>() == 0; }));
  CHECK(s1.contains("position"));
}

TEST_CASE("primary renamed away: automatic failover, link repointed, no acknowledged row lost", "[e2e][sqlite-ha]") {
  DrdFixture f;
  f.start();
  auto writer = start_writer(f, 3.0);
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));
  std::filesystem::rename(f.db("primary"), f.dir() / "lost-disk.db");
  CHECK(eventually([&] { return f.call("status").at("primary").as_string() == "secondary1"; }));
  REQUIRE(writer->wait(std::chrono::seconds(15)).has_value());
  INFO(writer->log());
  CHECK(std::filesystem::read_symlink(f.dir() / "data/current.db") == f.db("secondary1"));
  auto st = f.call("status").as_object();
  CHECK(st.at("term").as_int64() == 2);
  auto hist = f.call("history").as_array();
  REQUIRE(hist.size() == 1);
  CHECK(hist[0].at("from").as_string() == "primary");
  CHECK(hist[0].at("to").as_string() == "secondary1");
  CHECK(hist[0].at("mode").as_string() == "auto");
  CHECK(f.node_status("primary").at("role").as_string() == "fenced");
  check_no_acked_row_lost(f, "secondary1");
  CHECK(integrity(f.db("secondary1")) == "ok");
  // The remaining standby now follows the new primary.
  CHECK(eventually([&] { return ids_in(f.db("secondary2")) == ids_in(f.db("secondary1")); }));
}

TEST_CASE("corrupted primary header triggers failover", "[e2e][sqlite-ha]") {
  DrdFixture f;
  f.start();
  {
    std::fstream db(f.db("primary"), std::ios::in | std::ios::out | std::ios::binary);
    db.write("this is not sqlite", 16);
  }
  CHECK(eventually([&] { return f.call("status").at("primary").as_string() == "secondary1"; }));
  // The primary changes in the store before the history row is written: wait for the latter.
  REQUIRE(eventually([&] { return !f.call("history").as_array().empty(); }));
  CHECK_THAT(std::string(f.call("history").as_array()[0].at("reason").as_string()), Catch::Contains("down after 3"));
}

TEST_CASE("a primary path replaced by a FIFO is failed over", "[e2e][sqlite-ha]") {
  DrdFixture f;
  f.opts.timeout = "200ms";
  f.write_config();
  f.start();
  std::filesystem::rename(f.db("primary"), f.dir() / "away.db");
  REQUIRE(::mkfifo(f.db("primary").c_str(), 0600) == 0);  // neither a database nor a regular file
  CHECK(eventually([&] { return f.call("status").at("primary").as_string() == "secondary1"; }, std::chrono::seconds(15)));
  // Another file at the primary's path is a lost primary at once; the probe's own verdict
  // (the open of the FIFO times out) comes after its timeout.
  CHECK(eventually([&] { return !std::string(f.node_status("primary").at("last_error").as_string()).empty(); }));
}

TEST_CASE("manual failover: refuses an unhealthy target, promotes a healthy one", "[e2e][sqlite-ha]") {
  DrdFixture f;
  f.start();
  std::filesystem::remove(f.db("secondary1"));
  std::filesystem::create_directories(f.db("secondary1"));
  CHECK(eventually([&] { return !f.node_status("secondary1").at("healthy").as_bool(); }));
  auto refused = f.drctl({"failover", "secondary1"});
  CHECK(refused.exit_code == 1);
  CHECK_THAT(refused.err, Catch::Contains("not healthy"));

  write_rows(f.dir() / "data/current.db", 5000, 10);
  CHECK(eventually([&] { return ids_in(f.db("secondary2")) == ids_in(f.db("primary")); }));
  auto ok = f.drctl({"failover", "secondary2"});
  INFO(ok.out << ok.err);
  CHECK(ok.exit_code == 0);
  CHECK(f.call("primary").at("name").as_string() == "secondary2");
  CHECK(f.call("history").as_array()[0].at("mode").as_string() == "manual");
  CHECK(std::filesystem::read_symlink(f.dir() / "data/current.db") == f.db("secondary2"));
  CHECK(ids_in(f.db("secondary2")).count(5009));
}

TEST_CASE("switchover under a write load loses nothing and keeps the old primary as a standby", "[e2e][sqlite-ha]") {
  DrdFixture f;
  f.start();
  auto writer = start_writer(f, 3.0);
  std::this_thread::sleep_for(std::chrono::milliseconds(1000));
  auto r = f.drctl({"switchover", "secondary1"});
  INFO(r.out << r.err);
  CHECK(r.exit_code == 0);
  REQUIRE(writer->wait(std::chrono::seconds(15)).has_value());
  INFO(writer->log());
  CHECK(f.call("primary").at("name").as_string() == "secondary1");
  check_no_acked_row_lost(f, "secondary1");
  CHECK(f.call("history").as_array()[0].at("mode").as_string() == "switchover");
  // The old primary is re-seeded as a standby of the new one, not fenced.
  CHECK(eventually([&] { return f.node_status("primary").at("role").as_string() == "standby"; }));
  CHECK(eventually([&] { return ids_in(f.db("primary")) == ids_in(f.db("secondary1")); }));
}

TEST_CASE("a returning old primary stays fenced until rejoin, then follows", "[e2e][sqlite-ha]") {
  DrdFixture f;
  f.start();
  std::filesystem::rename(f.db("primary"), f.dir() / "away.db");
  CHECK(eventually([&] { return f.call("status").at("primary").as_string() == "secondary1"; }));
  // The store names the new primary when the failover starts; the link moves at its end.
  REQUIRE(eventually([&] { return std::filesystem::read_symlink(f.dir() / "data/current.db") == f.db("secondary1"); }));
  write_rows(f.dir() / "data/current.db", 7000, 20);
  std::filesystem::rename(f.dir() / "away.db", f.db("primary"));
  CHECK(eventually([&] { return f.node_status("primary").at("healthy").as_bool(); }));
  // Healthy (the probe answered) can show a moment before the fence is recorded.
  CHECK(eventually([&] { return f.node_status("primary").at("role").as_string() == "fenced"; }));
  CHECK(f.call("primary").at("name").as_string() == "secondary1");  // never made primary again by itself
  // Writers still holding the old file are refused: drd holds its write lock.
  {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open(f.db("primary").c_str(), &db) == SQLITE_OK);
    int rc = sqlite3_exec(db, "INSERT INTO images (id) VALUES (999999)", nullptr, nullptr, nullptr);
    CHECK(rc == SQLITE_BUSY);
    sqlite3_close(db);
  }
  auto r = f.drctl({"rejoin", "primary"});
  INFO(r.out << r.err);
  CHECK(r.exit_code == 0);
  CHECK(r.out == "primary rejoined as a standby of secondary1\n");
  CHECK(eventually([&] { return f.node_status("primary").at("role").as_string() == "standby"; }));
  CHECK(eventually([&] { return ids_in(f.db("primary")) == ids_in(f.db("secondary1")); }));
  CHECK(ids_in(f.db("primary")).count(7019));
}

TEST_CASE("rejoin of a standby that is not fenced is refused and changes nothing", "[e2e][sqlite-ha]") {
  DrdFixture f;
  f.start();
  CHECK(eventually([&] { return f.node_status("secondary1").at("healthy").as_bool(); }));
  auto r = f.drctl({"rejoin", "secondary1"});
  INFO(r.out << r.err);
  CHECK(r.exit_code == 1);
  CHECK(r.out.empty());
  CHECK_THAT(r.err, Catch::Contains("secondary1 is not fenced: it is already a standby following the primary primary"));
  CHECK_THAT(r.err, Catch::Contains("nothing done"));
  CHECK_THAT(r.err, Catch::Contains("drctl rejoin secondary1 --reclone"));
  CHECK(f.node_status("secondary1").at("role").as_string() == "standby");
  CHECK(f.call("primary").at("name").as_string() == "primary");
  // No rejoin was recorded.
  CHECK(f.log().find("event=rejoin") == std::string::npos);
}

TEST_CASE("automatic failover disabled: the primary's loss is reported, not acted on", "[e2e][sqlite-ha]") {
  DrdFixture f;
  f.opts.auto_failover = false;
  f.write_config();
  f.start();
  std::filesystem::rename(f.db("primary"), f.dir() / "away.db");
  CHECK(eventually([&] { return f.call("status").at("failover_state").as_string() == "disabled"; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  CHECK(f.call("primary").at("name").as_string() == "primary");
  CHECK(f.call("auto_failover.enable").at("auto_failover").as_bool());
  CHECK(eventually([&] { return f.call("primary").at("name").as_string() == "secondary1"; }));
}

TEST_CASE("no candidate: drd stays put and says why", "[e2e][sqlite-ha]") {
  DrdFixture f;
  f.start();
  for (auto* n : {"secondary1", "secondary2"}) {
    std::filesystem::remove(f.db(n));
    std::filesystem::create_directories(f.db(n));
  }
  CHECK(eventually([&] { return !f.node_status("secondary2").at("healthy").as_bool(); }));
  std::filesystem::rename(f.db("primary"), f.dir() / "away.db");
  CHECK(eventually([&] { return f.call("status").at("failover_state").as_string() == "no_candidate"; }));
  auto st = f.call("status").as_object();
  CHECK(st.at("primary").as_string() == "primary");
  CHECK_THAT(std::string(st.at("failover_reason").as_string()), Catch::Contains("secondary1 not healthy"));
  CHECK(f.call("history").as_array().empty());
}

TEST_CASE("drd killed in the middle of a failover converges after restart with one primary", "[e2e][sqlite-ha]") {
  for (int delay_ms : {250, 320, 400}) {
    DrdFixture f;
    f.start();
    std::filesystem::rename(f.db("primary"), f.dir() / "away.db");
    std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
    f.process()->signal(SIGKILL);
    f.process()->wait(std::chrono::seconds(5));
    f.start();
    CHECK(eventually([&] { return f.call("status").at("primary").as_string() == "secondary1"; }));
    CHECK(eventually([&] {
      return std::filesystem::read_symlink(f.dir() / "data/current.db") == f.db("secondary1");
    }));
    // Settled: drd replicates from the new primary. Before that, a restart that finishes
    // the failover itself still opens the new primary to start replication after it
    // answers (the test once read it right then without a busy timeout: "cannot open").
    CHECK(eventually([&] { return replicating(f, "secondary2"); }));
    auto st = f.call("status").as_object();
    int primaries = 0;
    for (auto& n : st.at("nodes").as_array()) primaries += n.at("role").as_string() == "primary";
    CHECK(primaries == 1);
    INFO(f.log());
    CHECK(integrity(f.db("secondary1")) == "ok");
  }
}


// drd killed at each step of a SQLite promotion (DRD_TEST_CRASH_AT, docs/reliability.md
// "Crash points"): before the fence (failover_claimed), after the fence, after the last
// shipping, after the target was finalized (its position file gone, current_link not
// moved yet) and after the link moved. While drd is down an application keeps writing
// through current_link, to whichever file it names. After the restart every acknowledged
// row is on the new primary exactly once, and shipping resumes: a write on the new
// primary reaches every standby.
TEST_CASE("drd killed at each step of a SQLite promotion: nothing acknowledged is lost and shipping resumes",
          "[e2e][sqlite-ha]") {
  for (std::string point : {"failover_claimed", "sqlite_fenced", "sqlite_shipped", "sqlite_finalized", "sqlite_link_moved"}) {
    INFO("crash point " << point);
    DrdFixture f;
    f.start({{"DRD_TEST_CRASH_AT", point}});
    const auto link = f.dir() / "data/current.db";
    std::set<long long> acked = ids_in(f.db("primary"));
    REQUIRE(acked.size() == 10);
    auto write_acked = [&](int first) {
      write_rows(link, first, 20);  // FAILs unless committed: every row is acknowledged
      for (int i = first; i < first + 20; ++i) acked.insert(i);
    };
    write_acked(1000);
    REQUIRE(eventually([&] { return ids_in(f.db("secondary1")) == acked && ids_in(f.db("secondary2")) == acked; }));

    auto r = f.drctl({"failover", "secondary1"});
    auto code = f.process()->wait(std::chrono::seconds(20));
    INFO(r.out << r.err << f.log());
    REQUIRE(code == std::optional<int>(128 + SIGKILL));
    REQUIRE(f.log().find("killing drd at crash point '" + point + "'") != std::string::npos);

    write_acked(2000);  // drd is down: lands on the former primary unless the link moved
    f.start();
    REQUIRE(eventually([&] { return f.call("status").at("primary").as_string() == "secondary1"; }));
    REQUIRE(eventually([&] { return std::filesystem::read_symlink(link) == f.db("secondary1"); }));
    write_acked(3000);  // on the new primary
    CHECK(eventually([&] { return ids_in(f.db("secondary1")) == acked; }));
    CHECK(count_rows(f.db("secondary1")) == static_cast<long long>(acked.size()));
    CHECK(eventually([&] { return ids_in(f.db("secondary2")) == acked; }));
    CHECK(eventually([&] { return replicating(f, "secondary2"); }));
    CHECK(integrity(f.db("secondary1")) == "ok");
    CHECK(integrity(f.db("secondary2")) == "ok");
    CHECK(eventually([&] { return f.node_status("primary").at("role").as_string() == "fenced"; }));
    CHECK_FALSE(std::filesystem::exists(f.db("secondary1").string() + ".drd-pos"));
    CHECK_FALSE(std::filesystem::exists(f.db("secondary1").string() + ".drd-promoting"));
    auto hist = f.call("history").as_array();
    REQUIRE(hist.size() == 1);
    CHECK(hist[0].at("to").as_string() == "secondary1");
  }
}

// After a failover the standby that followed the old primary holds a prefix of the new
// primary's history: drd brings it up to date by rewriting the pages that differ, in place,
// not by copying the whole database again (docs/sqlite-replication.md, "Seeding"). The
// history rows give the new primary's position at promotion, which goes on growing from
// one failover to the next instead of starting again at 0.
TEST_CASE("after a failover with a large database the standby that followed is not copied again",
          "[e2e][sqlite-ha]") {
  DrdFixture f;
  f.start();
  const auto link = f.dir() / "data/current.db";
  // About 6 MB.
  app_exec(link, "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3000) "
                 "INSERT INTO images (id, url) SELECT 1000 + x, hex(randomblob(1000)) FROM c");
  REQUIRE(eventually([&] { return count_rows(f.db("secondary1")) == 3010 && count_rows(f.db("secondary2")) == 3010; }));
  REQUIRE(eventually([&] { return replicating(f, "secondary1") && replicating(f, "secondary2"); }));
  // (A reader of ours can hold a batch in the standby's -wal for a moment.)
  REQUIRE(eventually([&] { return std::filesystem::file_size(f.db("secondary2")) > 5'000'000; }));
  const auto position_before = f.node_status("secondary1").at("position").to_number<std::uint64_t>();
  struct stat before {};
  REQUIRE(::stat(f.db("secondary2").c_str(), &before) == 0);

  std::filesystem::rename(f.db("primary"), f.dir() / "lost-disk.db");
  REQUIRE(eventually([&] { return f.call("history").as_array().size() == 1; }, std::chrono::seconds(15)));
  REQUIRE(eventually([&] { return std::filesystem::read_symlink(link) == f.db("secondary1"); }));
  // Status only until the seed is done: a reader of ours on the standby while drd writes it
  // would make drd fall back to a full copy (standbys are private to drd).
  const std::string seeded_line = "replication from secondary1: seeded standby " + f.db("secondary2").string();
  REQUIRE(eventually([&] { return f.log().find(seeded_line) != std::string::npos && replicating(f, "secondary2"); },
                     std::chrono::seconds(15)));
  INFO(f.log());
  struct stat after {};
  REQUIRE(::stat(f.db("secondary2").c_str(), &after) == 0);
  CHECK(after.st_ino == before.st_ino);  // a full seed renames a new copy over the path
  const std::string log = f.log();
  const auto at = log.find(seeded_line);
  const std::string line = log.substr(at, log.find('\n', at) - at);
  CHECK_THAT(line, Catch::Contains("by rewriting"));
  CHECK_THAT(line, !Catch::Contains("by copying the whole database"));
  CHECK(ids_in(f.db("secondary2")) == ids_in(f.db("secondary1")));
  write_rows(link, 9000, 20);
  CHECK(eventually([&] { return ids_in(f.db("secondary2")) == ids_in(f.db("secondary1")); }));
  CHECK(eventually([&] { return replicating(f, "secondary2"); }));
  CHECK(integrity(f.db("secondary2")) == "ok");
  CHECK(count_rows(f.db("secondary2")) == 3030);

  auto hist = f.call("history").as_array();
  const auto first_position = hist[0].at("position").to_number<std::uint64_t>();
  CHECK(first_position >= position_before);
  CHECK(hist[0].as_object().contains("lag_bytes"));
  // A second failover: the position recorded goes on from the first one, it does not start at 0.
  write_rows(link, 9100, 20);
  REQUIRE(eventually([&] { return count_rows(f.db("secondary2")) == 3050 && replicating(f, "secondary2"); }));
  const auto position_now = f.node_status("secondary2").at("position").to_number<std::uint64_t>();
  CHECK(position_now > first_position);
  std::filesystem::rename(f.db("secondary1"), f.dir() / "lost-disk1.db");
  REQUIRE(eventually([&] { return f.call("history").as_array().size() == 2; }, std::chrono::seconds(15)));
  hist = f.call("history").as_array();
  CHECK(hist[0].at("to").as_string() == "secondary2");
  CHECK(hist[0].at("position").to_number<std::uint64_t>() >= position_now);
  auto shown = f.drctl({"history", "--json"});
  CHECK_THAT(shown.out, Catch::Contains("\"position\""));
}
