// Incremental SQLite backups through a real drd and real drctl on real SQLite files: WAL
// segments archived from replication after a full backup, point-in-time restore between two
// known writes compared row by row, a missing segment, a wrong key, restore --force onto
// the primary (application stopped) with a safety backup and re-seeded standbys.
#include <catch2/catch.hpp>
#include <sqlite3.h>
#include <sys/stat.h>

#include <fstream>
#include <thread>

#include "tests/e2e/drd_fixture.hpp"

using namespace drd::test;
namespace json = boost::json;
namespace fs = std::filesystem;

namespace {

using Rows = std::vector<std::string>;

void write_key(const fs::path& file, char fill) {
  std::ofstream(file, std::ios::trunc) << std::string(64, fill) << "\n";
  ::chmod(file.c_str(), 0600);
}

void exec_sql(const fs::path& db, const std::string& sql) {
  sqlite3* h = nullptr;
  REQUIRE(sqlite3_open(db.c_str(), &h) == SQLITE_OK);
  sqlite3_busy_timeout(h, 5000);
  char* err = nullptr;
  int rc = sqlite3_exec(h, sql.c_str(), nullptr, nullptr, &err);
  INFO((err ? err : ""));
  sqlite3_free(err);
  sqlite3_close(h);
  REQUIRE(rc == SQLITE_OK);
}

// Every row of images, in id order, as one string each: compared row by row.
Rows rows_of(const fs::path& db) {
  Rows out;
  sqlite3* h = nullptr;
  if (sqlite3_open_v2(db.c_str(), &h, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_busy_timeout(h, 5000);
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(h, "SELECT id, url, sha256, size, path, crawled_at FROM images ORDER BY id", -1, &st, nullptr) ==
        SQLITE_OK) {
      while (sqlite3_step(st) == SQLITE_ROW) {
        std::string r;
        for (int c = 0; c < 6; ++c) {
          auto* t = sqlite3_column_text(st, c);
          r += (t ? reinterpret_cast<const char*>(t) : "NULL") + std::string("|");
        }
        out.push_back(std::move(r));
      }
    }
    sqlite3_finalize(st);
  }
  sqlite3_close(h);
  return out;
}

std::string iso_now() {
  auto now = std::chrono::system_clock::now();
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
  std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, static_cast<int>(ms % 1000));
  return buf;
}

json::value parse_out(const RunResult& r) {
  INFO("stdout: " << r.out << "\nstderr: " << r.err);
  REQUIRE(r.exit_code == 0);
  return json::parse(r.out);
}

// A batch of writes that touches many pages: inserts, updates and a delete.
void churn(const fs::path& db, int round) {
  std::string sql = "BEGIN;";
  for (int i = 0; i < 200; ++i)
    sql += "INSERT INTO images (url, sha256, size, path, crawled_at) VALUES ('http://r" + std::to_string(round) + "/" +
           std::to_string(i) + "', hex(randomblob(32)), " + std::to_string(i * round) + ", '/p/" + std::to_string(i) +
           "', 'round " + std::to_string(round) + "');";
  sql += "UPDATE images SET size = size + 1 WHERE id % 7 = " + std::to_string(round % 7) + ";";
  sql += "DELETE FROM images WHERE id % 13 = " + std::to_string(round % 13) + " AND crawled_at <> 'round " +
         std::to_string(round) + "';";
  sql += "COMMIT;";
  exec_sql(db, sql);
}

struct PitrFixture : DrdFixture {
  PitrFixture() : DrdFixture(make_opts()) { write_key(dir() / "backup.key", 'a'); }
  static DrdOptions make_opts() {
    DrdOptions o;
    o.standbys = 2;
    o.extra_yaml =
        "  backup:\n"
        "    enabled: true\n"
        "    directory: ./backups\n"
        "    encryption: { key_file: ./backup.key }\n"
        "    incremental: { segment_size: 64KB, segment_interval: 300ms }\n";
    return o;
  }
  json::array backups() { return parse_out(drctl({"backups", "--segments", "--json"})).as_array(); }
  json::object find(const std::string& id) {
    for (auto& b : backups())
      if (b.at("id").as_string() == id) return b.as_object();
    FAIL("backup " << id << " is not in the catalog");
    return {};
  }
  // Waits until the full's restorable window reaches `t` (ISO, comparable as text).
  bool window_reaches(const std::string& id, const std::string& t) {
    return eventually(
        [&] {
          auto b = find(id);
          auto* w = b.if_contains("restorable");
          return w && w->is_object() && std::string(w->at("to").as_string()) >= t;
        },
        std::chrono::seconds(15));
  }
  std::string full_backup() {
    auto b = parse_out(drctl({"backup", "--json"})).as_object();
    return std::string(b.at("id").as_string());
  }
};

}  // namespace

