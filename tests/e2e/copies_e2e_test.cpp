// "Never destroy a copy" with real drd processes on real SQLite files
// (docs/sqlite-replication.md): situations in which drd used to re-seed every standby from
// whatever file stood at the primary's path, and lost committed rows everywhere.
#include <catch2/catch.hpp>
#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include <fstream>
#include <thread>

#include "tests/e2e/drd_fixture.hpp"

using namespace drd::test;
namespace fs = std::filesystem;

namespace {

void insert_rows(const fs::path& file, int first, int last) {
  std::string sql = "BEGIN;";
  for (int i = first; i <= last; ++i)
    sql += "INSERT INTO images (id, url) VALUES (" + std::to_string(i) + ", 'u" + std::to_string(i) + "');";
  app_exec(file, sql + "COMMIT;");
}

long long max_id(const fs::path& file) {
  sqlite3* db = nullptr;
  long long n = -1;
  if (sqlite3_open_v2(file.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db, "SELECT max(id) FROM images", -1, &st, nullptr) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
      n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
  }
  sqlite3_close(db);
  return n;
}

// Overwrites the first bytes of `table`'s root page of `file` with garbage, leaving the file's
// size and modification time as they were: a silently corrupt page that only a full read
// (quick_check) finds.
void corrupt_table_page(const fs::path& file, const std::string& table) {
  long long root = 0, page_size = 0;
  {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open_v2(file.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
    sqlite3_stmt* st = nullptr;
    REQUIRE(sqlite3_prepare_v2(db, ("SELECT rootpage, (SELECT page_size FROM pragma_page_size) FROM sqlite_master "
                                    "WHERE name = '" + table + "'").c_str(),
                               -1, &st, nullptr) == SQLITE_OK);
    REQUIRE(sqlite3_step(st) == SQLITE_ROW);
    root = sqlite3_column_int64(st, 0);
    page_size = sqlite3_column_int64(st, 1);
    sqlite3_finalize(st);
    sqlite3_close(db);
  }
  struct stat before {};
  REQUIRE(::stat(file.c_str(), &before) == 0);
  {
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp((root - 1) * page_size);
    const std::string garbage(64, '\xee');
    f.write(garbage.data(), static_cast<std::streamsize>(garbage.size()));
  }
  const struct timespec times[2] = {before.st_atim, before.st_mtim};
  REQUIRE(::utimensat(AT_FDCWD, file.c_str(), times, 0) == 0);
}

std::string primary_of(DrdFixture& f) { return std::string(f.call("status").at("primary").as_string()); }

// The store names a new primary before the engine has promoted it: wait until the failover
// is done and current_link points at the new primary before writing through the link.
void wait_for_link(DrdFixture& f, const std::string& node) {
  REQUIRE(eventually([&] {
    std::error_code ec;
    return fs::read_symlink(f.dir() / "data/current.db", ec) == f.db(node) && !f.call("history").as_array().empty();
  }));
}

// Exactly `n` rows (ids 1..n) on every file, replicated.
void rows_everywhere(DrdFixture& f, int n) {
  app_exec(f.dir() / "data/current.db", "DELETE FROM images");
  insert_rows(f.dir() / "data/current.db", 1, n);
  REQUIRE(eventually([&] { return count_rows(f.db("secondary1")) == n && count_rows(f.db("secondary2")) == n; }));
}

}  // namespace

TEST_CASE("the README's demo: an empty file created through a dangling link is a lost primary, no standby is wiped",
          "[e2e][copies]") {
  DrdFixture f;
  f.opts.threshold = 20;  // the application creates the new file long before the path's absence fails the primary
  f.write_config();
  f.start();
  rows_everywhere(f, 100);
  fs::rename(f.db("primary"), f.dir() / "lost.db");
  // The application writes through current_link: SQLite creates a new file at the primary's path.
  // It writes once; whether that write succeeds (drd fences the new file as soon as it sees
  // it) does not matter, only that the file now exists.
  {
    sqlite3* app = nullptr;
    REQUIRE(sqlite3_open((f.dir() / "data/current.db").c_str(), &app) == SQLITE_OK);
    sqlite3_exec(app,
                 "CREATE TABLE IF NOT EXISTS images (id INTEGER PRIMARY KEY, url TEXT, sha256 TEXT, size INTEGER, "
                 "path TEXT, crawled_at TEXT); INSERT INTO images (id, url) VALUES (1, 'stranger');",
                 nullptr, nullptr, nullptr);
    sqlite3_close(app);
  }
  REQUIRE(fs::exists(f.db("primary")));
  const bool failed_over = eventually([&] { return primary_of(f) != "primary"; }, std::chrono::seconds(15));
  INFO(f.log());
  REQUIRE(failed_over);
  const std::string now = primary_of(f);
  wait_for_link(f, now);
  CHECK(count_rows(f.db(now)) == 100);
  for (auto& s : {"secondary1", "secondary2"}) CHECK(count_rows(f.db(s)) == 100);
  CHECK(f.node_status("primary").at("role").as_string() == "fenced");
  // Writes go on through the link on the new primary, and reach the other standby.
  insert_rows(f.dir() / "data/current.db", 101, 110);
  const std::string other = now == "secondary1" ? "secondary2" : "secondary1";
  const bool followed = eventually([&] { return count_rows(f.db(other)) == 110; });
  INFO(f.log());
  INFO("rows: " << now << " " << count_rows(f.db(now)) << ", " << other << " " << count_rows(f.db(other)));
  INFO(boost::json::serialize(f.call("status")));
  CHECK(followed);
  CHECK_THAT(std::string(f.call("history").as_array().at(0).at("reason").as_string()),
             Catch::Contains("is lost") && Catch::Contains("replaced by another file"));
}

TEST_CASE("an older copy restored by hand at the primary's path while drd is stopped does not wipe the standbys",
          "[e2e][copies]") {
  DrdFixture f;
  f.start();
  rows_everywhere(f, 50);
  app_exec(f.db("primary"), "VACUUM INTO '" + (f.dir() / "older.db").string() + "'");  // an operator's copy
  insert_rows(f.dir() / "data/current.db", 51, 100);
  REQUIRE(eventually([&] { return count_rows(f.db("secondary1")) == 100 && count_rows(f.db("secondary2")) == 100; }));
  REQUIRE(f.stop() == 0);
  fs::remove(fs::path(f.db("primary").string() + "-wal"));
  fs::remove(fs::path(f.db("primary").string() + "-shm"));
  fs::rename(f.dir() / "older.db", f.db("primary"));
  f.start();
  const bool failed_over = eventually([&] { return primary_of(f) != "primary"; }, std::chrono::seconds(15));
  INFO(f.log());
  REQUIRE(failed_over);
  CHECK(count_rows(f.db(primary_of(f))) == 100);
  CHECK(count_rows(f.db("secondary1")) == 100);
  CHECK(count_rows(f.db("secondary2")) == 100);
  CHECK(count_rows(f.db("primary")) == 50);  // kept, fenced, for the operator
  CHECK(f.node_status("primary").at("role").as_string() == "fenced");
  CHECK(f.log().find("not the most advanced copy") != std::string::npos);
}

TEST_CASE("the state folder lost after a failover: the most advanced history wins, not the config", "[e2e][copies]") {
  DrdFixture f;
  f.start();
  rows_everywhere(f, 50);
  fs::rename(f.db("primary"), f.dir() / "away.db");  // the primary's disk goes
  REQUIRE(eventually([&] { return primary_of(f) == "secondary1"; }, std::chrono::seconds(15)));
  wait_for_link(f, "secondary1");
  insert_rows(f.dir() / "data/current.db", 51, 100);
  REQUIRE(eventually([&] { return count_rows(f.db("secondary2")) == 100; }));
  REQUIRE(f.stop() == 0);
  // The old disk comes back, the state folder does not; the config still says `primary: type: primary`.
  fs::rename(f.dir() / "away.db", f.db("primary"));
  fs::remove_all(f.dir() / "state");
  f.start();
  const bool kept = eventually([&] { return primary_of(f) == "secondary1"; }, std::chrono::seconds(15));
  INFO(f.log());
  REQUIRE(kept);
  wait_for_link(f, "secondary1");
  CHECK(max_id(f.db("secondary1")) == 100);
  CHECK(count_rows(f.db("secondary1")) == 100);
  CHECK(eventually([&] { return count_rows(f.db("secondary2")) == 100; }));
  CHECK(count_rows(f.db("primary")) == 50);
  CHECK(f.node_status("primary").at("role").as_string() == "fenced");
  insert_rows(f.dir() / "data/current.db", 101, 105);
  CHECK(eventually([&] { return count_rows(f.db("secondary2")) == 105; }));
}

TEST_CASE("a standby replaced by an older copy is never promoted as current, and no row is lost", "[e2e][copies]") {
  DrdFixture f;
  f.start();
  rows_everywhere(f, 50);
  fs::copy_file(f.db("secondary1"), f.dir() / "s1-older.db");
  insert_rows(f.dir() / "data/current.db", 51, 100);
  REQUIRE(eventually([&] { return count_rows(f.db("secondary1")) == 100 && count_rows(f.db("secondary2")) == 100; }));
  fs::rename(f.dir() / "s1-older.db", f.db("secondary1"));  // its position file still says "caught up"
  fs::rename(f.db("primary"), f.dir() / "away.db");           // then the primary fails
  const bool failed_over = eventually([&] { return primary_of(f) != "primary"; }, std::chrono::seconds(15));
  INFO(f.log());
  REQUIRE(failed_over);
  const std::string now = primary_of(f);
  wait_for_link(f, now);
  CHECK(count_rows(f.db(now)) == 100);
  const std::string other = now == "secondary1" ? "secondary2" : "secondary1";
  CHECK(eventually([&] { return count_rows(f.db(other)) == 100; }));
}

TEST_CASE("a standby that holds another database is kept, reported and alerted, --discard overwrites it",
          "[e2e][copies]") {
  DrdFixture f;
  f.start();
  REQUIRE(eventually([&] { return count_rows(f.db("secondary1")) == 10; }));
  REQUIRE(f.stop() == 0);
  // secondary1's file is replaced by a copy of another cluster's database.
  DrdFixture other;
  other.start();
  REQUIRE(eventually([&] { return count_rows(other.db("secondary1")) == 10; }));
  insert_rows(other.dir() / "data/current.db", 1000, 1004);
  REQUIRE(eventually([&] { return count_rows(other.db("secondary1")) == 15; }));
  REQUIRE(other.stop() == 0);
  fs::remove(f.db("secondary1"));
  fs::copy_file(other.db("secondary1"), f.db("secondary1"));
  fs::remove(fs::path(f.db("secondary1").string() + ".drd-pos"));
  f.start();
  REQUIRE(eventually([&] { return f.node_status("secondary1").contains("copy_problem"); }));
  INFO(f.log());
  CHECK_THAT(std::string(f.node_status("secondary1").at("copy_problem").as_string()),
             Catch::Contains("another database"));
  CHECK(count_rows(f.db("secondary1")) == 15);
  CHECK(eventually([&] {
    auto r = f.drctl({"alerts", "--json"});
    return r.out.find("copy_at_risk") != std::string::npos;
  }));
  // Not a candidate: a manual failover to it is refused.
  auto refused = f.drctl({"failover", "secondary1"});
  CHECK(refused.exit_code != 0);
  CHECK_THAT(refused.out + refused.err, Catch::Contains("not a copy of the primary's history"));
  // The operator's word.
  auto plain = f.drctl({"rejoin", "secondary1"});
  CHECK(plain.exit_code != 0);
  CHECK(count_rows(f.db("secondary1")) == 15);
  auto r = f.drctl({"rejoin", "secondary1", "--discard"});
  INFO(r.out << r.err);
  CHECK(r.exit_code == 0);
  CHECK(eventually([&] { return count_rows(f.db("secondary1")) == 10; }));
  CHECK(eventually([&] { return !f.node_status("secondary1").contains("copy_problem"); }));
}

TEST_CASE("an older file moved onto the primary's path while drd runs is a lost primary, not a silent split",
          "[e2e][copies]") {
  DrdFixture f;
  f.opts.threshold = 20;
  f.write_config();
  f.start();
  rows_everywhere(f, 50);
  app_exec(f.db("primary"), "VACUUM INTO '" + (f.dir() / "older.db").string() + "'");
  insert_rows(f.dir() / "data/current.db", 51, 100);
  REQUIRE(eventually([&] { return count_rows(f.db("secondary1")) == 100 && count_rows(f.db("secondary2")) == 100; }));
  fs::rename(f.dir() / "older.db", f.db("primary"));
  const bool failed_over = eventually([&] { return primary_of(f) != "primary"; }, std::chrono::seconds(15));
  INFO(f.log());
  REQUIRE(failed_over);
  wait_for_link(f, primary_of(f));
  CHECK(count_rows(f.db(primary_of(f))) == 100);
  CHECK_THAT(std::string(f.call("history").as_array().at(0).at("reason").as_string()), Catch::Contains("is lost"));
  // The application writes through the link to the new primary: ids 51.. are not reused.
  insert_rows(f.dir() / "data/current.db", 101, 101);
  CHECK(max_id(f.db(primary_of(f))) == 101);
  // The older file at the old path is fenced: a writer that opens it by path cannot commit.
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(f.db("primary").c_str(), &db) == SQLITE_OK);
  sqlite3_busy_timeout(db, 200);
  CHECK(eventually([&] {
    return sqlite3_exec(db, "INSERT INTO images (id, url) VALUES (51, 'split')", nullptr, nullptr, nullptr) != SQLITE_OK;
  }));
  sqlite3_close(db);
}

