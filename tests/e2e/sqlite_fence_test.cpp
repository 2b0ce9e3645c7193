// The persistent SQLite fence (daemon/engines/sqlite_fence.*): the record's format, the
// modes it clears and restores, and, with real drd processes, a fence that holds while drd
// is killed: an application of an ordinary user cannot commit to the fenced old primary.
#include <catch2/catch.hpp>
#include <grp.h>
#include <pwd.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <set>
#include <thread>

#include "daemon/engines/sqlite/sqlite_fence.hpp"
#include "tests/e2e/drd_fixture.hpp"

using namespace drd;
using namespace drd::test;

namespace {

unsigned mode_of(const std::filesystem::path& p) {
  struct stat st {};
  REQUIRE(::stat(p.c_str(), &st) == 0);
  return static_cast<unsigned>(st.st_mode) & 07777u;
}

struct Attempt {
  int code = -1;        // 0 committed, 1 cannot open, 2 the INSERT failed, 9 could not become the user
  std::string message;  // SQLite's
};

// Like an application running as the `nobody` user: a child process drops root, opens
// `file` read-write by that name (never creating it) and commits one INSERT.
Attempt insert_as_nobody(const std::filesystem::path& file, long long id) {
  struct passwd* pw = ::getpwnam("nobody");
  REQUIRE(pw != nullptr);
  const uid_t uid = pw->pw_uid;
  const gid_t gid = pw->pw_gid;
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::close(fds[0]);
    auto say = [&](int code, const std::string& msg) {
      (void)!::write(fds[1], msg.data(), msg.size());
      ::_exit(code);
    };
    if (::setgroups(0, nullptr) != 0 || ::setgid(gid) != 0 || ::setuid(uid) != 0 || ::getuid() != uid)
      say(9, "cannot become nobody");
    sqlite3* db = nullptr;
    int rc = sqlite3_open_v2(file.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr);
    if (rc != SQLITE_OK) say(1, std::string("open: ") + (db ? sqlite3_errmsg(db) : sqlite3_errstr(rc)));
    sqlite3_busy_timeout(db, 500);
    const std::string sql = "INSERT INTO images (id, url) VALUES (" + std::to_string(id) + ", 'nobody')";
    rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr);
    if (rc != SQLITE_OK) say(2, "insert: " + std::to_string(sqlite3_extended_errcode(db)) + " " + sqlite3_errmsg(db));
    sqlite3_close(db);
    say(0, "committed");
  }
  ::close(fds[1]);
  Attempt a;
  char buf[512];
  ssize_t n;
  while ((n = ::read(fds[0], buf, sizeof buf)) > 0) a.message.append(buf, static_cast<std::size_t>(n));
  ::close(fds[0]);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  a.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return a;
}

std::set<long long> ids_in(const std::filesystem::path& file) {
  std::set<long long> ids;
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(file.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_busy_timeout(db, 2000);
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2(db, "SELECT id FROM images", -1, &st, nullptr);
    while (sqlite3_step(st) == SQLITE_ROW) ids.insert(sqlite3_column_int64(st, 0));
    sqlite3_finalize(st);
  }
  sqlite3_close(db);
  return ids;
}

}  // namespace

TEST_CASE("fence record: format and parse round trip, and what is refused", "[unit][fence]") {
  sqlite_fence::FenceRecord r;
  r.db_mode = 0664;
  r.wal_mode = 0660;
  r.since = "2026-12-07T14:00:00Z";
  r.reason = "primary: failover to secondary1 (term 3)\nsecond line";
  const std::string text = sqlite_fence::format_record(r);
  CHECK(text.rfind("drd-fenced v1\nmode 0664\nwal_mode 0660\n", 0) == 0);
  auto back = sqlite_fence::parse_record(text);
  REQUIRE(back.ok());
  CHECK(back->db_mode == 0664);
  CHECK(back->wal_mode == std::optional<unsigned>(0660));
  CHECK(!back->shm_mode);
  CHECK(back->since == r.since);
  CHECK(back->reason == "primary: failover to secondary1 (term 3) second line");  // one line

  struct Row {
    const char* text;
    bool ok;
    unsigned mode;
  };
  const Row rows[] = {
      {"drd-fenced v1\nmode 0644\n", true, 0644},
      {"drd-fenced v1\nmode 644\nfuture_key x\n", true, 0644},  // unknown keys are ignored
      {"drd-fenced v1\nmode 4755\n", true, 04755},
      {"drd-fenced v1\nreason no mode\n", false, 0},            // the original mode is unknown
      {"drd-fenced v1\nmode 0844\n", false, 0},                 // not octal
      {"drd-fenced v1\nmode 17777\n", false, 0},                // more than permission bits
      {"drd-fenced v1\nmode \n", false, 0},
      {"drd-fenced v1\nmode 0644\nwal_mode x\n", false, 0},
      {"something else\nmode 0644\n", false, 0},
      {"", false, 0},
  };
  for (const auto& row : rows) {
    INFO(row.text);
    auto p = sqlite_fence::parse_record(row.text);
    CHECK(p.ok() == row.ok);
    if (p.ok() && row.ok) CHECK(p->db_mode == row.mode);
  }
}

