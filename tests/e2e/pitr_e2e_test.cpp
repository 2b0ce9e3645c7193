// Incremental SQLite backups through a real drd and real drctl on real SQLite files: WAL
// segments archived from replication after a full backup, point-in-time restore between two
// known writes compared row by row, a missing segment, a wrong key, restore --force onto
// the primary (application stopped) with a safety backup and re-seeded standbys.
#include <catch2/catch.hpp>
#include <sqlite3.h>
#include <sys/stat.h>

#include <fstream>
#include <set>
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
  // The window ends at the last segment's cut, which can fall between the last write and
  // t_end; it moves past t_end with the next write's segment (docs/backups.md). So one more
  // write after t_end, which the restore to t_end must leave out.
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  churn(primary, 10);
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

namespace {

// The newest full backup of `node` with a restorable window, not in `seen` ("" if none).
std::string base_of(PitrFixture& f, const std::string& node, const std::set<std::string>& seen) {
  for (auto& b : f.backups()) {
    const auto& o = b.as_object();
    if (o.at("kind").as_string() != "full" || o.at("node").as_string() != node) continue;
    const std::string id(o.at("id").as_string());
    auto* w = o.if_contains("restorable");
    if (!seen.count(id) && w && w->is_object()) return id;
  }
  return "";
}

json::object pitr_status(PitrFixture& f) {
  auto st = f.call("status").as_object();
  REQUIRE(st.contains("pitr"));
  return st.at("pitr").as_object();
}

bool alert_firing(PitrFixture& f, const std::string& rule) {
  auto alerts = f.call("alerts");
  for (auto& a : alerts.at("firing").as_array())
    if (a.at("rule").as_string() == rule) return true;
  return false;
}

}  // namespace

TEST_CASE("after a switchover and an automatic failover point-in-time restore reaches writes on the new primary "
          "without a manual full backup",
          "[e2e][backup][pitr][pitr-coverage]") {
  PitrFixture f;
  f.start();
  churn(f.db("primary"), 1);
  const std::string id0 = f.full_backup();
  REQUIRE(f.window_reaches(id0, ""));
  churn(f.db("primary"), 2);
  std::set<std::string> seen{id0};

  // Switchover: a new base backup of the new primary continues coverage by itself.
  auto sw = f.drctl({"switchover", "secondary1"});
  INFO(sw.out << sw.err);
  REQUIRE(sw.exit_code == 0);
  std::string id1;
  REQUIRE(eventually([&] { return !(id1 = base_of(f, "secondary1", seen)).empty(); }, std::chrono::seconds(30)));
  seen.insert(id1);
  churn(f.db("secondary1"), 3);
  churn(f.db("secondary1"), 4);
  std::this_thread::sleep_for(std::chrono::milliseconds(400));  // commits are stamped when drd reads them
  const Rows at_t1 = rows_of(f.db("secondary1"));
  const std::string t1 = iso_now();
  churn(f.db("secondary1"), 40);  // a later write: segments are cut only after commits
  REQUIRE(f.window_reaches(id1, t1));
  const fs::path r1 = f.dir() / "after-switchover.db";
  auto out1 = parse_out(f.drctl({"restore", id1, "--target", r1.string(), "--to-time", t1, "--json"})).as_object();
  CHECK(out1.at("integrity").as_string() == "ok");
  CHECK(rows_of(r1) == at_t1);
  CHECK(eventually([&] { return pitr_status(f).at("archiving").as_string() == "live"; }));
  CHECK(pitr_status(f).at("open_gap_s").is_null());
  CHECK_FALSE(alert_firing(f, "pitr_gap"));

  // Automatic failover: the primary's file is lost.
  fs::rename(f.db("secondary1"), f.dir() / "lost-disk.db");
  std::string now_primary;
  REQUIRE(eventually(
      [&] {
        now_primary = std::string(f.call("status").at("primary").as_string());
        return now_primary != "secondary1";
      },
      std::chrono::seconds(30)));
  std::string id2;
  REQUIRE(eventually([&] { return !(id2 = base_of(f, now_primary, seen)).empty(); }, std::chrono::seconds(30)));
  churn(f.db(now_primary), 5);
  std::this_thread::sleep_for(std::chrono::milliseconds(400));  // commits are stamped when drd reads them
  const Rows at_t2 = rows_of(f.db(now_primary));
  const std::string t2 = iso_now();
  churn(f.db(now_primary), 50);
  REQUIRE(f.window_reaches(id2, t2));
  const fs::path r2 = f.dir() / "after-failover.db";
  CHECK(f.drctl({"restore", id2, "--target", r2.string(), "--to-time", t2}).exit_code == 0);
  CHECK(rows_of(r2) == at_t2);
  CHECK(eventually([&] { return pitr_status(f).at("archiving").as_string() == "live"; }));
  // The short stretches while each new base was taken are listed, closed, never open.
  auto final_pitr = pitr_status(f);
  for (auto& g : final_pitr.at("gaps").as_array()) CHECK_FALSE(g.at("to").is_null());
  CHECK_THAT(f.log(), Catch::Contains("continues point-in-time coverage"));
}