TEST_CASE("a primary removed from the configuration is fenced before another node is promoted", "[e2e][copies]") {
  DrdFixture f;
  f.start();
  rows_everywhere(f, 20);
  REQUIRE(f.stop() == 0);
  std::string cfg;
  {
    std::ifstream in(f.config_path());
    cfg.assign(std::istreambuf_iterator<char>(in), {});
  }
  const std::string block = "    primary:\n      name: primary\n      type: primary\n      priority: 0\n"
                            "      url: \"sqlite:///data/primary.db\"\n";
  REQUIRE(cfg.find(block) != std::string::npos);
  cfg.erase(cfg.find(block), block.size());
  std::ofstream(f.config_path(), std::ios::trunc) << cfg;
  // An application still connected to the old primary.
  sqlite3* app = nullptr;
  REQUIRE(sqlite3_open(f.db("primary").c_str(), &app) == SQLITE_OK);
  sqlite3_busy_timeout(app, 200);
  f.start();
  const bool moved = eventually([&] { return primary_of(f) == "secondary1"; }, std::chrono::seconds(15));
  INFO(f.log());
  REQUIRE(moved);
  wait_for_link(f, "secondary1");
  CHECK(f.log().find("primary is no longer in the configuration") != std::string::npos);
  CHECK(sqlite3_exec(app, "INSERT INTO images (id, url) VALUES (21, 'orphan')", nullptr, nullptr, nullptr) != SQLITE_OK);
  sqlite3_close(app);
  insert_rows(f.dir() / "data/current.db", 21, 30);
  CHECK(eventually([&] { return count_rows(f.db("secondary2")) == 30; }));
}

