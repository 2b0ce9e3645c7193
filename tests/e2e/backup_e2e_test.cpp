// Backups through a real drd and real drctl processes on real SQLite files:
// backup, catalog, verify, restore, wrong keys, retention, the missed-run-at-start path.
#include <catch2/catch.hpp>
#include <sqlite3.h>
#include <sys/stat.h>

#include <fstream>
#include <iterator>
#include <set>
#include <thread>

#include "tests/e2e/drd_fixture.hpp"

using namespace drd::test;
namespace json = boost::json;
namespace fs = std::filesystem;

namespace {

const char* kMarker = "PLAINTEXT-MARKER-7f3a9c";

void write_key(const fs::path& file, char fill) {
  std::ofstream(file, std::ios::trunc) << std::string(64, fill) << "\n";
  ::chmod(file.c_str(), 0600);
}

std::string backup_yaml(const std::string& extra = "") {
  return "  backup:\n"
         "    enabled: true\n"
         "    directory: ./backups\n"
         "    encryption: { key_file: ./backup.key }\n" +
         extra;
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

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

json::value parse_out(const RunResult& r) {
  INFO("stdout: " << r.out << "\nstderr: " << r.err);
  REQUIRE(r.exit_code == 0);
  return json::parse(r.out);
}

bool has_marker_row(const fs::path& db) {
  sqlite3* h = nullptr;
  bool found = false;
  if (sqlite3_open_v2(db.c_str(), &h, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    sqlite3_stmt* st = nullptr;
    std::string sql = std::string("SELECT count(*) FROM images WHERE url = '") + kMarker + "'";
    if (sqlite3_prepare_v2(h, sql.c_str(), -1, &st, nullptr) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
      found = sqlite3_column_int(st, 0) == 1;
    sqlite3_finalize(st);
  }
  sqlite3_close(h);
  return found;
}

struct BackupFixture : DrdFixture {
  explicit BackupFixture(const std::string& backup_extra = "", int standbys = 2)
      : DrdFixture(make_opts(backup_extra, standbys)) {
    write_key(dir() / "backup.key", 'a');
  }
  static DrdOptions make_opts(const std::string& extra, int standbys) {
    DrdOptions o;
    o.standbys = standbys;
    o.extra_yaml = backup_yaml(extra);
    return o;
  }
  json::object backup(std::vector<std::string> extra = {}) {
    std::vector<std::string> args{"backup", "--json"};
    args.insert(args.end(), extra.begin(), extra.end());
    return parse_out(drctl(args)).as_object();
  }
  json::array backups() { return parse_out(drctl({"backups", "--json"})).as_array(); }
};

}  // namespace

TEST_CASE("drctl backup writes an encrypted catalogued backup that verifies and restores", "[e2e][backup]") {
  BackupFixture f;
  f.start();
  exec_sql(f.db("primary"), std::string("INSERT INTO images (url, sha256, size, path, crawled_at) VALUES ('") + kMarker +
                                "', 'x', 1, '/m', 'now')");

  auto b = f.backup();
  INFO(json::serialize(b));
  const std::string id(b.at("id").as_string());
  const fs::path path(std::string(b.at("path").as_string()));
  CHECK(b.at("node").as_string() == "primary");
  CHECK(b.at("engine").as_string() == "sqlite");
  CHECK(b.at("kind").as_string() == "full");
  CHECK(b.at("name").as_string() == "manual");
  CHECK(b.at("encrypted").as_bool());
  CHECK(b.at("verified").is_null());
  CHECK(b.at("size_bytes").as_int64() > 0);
  CHECK(b.at("source_bytes").as_int64() > 0);
  CHECK(path.parent_path() == f.dir() / "backups");
  CHECK(fs::exists(path));
  CHECK(fs::exists(f.dir() / "backups" / (id + ".manifest.json")));
  // Encrypted: neither the marker row nor any other plaintext is in the file.
  auto bytes = slurp(path);
  CHECK(bytes.find(kMarker) == std::string::npos);
  CHECK(bytes.find("example.test") == std::string::npos);
  CHECK(bytes.find("CREATE TABLE") == std::string::npos);

  // Text output: the id and the path.
  auto text = f.drctl({"backup", "--name", "before-upgrade"});
  INFO(text.err);
  REQUIRE(text.exit_code == 0);
  CHECK_THAT(text.out, Catch::Contains("created"));
  CHECK_THAT(text.out, Catch::Contains("path: " + (f.dir() / "backups").string()));

  auto list = f.backups();
  REQUIRE(list.size() == 2);
  CHECK(list[0].at("name").as_string() == "before-upgrade");  // newest first
  CHECK(list[1].at("id").as_string() == id);
  for (const char* field : {"id", "name", "node", "engine", "kind", "created_at", "size_bytes", "source_bytes",
                            "encrypted", "verified", "path"})
    CHECK(list[1].as_object().contains(field));

  // verify ID: every check passes, and the catalog remembers it.
  auto v = f.drctl({"verify", id});
  INFO(v.out << v.err);
  CHECK(v.exit_code == 0);
  CHECK_THAT(v.out, Catch::Contains("verified"));
  auto vj = parse_out(f.drctl({"verify", id, "--json"})).as_object();
  CHECK(vj.at("ok").as_bool());
  CHECK(vj.at("id").as_string() == id);
  std::set<std::string> names;
  for (auto& c : vj.at("checks").as_array()) {
    INFO(json::serialize(c));
    CHECK(c.at("ok").as_bool());
    names.insert(std::string(c.at("name").as_string()));
  }
  for (const char* n : {"manifest", "data_file", "file_sha256", "decrypt", "plaintext_sha256", "test_restore", "integrity_check"})
    CHECK(names.count(n) == 1);
  CHECK(f.backups()[1].at("verified").as_bool());
  // The scratch restore is gone.
  for (auto& e : fs::directory_iterator(f.dir() / "backups")) CHECK(e.path().filename().string().rfind("drd-verify-", 0) != 0);

  // restore --target NEW: the rows equal the primary's.
  const fs::path target = f.dir() / "restored.db";
  auto r = f.drctl({"restore", id, "--target", target.string()});
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 0);
  CHECK_THAT(r.out, Catch::Contains("restored to " + target.string()));
  CHECK(count_rows(target) == count_rows(f.db("primary")));
  CHECK(count_rows(target) == 11);
  CHECK(has_marker_row(target));

  // An existing target is replaced only with --force.
  auto again = f.drctl({"restore", id, "--target", target.string()});
  CHECK(again.exit_code == 1);
  CHECK_THAT(again.err, Catch::Contains("already exists"));
  CHECK_THAT(again.err, Catch::Contains("--force"));
  auto forced = parse_out(f.drctl({"restore", id, "--target", target.string(), "--force", "--json"})).as_object();
  CHECK(forced.at("restored_to").as_string() == target.string());
  CHECK(forced.at("integrity").as_string() == "ok");
  CHECK(forced.at("id").as_string() == id);

  // A restore by the data file's path works without the catalog id.
  const fs::path by_path = f.dir() / "by_path.db";
  CHECK(f.drctl({"restore", path.string(), "--target", by_path.string()}).exit_code == 0);
  CHECK(count_rows(by_path) == 11);
}

TEST_CASE("restore refuses node files and standbys and the live primary without --force and PITR beyond the WAL", "[e2e][backup]") {
  BackupFixture f;
  f.start();
  const std::string id(f.backup().at("id").as_string());

  auto onto_file = f.drctl({"restore", id, "--target", f.db("secondary1").string(), "--force"});
  CHECK(onto_file.exit_code == 1);
  CHECK_THAT(onto_file.err, Catch::Contains("database file of node secondary1"));
  CHECK_THAT(onto_file.err, Catch::Contains("--node"));
  auto onto_link = f.drctl({"restore", id, "--target", (f.dir() / "data/current.db").string(), "--force"});
  CHECK(onto_link.exit_code == 1);
  CHECK_THAT(onto_link.err, Catch::Contains("database file of"));

  auto standby = f.drctl({"restore", id, "--node", "secondary1"});
  CHECK(standby.exit_code == 1);
  CHECK_THAT(standby.err, Catch::Contains("re-seeded from the primary automatically"));
  CHECK_THAT(standby.err, Catch::Contains("drctl rejoin secondary1"));

  auto primary = f.drctl({"restore", id, "--node", "primary"});
  CHECK(primary.exit_code == 1);
  CHECK_THAT(primary.err, Catch::Contains("live primary"));
  CHECK_THAT(primary.err, Catch::Contains("--force"));  // done in pitr_e2e_test.cpp
  CHECK(count_rows(f.db("primary")) == 10);

  const fs::path target = f.dir() / "pitr.db";
  auto pitr = f.drctl({"restore", id, "--target", target.string(), "--to-time", "2030-01-01 00:00:00"});
  CHECK(pitr.exit_code == 1);
  CHECK_THAT(pitr.err, Catch::Contains("WAL for 2030-01-01") && Catch::Contains("missing"));
  auto bad_time = f.drctl({"restore", id, "--target", target.string(), "--to-time", "yesterday"});
  CHECK(bad_time.exit_code == 1);
  CHECK_THAT(bad_time.err, Catch::Contains("to_time 'yesterday'"));
  CHECK_FALSE(fs::exists(target));

  auto unknown = f.drctl({"restore", "no-such-backup", "--target", target.string()});
  CHECK(unknown.exit_code == 1);
  CHECK_THAT(unknown.err, Catch::Contains("no backup with id no-such-backup"));
}

TEST_CASE("a flipped byte fails verify naming the check and a wrong key restores nothing", "[e2e][backup]") {
  BackupFixture f;
  f.start();
  auto b = f.backup();
  const std::string id(b.at("id").as_string());
  const fs::path path(std::string(b.at("path").as_string()));

  // Wrong key first (the file is still intact): a clear error, nothing written.
  write_key(f.dir() / "backup.key", 'b');
  const fs::path target = f.dir() / "wrong_key.db";
  auto r = f.drctl({"restore", id, "--target", target.string()});
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.err, Catch::Contains("wrong key"));
  CHECK_FALSE(fs::exists(target));
  CHECK_FALSE(fs::exists(target.string() + ".restore-tmp"));
  auto v = f.drctl({"verify", id});
  CHECK(v.exit_code == 1);
  CHECK_THAT(v.out + v.err, Catch::Contains("wrong key"));

  // A key file others may read: backups refuse it, naming the fix.
  write_key(f.dir() / "backup.key", 'a');
  ::chmod((f.dir() / "backup.key").c_str(), 0644);
  auto open_key = f.drctl({"backup"});
  CHECK(open_key.exit_code == 1);
  CHECK_THAT(open_key.err, Catch::Contains("chmod 600"));
  ::chmod((f.dir() / "backup.key").c_str(), 0600);
  {
    auto ok = f.drctl({"verify", id});
    INFO(ok.out << ok.err);
    CHECK(ok.exit_code == 0);
  }

  // One flipped byte in the middle of the data file.
  {
    std::fstream io(path, std::ios::in | std::ios::out | std::ios::binary);
    auto size = fs::file_size(path);
    io.seekg(static_cast<std::streamoff>(size / 2));
    char c = 0;
    io.read(&c, 1);
    c = static_cast<char>(c ^ 0x5a);
    io.seekp(static_cast<std::streamoff>(size / 2));
    io.write(&c, 1);
  }
  auto bad = f.drctl({"verify", id});
  INFO(bad.out << bad.err);
  CHECK(bad.exit_code == 1);
  CHECK_THAT(bad.out, Catch::Contains("FAILED"));
  CHECK_THAT(bad.out, Catch::Contains("file_sha256"));
  auto bj = json::parse(f.drctl({"verify", id, "--json"}).out).as_object();
  CHECK_FALSE(bj.at("ok").as_bool());
  bool sha_failed = false;
  for (auto& c : bj.at("checks").as_array())
    if (c.at("name").as_string() == "file_sha256") sha_failed = !c.at("ok").as_bool();
  CHECK(sha_failed);
  CHECK(f.backups()[0].at("verified").as_bool() == false);
  // And a restore of it leaves nothing behind.
  auto rc = f.drctl({"restore", id, "--target", target.string()});
  CHECK(rc.exit_code == 1);
  CHECK_FALSE(fs::exists(target));
}

TEST_CASE("retention keeps the newest backups and deletes and audits the rest", "[e2e][backup]") {
  BackupFixture f("    retention: { keep_last: 2, keep_daily: 0, keep_weekly: 0, keep_monthly: 0 }\n");
  f.start();
  std::vector<std::string> ids;
  for (int i = 0; i < 4; ++i) ids.emplace_back(f.backup().at("id").as_string());
  CHECK(eventually([&] { return f.backups().size() == 2; }));
  auto list = f.backups();
  REQUIRE(list.size() == 2);
  CHECK(list[0].at("id").as_string() == ids[3]);
  CHECK(list[1].at("id").as_string() == ids[2]);
  for (int i = 0; i < 2; ++i) {
    CHECK_FALSE(fs::exists(f.dir() / "backups" / (ids[i] + ".drdbk")));
    CHECK_FALSE(fs::exists(f.dir() / "backups" / (ids[i] + ".manifest.json")));
  }
  for (int i = 2; i < 4; ++i) CHECK(fs::exists(f.dir() / "backups" / (ids[i] + ".drdbk")));
  auto audit = f.call("audit", {{"limit", 50}}).as_array();
  std::set<std::string> pruned;
  for (auto& a : audit)
    if (a.at("method").as_string() == "backup.prune") {
      CHECK(a.at("uid").as_int64() == 0);
      CHECK(a.at("ok").as_bool());
      pruned.insert(std::string(a.at("params").at("id").as_string()));
    }
  CHECK(pruned == std::set<std::string>{ids[0], ids[1]});
  CHECK_THAT(f.log(), Catch::Contains("deleted backup " + ids[0]));
}

TEST_CASE("a scheduled run missed while drd was down is taken once at start", "[e2e][backup]") {
  BackupFixture f("    schedule: \"every 1h\"\n");
  f.start();
  CHECK(f.call("status").at("auto_backup").as_bool());
  CHECK(f.backups().empty());  // an empty catalog missed nothing
  auto first = f.backup();
  f.stop();
  // Make the only backup three hours old: at least two hourly runs fell in between.
  exec_sql(f.dir() / "state/state.db",
           "UPDATE backups SET created_at_ms = created_at_ms - 3*3600*1000, "
           "manifest = json_set(manifest, '$.created_at', strftime('%Y-%m-%dT%H:%M:%fZ', created_at_ms/1000.0 - 3*3600, 'unixepoch'))");
  // Leftovers of a crash mid-backup are removed at start.
  std::ofstream(f.dir() / "backups/20261124T000000Z-primary-dead.drdbk.partial") << "half";
  std::ofstream(f.dir() / "backups/20261124T000000Z-primary-dead.snapshot.tmp") << "half";
  f.start();
  CHECK(eventually([&] { return f.backups().size() == 2; }));
  CHECK_FALSE(fs::exists(f.dir() / "backups/20261124T000000Z-primary-dead.drdbk.partial"));
  CHECK_FALSE(fs::exists(f.dir() / "backups/20261124T000000Z-primary-dead.snapshot.tmp"));
  CHECK_THAT(f.log(), Catch::Contains("removed leftover of an interrupted backup"));
  auto list = f.backups();
  REQUIRE(list.size() == 2);
  CHECK(list[0].at("name").as_string() == "scheduled");
  CHECK(list[1].at("id") == first.at("id"));
  // Exactly one, however many runs were missed.
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  CHECK(f.backups().size() == 2);
}

TEST_CASE("backup refuses bad requests with errors that name the problem", "[e2e][backup]") {
  BackupFixture f;
  f.start();
  auto verify = f.call_error("backup.verify");
  CHECK(verify.code == drd::rpc::invalid_params);
  CHECK_THAT(verify.message, Catch::Contains("missing parameter \"id\""));
  auto restore = f.call_error("restore", {{"id", "x"}});
  CHECK_THAT(restore.message, Catch::Contains("missing parameter \"target\""));
  auto logical = f.call_error("backup.create", {{"kind", "logical"}});
  CHECK(logical.code == drd::rpc::not_supported);
  CHECK_THAT(logical.message, Catch::Contains("logical dumps are for PostgreSQL"));
  auto node = f.call_error("backup.create", {{"node", "nope"}});
  CHECK_THAT(node.message, Catch::Contains("no node named 'nope'"));
  auto type = f.call_error("backup.create", {{"name", 5}});
  CHECK(type.code == drd::rpc::invalid_params);
  auto rel = f.call_error("restore", {{"id", "x"}, {"target", "relative.db"}});
  CHECK_THAT(rel.message, Catch::Contains("absolute"));

  // A standby can be backed up by name; its backup restores to the same rows.
  auto s = f.backup({"--node", "secondary1"});
  CHECK(s.at("node").as_string() == "secondary1");
  const fs::path target = f.dir() / "from_standby.db";
  CHECK(f.drctl({"restore", std::string(s.at("id").as_string()), "--target", target.string()}).exit_code == 0);
  CHECK(count_rows(target) == 10);
  // No snapshot leftovers.
  for (auto& e : fs::directory_iterator(f.dir() / "backups")) {
    auto n = e.path().filename().string();
    CHECK(n.find(".tmp") == std::string::npos);
    CHECK(n.find(".partial") == std::string::npos);
  }
}

TEST_CASE("a second backup of the same node while one runs is refused", "[e2e][backup]") {
  BackupFixture f("", 1);
  // ~48 MiB of incompressible rows so the first backup is still streaming when the second asks.
  exec_sql(f.db("primary"), "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 48) "
                            "INSERT INTO images (url, sha256, size, path, crawled_at) "
                            "SELECT hex(randomblob(524288)), 'x', i, '/big', 'now' FROM n");
  fs::remove(f.db("secondary1"));
  fs::copy_file(f.db("primary"), f.db("secondary1"));
  f.start();
  REQUIRE(eventually([&] { return f.call("status").at("primary").as_string() == "primary"; }));
  drd::rpc::Client c(f.socket().string(), std::chrono::seconds(60));
  std::optional<drd::rpc::CallError> second;
  int notifications = 0;
  auto r = c.call("backup.create", {{"progress", true}}, [&](const json::object& n) {
    ++notifications;
    if (second) return;
    drd::rpc::Client c2(f.socket().string(), std::chrono::seconds(10));
    auto r2 = c2.call("backup.create", {});
    if (auto* e = std::get_if<drd::rpc::CallError>(&r2)) second = *e;
    else second = drd::rpc::CallError{false, 0, "second backup unexpectedly succeeded"};
    INFO(json::serialize(n));
    CHECK(n.at("method").as_string() == "progress");
    CHECK(n.at("params").at("phase").as_string() == "backup");
    CHECK(n.at("params").at("total").as_int64() > 0);
  });
  INFO(f.log());
  auto* first_error = std::get_if<drd::rpc::CallError>(&r);
  INFO("first backup failed: " << (first_error ? first_error->message : std::string("(no)")));
  REQUIRE(std::holds_alternative<json::value>(r));
  CHECK(notifications >= 1);
  REQUIRE(second.has_value());
  CHECK(second->code == drd::rpc::busy);
  CHECK_THAT(second->message, Catch::Contains("a backup of primary is already running"));
  CHECK(f.backups().size() == 1);
}

TEST_CASE("a plain .sql file restores into a new target", "[e2e][backup]") {
  BackupFixture f;
  f.start();
  const fs::path sql = f.dir() / "dump.sql";
  std::ofstream(sql) << "CREATE TABLE images (id INTEGER PRIMARY KEY, url TEXT, sha256 TEXT, size INTEGER, path TEXT, crawled_at TEXT);\n"
                        "INSERT INTO images (url) VALUES ('a; still a string');\nINSERT INTO images (url) VALUES ('b');\n";
  const fs::path target = f.dir() / "from_sql.db";
  auto r = f.drctl({"restore", sql.string(), "--target", target.string()});
  INFO(r.out << r.err);
  CHECK(r.exit_code == 0);
  CHECK(count_rows(target) == 2);
}

TEST_CASE("bash completion offers the ids of drd's backups through its socket", "[e2e][backup][completion]") {
  BackupFixture f;
  f.start();
  const std::string id(f.backup().at("id").as_string());
  auto complete = [&](const std::string& command, const std::string& current) {
    std::string script = "source \"$0\" || exit 9\n"
                         "COMP_WORDS=(\"$1\" --socket \"$2\" " + command + " '" + current + "')\n"
                         "COMP_CWORD=$((${#COMP_WORDS[@]} - 1))\n"
                         "_drctl\n"
                         "if ((${#COMPREPLY[@]})); then printf '%s\\n' \"${COMPREPLY[@]}\"; fi\n";
    auto r = run({"bash", "--norc", "--noprofile", "-c", script,
                  (fs::path(DRD_SOURCE_DIR) / "packaging/completion/drctl").string(), bin("drctl"), f.socket().string()});
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    return r.out;
  };
  CHECK(complete("verify", "") .find(id + "\n") != std::string::npos);
  CHECK(complete("restore", id.substr(0, 4)).find(id + "\n") != std::string::npos);
  CHECK(complete("restore " + id, "").find(id + "\n") == std::string::npos);  // only the first word is an id
}

TEST_CASE("status names the last good backup and the next scheduled one", "[e2e][backup][status]") {
  BackupFixture f("    schedule: \"every 6h\"\n");
  f.start();
  auto b = f.call("status").at("backups").as_object();
  INFO(json::serialize(b));
  CHECK(b.at("schedule").as_string() == "every 6h");
  REQUIRE(b.at("next_scheduled").is_string());
  CHECK(b.at("next_in_s").as_int64() <= 6 * 3600);
  const std::string id(f.backup().at("id").as_string());
  b = f.call("status").at("backups").as_object();
  INFO(json::serialize(b));
  REQUIRE(b.at("last_good").is_string());
  CHECK(b.at("last_good_age_s").as_int64() < 60);
  CHECK_FALSE(b.at("last_attempt_failed").as_bool());
}