TEST_CASE("a gap in WAL archiving shows in backups and status, fires pitr_gap, and a restore into it is refused",
          "[e2e][backup][pitr][pitr-coverage]") {
  PitrFixture f;
  f.start();
  const fs::path primary = f.db("primary");
  churn(primary, 1);
  const std::string id0 = f.full_backup();
  REQUIRE(f.window_reaches(id0, ""));
  churn(primary, 2);
  const std::string t0 = iso_now();
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  churn(primary, 20);  // a later write: the window passes t0 only with the next segment's cut
  REQUIRE(f.window_reaches(id0, t0));
  CHECK(pitr_status(f).at("archiving").as_string() == "live");
  CHECK(pitr_status(f).at("gaps").as_array().empty());

  // Archiving fails: the folder its segments go to is replaced by a file.
  const fs::path segdir = f.dir() / "backups" / id0;
  fs::rename(segdir, f.dir() / "segdir.aside");
  std::ofstream(segdir) << "not a folder";
  churn(primary, 3);
  REQUIRE(eventually([&] { return pitr_status(f).at("archiving").as_string() == "stopped"; }, std::chrono::seconds(15)));
  auto p = pitr_status(f);
  INFO(json::serialize(p));
  REQUIRE(p.at("gaps").as_array().size() == 1);
  auto open = p.at("gaps").as_array()[0].as_object();
  CHECK(open.at("to").is_null());
  CHECK(open.at("after").as_string() == id0);
  CHECK(p.at("open_gap_s").to_number<double>() > 0);
  CHECK_THAT(std::string(p.at("reason").as_string()), Catch::Contains("could not be written"));
  const std::string gap_from(open.at("from").as_string());
  CHECK(f.find(id0).at("restorable").at("to").as_string() == gap_from);
  CHECK(f.find(id0).at("restorable").at("gap_after").at("to").is_null());
  CHECK_THAT(f.drctl({"status"}).out, Catch::Contains("GAP: nothing can be restored to from"));
  CHECK_THAT(f.drctl({"backups"}).out, Catch::Contains("GAP in point-in-time coverage") && Catch::Contains("until now"));
  CHECK(eventually([&] { return alert_firing(f, "pitr_gap"); }, std::chrono::seconds(10)));
  // Not papered over: drd does not retry a chain it could not write by itself.
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  CHECK(pitr_status(f).at("archiving").as_string() == "stopped");

  // Inside the open gap: refused, naming it.
  const std::string t_gap = iso_now();
  const fs::path in_gap = f.dir() / "in-gap.db";
  auto refused_open = f.drctl({"restore", id0, "--target", in_gap.string(), "--to-time", t_gap});
  CHECK(refused_open.exit_code == 1);
  CHECK_THAT(refused_open.err, Catch::Contains("gap in point-in-time coverage") && Catch::Contains("until now"));
  CHECK_FALSE(fs::exists(in_gap));

  // The folder is back and a full backup starts a new chain: the gap closes, the alert resolves.
  fs::remove(segdir);
  fs::rename(f.dir() / "segdir.aside", segdir);
  std::this_thread::sleep_for(std::chrono::milliseconds(400));  // commits are stamped when drd reads them
  const std::string id1 = f.full_backup();
  REQUIRE(f.window_reaches(id1, ""));
  churn(primary, 4);
  std::this_thread::sleep_for(std::chrono::milliseconds(400));  // commits are stamped when drd reads them
  const Rows at_t4 = rows_of(primary);
  const std::string t4 = iso_now();
  churn(primary, 5);
  REQUIRE(f.window_reaches(id1, t4));
  p = pitr_status(f);
  CHECK(p.at("archiving").as_string() == "live");
  REQUIRE(p.at("gaps").as_array().size() == 1);
  auto closed = p.at("gaps").as_array()[0].as_object();
  CHECK(closed.at("from").as_string() == gap_from);
  CHECK(closed.at("to").as_string() == f.find(id1).at("restorable").at("from").as_string());
  CHECK(closed.at("before").as_string() == id1);
  CHECK(eventually([&] { return !alert_firing(f, "pitr_gap"); }, std::chrono::seconds(10)));
  bool resolved = false;
  auto alerts = f.call("alerts");
  for (auto& a : alerts.at("recent").as_array())
    if (a.at("rule").as_string() == "pitr_gap" && a.at("state").as_string() == "resolved") resolved = true;
  CHECK(resolved);

  // Inside the closed gap: refused with both ends and both backups, whichever backup is named.
  for (const std::string& id : {id0, id1}) {
    auto refused = f.drctl({"restore", id, "--target", in_gap.string(), "--to-time", t_gap});
    CHECK(refused.exit_code == 1);
    CHECK_THAT(refused.err, Catch::Contains("gap in point-in-time coverage") && Catch::Contains(id0) &&
                                Catch::Contains(id1) && Catch::Contains(gap_from));
    CHECK_FALSE(fs::exists(in_gap));
  }
  // Either side of it works.
  const fs::path before = f.dir() / "before-gap.db";
  CHECK(f.drctl({"restore", id0, "--target", before.string(), "--to-time", t0}).exit_code == 0);
  const fs::path after = f.dir() / "after-gap.db";
  CHECK(f.drctl({"restore", id1, "--target", after.string(), "--to-time", t4}).exit_code == 0);
  CHECK(rows_of(after) == at_t4);
}