TEST_CASE("fence on disk: apply clears write bits and keeps the first record, lift restores", "[unit][fence]") {
  TempDir dir;
  const auto db = dir / "app.db";
  make_sqlite_db(db, 3);
  REQUIRE(::chmod(db.c_str(), 0664) == 0);
  write_file(db.string() + "-wal", "");
  REQUIRE(::chmod((db.string() + "-wal").c_str(), 0660) == 0);

  REQUIRE(sqlite_fence::apply(db, "first reason").ok());
  CHECK(sqlite_fence::fenced_on_disk(db));
  CHECK(mode_of(db) == 0444);
  CHECK(mode_of(db.string() + "-wal") == 0440);
  // A second apply (drd re-applies every second and at start) keeps the original modes.
  write_file(db.string() + "-shm", "");
  REQUIRE(::chmod((db.string() + "-shm").c_str(), 0666) == 0);  // made after fencing
  REQUIRE(sqlite_fence::apply(db, "second reason").ok());
  CHECK(mode_of(db.string() + "-shm") == 0444);
  auto rec = sqlite_fence::parse_record(read_file(sqlite_fence::record_path(db)));
  REQUIRE(rec.ok());
  CHECK(rec->db_mode == 0664);
  CHECK(rec->reason == "first reason");

  auto lifted = sqlite_fence::lift(db);
  REQUIRE(lifted.ok());
  REQUIRE(lifted->has_value());
  CHECK((*lifted)->db_mode == 0664);
  CHECK(!sqlite_fence::fenced_on_disk(db));
  CHECK(mode_of(db) == 0664);
  CHECK(mode_of(db.string() + "-wal") == 0660);
  CHECK(mode_of(db.string() + "-shm") == 0664);  // not recorded: the database's mode
  // Nothing to lift, nothing to fence.
  auto again = sqlite_fence::lift(db);
  REQUIRE(again.ok());
  CHECK(!again->has_value());
  CHECK(sqlite_fence::apply(dir / "missing.db", "x").ok());
  CHECK(!sqlite_fence::fenced_on_disk(dir / "missing.db"));
  // A record that cannot be read is never guessed at: lift refuses, the file stays fenced.
  REQUIRE(sqlite_fence::apply(db, "r").ok());
  write_file(sqlite_fence::record_path(db), "garbage\n");
  CHECK(!sqlite_fence::lift(db).ok());
  CHECK(mode_of(db) == 0444);
}