TEST_CASE("WAL segments after a full backup restore to a time between two known writes, row by row",
          "[e2e][backup][pitr]") {
  PitrFixture f;
  f.start();
  const fs::path primary = f.db("primary");
  churn(primary, 1);
  const std::string id = f.full_backup();

  // The window exists as soon as the base segment is cut.
  REQUIRE(f.window_reaches(id, ""));
  auto full = f.find(id);
  INFO(json::serialize(full));
  CHECK(full.at("restorable").at("archiving").as_bool());

  // Known writes with pauses between them; T1 is between rounds 3 and 4.
  churn(primary, 2);
  churn(primary, 3);
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  const Rows at_t1 = rows_of(primary);
  const std::string t1 = iso_now();
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  for (int r = 4; r < 10; ++r) churn(primary, r);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const Rows at_end = rows_of(primary);
  const std::string t_end = iso_now();
  REQUIRE(at_t1 != at_end);
  REQUIRE(f.window_reaches(id, t_end));

  // Segments are catalogued as incrementals of the full, with their commit time range.
  int segments = 0;
  for (auto& b : f.backups()) {
    if (b.at("kind").as_string() != "incremental") continue;
    ++segments;
    CHECK(b.at("parent").as_string() == id);
    CHECK(b.at("content").as_string() == "sqlite-wal");
    CHECK(b.at("first_commit_at").as_string() <= b.at("last_commit_at").as_string());
    CHECK(b.at("encrypted").as_bool());
  }
  CHECK(segments >= 3);  // the base, then cuts by size (64KB) and time (300ms)
  auto text = f.drctl({"backups"});
  CHECK_THAT(text.out, Catch::Contains("RESTORABLE") && Catch::Contains(id));
  CHECK(text.out.find(id + ".seg-1") == std::string::npos);  // segments only with --segments
  auto plain = parse_out(f.drctl({"backups", "--json"})).as_array();
  for (auto& b : plain) CHECK(b.at("kind").as_string() == "full");

  const fs::path at1 = f.dir() / "at-t1.db";
  auto r1 = parse_out(f.drctl({"restore", id, "--target", at1.string(), "--to-time", t1, "--json"})).as_object();
  INFO(json::serialize(r1));
  CHECK(r1.at("integrity").as_string() == "ok");
  CHECK(rows_of(at1) == at_t1);

  const fs::path at_e = f.dir() / "at-end.db";
  CHECK(f.drctl({"restore", id, "--target", at_e.string(), "--to-time", t_end}).exit_code == 0);
  CHECK(rows_of(at_e) == at_end);

  // verify reads every segment too.
  auto v = parse_out(f.drctl({"verify", id, "--json"})).as_object();
  bool seg_check = false;
  for (auto& c : v.at("checks").as_array())
    if (c.at("name").as_string() == "segments") seg_check = c.at("ok").as_bool();
  CHECK(seg_check);

  // Beyond the archived WAL: a clear error, nothing written.
  const fs::path late = f.dir() / "late.db";
  auto beyond = f.drctl({"restore", id, "--target", late.string(), "--to-time", "2099-01-01T00:00:00Z"});
  CHECK(beyond.exit_code == 1);
  CHECK_THAT(beyond.err, Catch::Contains("WAL for 2099-01-01") && Catch::Contains("missing"));
  CHECK_FALSE(fs::exists(late));

  // Wrong key: refused before anything is written.
  write_key(f.dir() / "backup.key", 'b');
  const fs::path wrong = f.dir() / "wrong.db";
  auto wk = f.drctl({"restore", id, "--target", wrong.string(), "--to-time", t1});
  CHECK(wk.exit_code == 1);
  CHECK_THAT(wk.err, Catch::Contains("wrong key"));
  CHECK_FALSE(fs::exists(wrong));
  write_key(f.dir() / "backup.key", 'a');

  // A segment the replay needs is missing: named, nothing written; before it still works.
  const fs::path segdir = f.dir() / "backups" / id;
  REQUIRE(fs::exists(segdir / "seg-3"));
  fs::rename(segdir / "seg-3", f.dir() / "seg-3.aside");
  const fs::path gap = f.dir() / "gap.db";
  auto missing = f.drctl({"restore", id, "--target", gap.string(), "--to-time", t_end});
  CHECK(missing.exit_code == 1);
  CHECK_THAT(missing.err, Catch::Contains("segment 3") && Catch::Contains("missing"));
  CHECK_FALSE(fs::exists(gap));
  fs::rename(f.dir() / "seg-3.aside", segdir / "seg-3");
}

TEST_CASE("restore --force onto the primary takes a safety backup, restores and re-seeds the standbys",
          "[e2e][backup][restore-primary]") {
  PitrFixture f;
  f.start();
  const fs::path primary = f.db("primary");
  churn(primary, 1);
  const std::string id = f.full_backup();
  const Rows backed_up = rows_of(primary);
  churn(primary, 2);  // written after the backup: only the safety backup keeps it
  const Rows before_restore = rows_of(primary);
  REQUIRE(eventually([&] { return rows_of(f.db("secondary1")) == before_restore; }));

  // Without --force: refused, with the way out.
  auto refused = f.drctl({"restore", id, "--node", "primary"});
  CHECK(refused.exit_code == 1);
  CHECK_THAT(refused.err, Catch::Contains("live primary") && Catch::Contains("--force"));
  CHECK(rows_of(primary) == before_restore);

  // The application is stopped (nothing has the file open but drd).
  auto r = parse_out(f.drctl({"restore", id, "--node", "primary", "--force", "--json"})).as_object();
  INFO(json::serialize(r));
  CHECK(r.at("integrity").as_string() == "ok");
  CHECK(r.at("restored_to").as_string() == primary.string());
  const std::string safety(r.at("safety_backup").as_string());
  CHECK_FALSE(safety.empty());
  CHECK(rows_of(primary) == backed_up);

  // The safety backup holds what the primary had just before.
  auto sb = f.find(safety);
  CHECK(sb.at("name").as_string() == "before-restore");
  const fs::path from_safety = f.dir() / "safety.db";
  CHECK(f.drctl({"restore", safety, "--target", from_safety.string()}).exit_code == 0);
  CHECK(rows_of(from_safety) == before_restore);

  // Replication is back: the standbys are re-seeded from the restored file and follow new writes.
  CHECK(eventually([&] { return rows_of(f.db("secondary1")) == backed_up && rows_of(f.db("secondary2")) == backed_up; }));
  churn(primary, 3);
  const Rows after = rows_of(primary);
  CHECK(eventually([&] { return rows_of(f.db("secondary1")) == after; }));
  auto st = f.node_status("secondary1");
  CHECK(st.at("healthy").as_bool());
}