TEST_CASE("a promotion that fails moves on to the next candidate at once", "[e2e][copies]") {
  DrdFixture f;
  f.start();
  rows_everywhere(f, 30);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // idle: nothing left to apply
  corrupt_table_page(f.db("secondary1"), "images");  // its probes pass, its quick_check does not
  fs::rename(f.db("primary"), f.dir() / "away.db");
  const bool moved = eventually([&] { return primary_of(f) == "secondary2"; }, std::chrono::seconds(15));
  INFO(f.log());
  REQUIRE(moved);
  wait_for_link(f, "secondary2");
  CHECK(f.log().find("promotion of secondary1 failed") != std::string::npos);
  CHECK(count_rows(f.db("secondary2")) == 30);
  insert_rows(f.dir() / "data/current.db", 31, 31);
  CHECK(count_rows(f.db("secondary2")) == 31);
}

TEST_CASE("a primary with a corrupt page is failed over although it answers its probes", "[e2e][copies]") {
  DrdFixture f;
  f.opts.quick_check_interval = "300ms";
  f.write_config();
  f.start();
  REQUIRE(eventually([&] { return count_rows(f.db("secondary1")) == 10; }));
  corrupt_table_page(f.db("primary"), "images");
  const bool moved = eventually([&] { return primary_of(f) != "primary"; }, std::chrono::seconds(15));
  INFO(f.log());
  REQUIRE(moved);
  wait_for_link(f, primary_of(f));
  CHECK_THAT(std::string(f.call("history").as_array().at(0).at("reason").as_string()), Catch::Contains("down after"));
  CHECK(f.log().find("quick_check") != std::string::npos);
  CHECK(count_rows(f.db(primary_of(f))) == 10);
}

