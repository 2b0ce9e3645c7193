// PostgreSQL backups end to end: real drd + drctl on a real PostgreSQL 15 cluster.
// drctl backup (physical, logical), backups, verify, restore into a data folder and into a
// database URL (rows compared), the refusals for the live primary (a dump or a base backup
// without --force), a flipped byte found by
// verify and recorded in the catalog, and a failing pg_basebackup that leaves no entry.
#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <fstream>

#include "daemon/backup/pg_internal.hpp"
#include "tests/pg_e2e/pg_backup_support.hpp"

using namespace drd;
using namespace drd::test;
namespace fs = std::filesystem;
namespace json = boost::json;

namespace {

// Count and an md5 over every row in id order: any differing row changes it.
const char* kRows = "SELECT count(*) || ' ' || md5(string_agg(id || ':' || coalesce(v, '~'), ',' ORDER BY id)) FROM items";

json::value parse(const std::string& s) { return json::parse(s); }

backup::PgTools local_tools() {
  backup::PgTools t;
  t.bin_dir = PgCluster::bin_dir();
  t.os_user = PgCluster::kOsUser;
  return t;
}

std::size_t catalog_size(PgDrdFixture& f) { return f.call("backup.list").as_array().size(); }

}  // namespace

TEST_CASE("drctl backup, verify and restore on a PostgreSQL cluster", "[pg_e2e][backup]") {
  PgDrdOptions o;
  o.standbys = 1;
  TempDir tmp;
  o.extra_yaml = backup_yaml(tmp / "backups", make_backup_key(tmp / "backup.key"));
  PgDrdFixture f(o);
  f.start();
  f.pg().exec(0, "CREATE TABLE items(id int PRIMARY KEY, v text)");
  f.pg().exec(0, "INSERT INTO items SELECT g, md5(g::text) FROM generate_series(1, 20000) g");
  f.pg().exec(0, "UPDATE items SET v = NULL WHERE id % 101 = 0");
  const std::string want = f.pg().query(0, kRows).value();

  auto phys = f.drctl({"--json", "backup", "--name", "nightly"});
  INFO(phys.err << f.log());
  REQUIRE(phys.exit_code == 0);
  auto pb = parse(phys.out).as_object();
  CHECK(pb.at("engine").as_string() == "postgresql");
  CHECK(pb.at("kind").as_string() == "full");
  CHECK(pb.at("node").as_string() == "node0");
  CHECK(pb.at("encrypted").as_bool());
  const std::string phys_id(pb.at("id").as_string());
  auto logi = f.drctl({"--json", "backup", "--kind", "logical"});
  INFO(logi.err);
  REQUIRE(logi.exit_code == 0);
  auto lb = parse(logi.out).as_object();
  CHECK(lb.at("kind").as_string() == "logical");
  const std::string logi_id(lb.at("id").as_string());
  CHECK(catalog_size(f) == 2);
  // The manifest holds the WAL range.
  auto manifest = backup::read_manifest(tmp / "backups" / (phys_id + ".manifest.json"));
  REQUIRE(manifest);
  CHECK_FALSE(manifest->pg_start_lsn.empty());
  CHECK(manifest->pg_timeline == 1);

  f.pg().exec(0, "INSERT INTO items VALUES (-1, 'after the backups')");

  SECTION("verify both, restore both, rows compared") {
    auto v = f.drctl({"verify", phys_id});
    INFO(v.out << v.err);
    CHECK(v.exit_code == 0);
    auto vl = f.drctl({"verify", logi_id});
    INFO(vl.out << vl.err);
    CHECK(vl.exit_code == 0);
    auto list = f.call("backup.list");
    for (auto& e : list.as_array()) CHECK(e.as_object().at("verified") == json::value(true));

    fs::path target = f.pg().root() / "restored";
    auto r = f.drctl({"restore", phys_id, "--target", target.string()});
    INFO(r.out << r.err);
    REQUIRE(r.exit_code == 0);
    CHECK(r.out.find("pg_verifybackup ok") != std::string::npos);
    {
      RealProcessRunner runner;
      auto server = backup::pgi::ScratchServer::start(target, f.pg().root(), runner, local_tools());
      REQUIRE(server);
      auto rows = server.value()->query("postgres", "postgres", kRows);
      REQUIRE(rows);
      CHECK(*rows == want);
    }

    f.pg().exec(0, "CREATE DATABASE copy");
    std::string url = "postgresql://postgres@127.0.0.1:" + std::to_string(f.pg().port(0)) + "/copy";
    auto rl = f.drctl({"restore", logi_id, "--target", url});
    INFO(rl.out << rl.err);
    REQUIRE(rl.exit_code == 0);
    RealProcessRunner runner;
    auto tools = local_tools();
    auto rows = backup::pgi::run_tool(runner, tools,
                                      {(PgCluster::bin_dir() / "psql").string(), "-X", "-A", "-t", "-d", url, "-c", kRows});
    REQUIRE(rows);
    CHECK(rows->output == want + "\n");
  }

  SECTION("the live primary only with --force (a physical backup: tests/pg_e2e/pg_primary_restore_e2e_test.cpp)") {
    auto r = f.drctl({"restore", logi_id, "--node", "node0"});
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("--force") != std::string::npos);
    const auto pid = f.pg().postmaster_pid(0);
    auto p = f.drctl({"restore", phys_id, "--node", "node0"});
    CHECK(p.exit_code == 1);
    CHECK(p.err.find("node0 is the live primary") != std::string::npos);
    CHECK(p.err.find("rolls the whole cluster back") != std::string::npos);
    CHECK(p.err.find("pass --force") != std::string::npos);
    CHECK(p.err.find("--target PATH") != std::string::npos);
    CHECK(f.pg().postmaster_pid(0) == pid);
    auto s = f.drctl({"restore", logi_id, "--node", "node1", "--force"});
    CHECK(s.exit_code == 1);
    CHECK(s.err.find("standby") != std::string::npos);
    // With --force the dump replaces the primary's objects in one transaction, after a
    // physical safety backup of the primary (entered in the catalog, named in the reply).
    const std::string before = f.pg().query(0, kRows).value();
    auto forced = f.drctl({"--json", "restore", logi_id, "--node", "node0", "--force"});
    INFO(forced.out << forced.err);
    REQUIRE(forced.exit_code == 0);
    CHECK(f.pg().query(0, kRows).value() == want);  // the row written after the dump is gone
    const auto fo = parse(forced.out).as_object();
    REQUIRE(fo.contains("safety_backup"));
    const std::string safety(fo.at("safety_backup").as_string());
    const json::value list = parse(f.drctl({"--json", "backups"}).out);
    bool listed = false;
    for (auto& b : list.as_array())
      if (b.as_object().at("id").as_string() == safety) {
        listed = true;
        CHECK(b.as_object().at("name").as_string() == "before-restore");
        CHECK(b.as_object().at("content").as_string() == "pg-tar");
      }
    CHECK(listed);
    // The safety backup holds the data as it was just before the restore.
    ::chmod(tmp.path().c_str(), 0755);  // tar and the scratch server run as the postgres user
    const fs::path back = tmp / "before";
    auto r2 = f.drctl({"restore", safety, "--target", back.string()});
    INFO(r2.out << r2.err);
    REQUIRE(r2.exit_code == 0);
    std::string why;
    auto rows = query_restored(back, tmp / "sock", kRows, &why);
    INFO(why);
    CHECK(rows == std::optional<std::string>(before));
  }

  SECTION("a flipped byte fails verify, named, and the catalog records it") {
    fs::path data = tmp / "backups" / (phys_id + ".drdbk");
    std::fstream file(data, std::ios::in | std::ios::out | std::ios::binary);
    file.seekg(static_cast<std::streamoff>(fs::file_size(data) / 2));
    char c = 0;
    file.read(&c, 1);
    c ^= 0x20;
    file.seekp(static_cast<std::streamoff>(fs::file_size(data) / 2));
    file.write(&c, 1);
    file.close();
    auto v = f.drctl({"verify", phys_id});
    INFO(v.out << v.err);
    CHECK(v.exit_code == 1);
    CHECK((v.out + v.err).find("file_sha256") != std::string::npos);
    auto list = f.call("backup.list");
    for (auto& e : list.as_array())
      if (e.as_object().at("id").as_string() == phys_id) CHECK(e.as_object().at("verified") == json::value(false));
    auto r = f.drctl({"restore", phys_id, "--target", (f.pg().root() / "bad").string()});
    CHECK(r.exit_code == 1);
    CHECK_FALSE(fs::exists(f.pg().root() / "bad"));
  }
}

TEST_CASE("a failing pg_basebackup leaves no catalog entry and no files", "[pg_e2e][backup]") {
  PgDrdOptions o;
  o.standbys = 0;
  o.pg_settings = {{"max_wal_senders", "0"}};  // pg_basebackup's replication connection is refused
  TempDir tmp;
  o.extra_yaml = backup_yaml(tmp / "backups", make_backup_key(tmp / "backup.key"));
  PgDrdFixture f(o);
  f.start();
  auto r = f.drctl({"backup"});
  INFO(r.out << r.err << f.log());
  CHECK(r.exit_code == 1);
  CHECK(r.err.find("pg_basebackup exited with status 1") != std::string::npos);
  CHECK(r.err.find("max_wal_senders") != std::string::npos);
  CHECK(catalog_size(f) == 0);
  std::size_t files = 0;
  for (auto& e : fs::directory_iterator(tmp / "backups")) (void)e, ++files;
  CHECK(files == 0);
}