TEST_CASE("a fence outlives drd: killed, an ordinary user's application cannot commit to the fenced old primary",
          "[e2e][sqlite-ha][fence]") {
  if (::getuid() != 0) {
    WARN("needs root (to run the application as nobody); not run");
    return;
  }
  DrdFixture f;
  // An application user (nobody) that may write the databases, as the application's own
  // user would: the files are 0666 before drd starts (SQLite gives -wal/-shm the same mode)
  // and nobody can reach the folders.
  REQUIRE(::chmod(f.dir().c_str(), 0755) == 0);
  REQUIRE(::chmod((f.dir() / "data").c_str(), 0755) == 0);
  for (auto node : {"primary", "secondary1", "secondary2"}) REQUIRE(::chmod(f.db(node).c_str(), 0666) == 0);
  const auto old_link = f.dir() / "old-link.db";  // an application's own link to the old primary
  std::filesystem::create_symlink(f.db("primary"), old_link);
  f.start();

  // The control: before the fence, nobody commits (so the refusals below are the fence's).
  {
    auto a = insert_as_nobody(f.dir() / "data/current.db", 900001);
    INFO(a.message);
    REQUIRE(a.code == 0);
  }
  REQUIRE(eventually([&] { return ids_in(f.db("secondary1")).count(900001) == 1; }));

  auto r = f.drctl({"failover", "secondary1"});
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 0);
  REQUIRE(f.call("primary").at("name").as_string() == "secondary1");
  CHECK(eventually([&] { return f.node_status("primary").at("role").as_string() == "fenced"; }));
  // Fenced on disk: read-only, and the record keeps the original mode and why.
  const auto record = sqlite_fence::record_path(f.db("primary"));
  REQUIRE(std::filesystem::exists(record));
  CHECK(mode_of(f.db("primary")) == 0444);
  auto rec = sqlite_fence::parse_record(read_file(record));
  REQUIRE(rec.ok());
  CHECK(rec->db_mode == 0666);
  CHECK_THAT(rec->reason, Catch::Contains("failover to secondary1"));
  const auto before = ids_in(f.db("primary"));

  // drd killed: its lock is gone, the fence on disk is not.
  f.stop(9);
  for (const auto& path : {f.db("primary"), old_link}) {
    auto a = insert_as_nobody(path, 900002);
    INFO(path << ": " << a.message);
    CHECK(a.code != 0);
    CHECK(a.code != 9);
  }
  CHECK(ids_in(f.db("primary")) == before);
  CHECK(mode_of(f.db("primary")) == 0444);

  // Restarted: still fenced (the store says so, the mode and record stay).
  f.start();
  CHECK(eventually([&] { return f.node_status("primary").at("role").as_string() == "fenced"; }));
  CHECK(std::filesystem::exists(record));
  CHECK(mode_of(f.db("primary")) == 0444);
  {
    auto a = insert_as_nobody(f.db("primary"), 900003);
    INFO(a.message);
    CHECK(a.code != 0);
  }

  // Only rejoin lifts it: the original mode is back, the node follows again.
  r = f.drctl({"rejoin", "primary"});
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(!std::filesystem::exists(record));
  CHECK(mode_of(f.db("primary")) == 0666);
  CHECK(eventually([&] { return f.node_status("primary").at("role").as_string() == "standby"; }));
  app_exec(f.dir() / "data/current.db",
           "INSERT INTO images (id, url, sha256, size, path, crawled_at) VALUES (900010, 'u', 's', 1, 'p', 'now')");
  CHECK(eventually([&] { return ids_in(f.db("primary")).count(900010) == 1; }));
  CHECK(ids_in(f.db("primary")) == ids_in(f.db("secondary1")));
}

TEST_CASE("a file carrying a fence record is never shipped to, even when the store does not name it fenced",
          "[e2e][sqlite-ha][fence]") {
  DrdFixture f;
  REQUIRE(::chmod(f.db("secondary2").c_str(), 0664) == 0);
  // As if fenced by a drd whose state folder was lost since: only the record tells.
  REQUIRE(sqlite_fence::apply(f.db("secondary2"), "secondary2: fenced by an earlier drd").ok());
  f.start();
  app_exec(f.dir() / "data/current.db",
           "INSERT INTO images (id, url, sha256, size, path, crawled_at) VALUES (910001, 'u', 's', 1, 'p', 'now')");
  REQUIRE(eventually([&] { return ids_in(f.db("secondary1")).count(910001) == 1; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // a few more ticks in which drd could ship
  CHECK(ids_in(f.db("secondary2")).count(910001) == 0);
  CHECK(sqlite_fence::fenced_on_disk(f.db("secondary2")));
  CHECK(mode_of(f.db("secondary2")) == 0444);
  CHECK_THAT(f.log(), Catch::Contains("secondary2 carries a fence record"));

  // A rejoin that does not re-seed it (refused: drd never gave this copy a history) keeps it
  // fenced on disk.
  auto refused = f.drctl({"rejoin", "secondary2", "--reclone"});
  INFO(refused.out << refused.err);
  CHECK(refused.exit_code == 1);
  CHECK_THAT(refused.err, Catch::Contains("refused"));
  CHECK(sqlite_fence::fenced_on_disk(f.db("secondary2")));
  CHECK(mode_of(f.db("secondary2")) == 0444);
  // The operator's --discard: the fence is lifted and the copy re-seeded, in its original mode.
  auto r = f.drctl({"rejoin", "secondary2", "--discard"});
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(!sqlite_fence::fenced_on_disk(f.db("secondary2")));
  CHECK(mode_of(f.db("secondary2")) == 0664);
  CHECK(eventually([&] { return ids_in(f.db("secondary2")).count(910001) == 1; }));
}