TEST_CASE("a standby that cannot apply is shown, alerted and not a candidate until it catches up", "[e2e][copies]") {
  DrdFixture f;
  f.start();
  REQUIRE(eventually([&] { return count_rows(f.db("secondary1")) == 10; }));
  // Its next apply cannot write its WAL file (a stand-in for a full or read-only disk, which
  // root would not notice).
  fs::remove(f.db("secondary1").string() + "-wal");  // probes leave an empty one
  fs::create_directory(f.db("secondary1").string() + "-wal");
  insert_rows(f.dir() / "data/current.db", 100, 110);
  const bool shown = eventually([&] { return f.node_status("secondary1").contains("copy_problem"); });
  INFO(f.log());
  REQUIRE(shown);
  CHECK_THAT(std::string(f.node_status("secondary1").at("copy_problem").as_string()), Catch::Contains("cannot apply"));
  CHECK(f.log().find("standby secondary1 cannot apply") != std::string::npos);
  CHECK(eventually([&] { return f.drctl({"alerts", "--json"}).out.find("copy_at_risk") != std::string::npos; }));
  auto refused = f.drctl({"failover", "secondary1"});
  CHECK(refused.exit_code != 0);
  // (Its probes may fail too, with the directory in the way: either reason keeps it out.)
  CHECK_THAT(refused.out + refused.err, Catch::Contains("cannot be promoted"));
  fs::remove(f.db("secondary1").string() + "-wal");
  CHECK(eventually([&] { return count_rows(f.db("secondary1")) == 21; }));
  CHECK(eventually([&] { return !f.node_status("secondary1").contains("copy_problem"); }));
}
