// base_dir and path resolution: the pure resolvers (tables), the loader applying them to
// every path key (defaults included), the list --check-config prints, and the verdict on
// what is found at current_link.
#include <catch2/catch.hpp>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "common/config.hpp"
#include "common/config_paths.hpp"
#include "tests/support/temp_dir.hpp"

using namespace drd;
namespace fs = std::filesystem;

namespace {

std::string all_problems(const ConfigLoadResult& r) {
  std::string s;
  for (const auto& p : r.problems) s += p.to_string() + "\n";
  return s;
}

Config load_ok(const std::string& text, const fs::path& folder) {
  auto r = load_config_text(text, "config.yaml", folder);
  INFO(all_problems(r));
  REQUIRE(r.problems.empty());
  REQUIRE(r.config);
  return *r.config;
}

std::string value_of(const std::vector<ResolvedPath>& paths, const std::string& key) {
  for (const auto& p : paths)
    if (p.key == key) return p.path.string();
  return "<absent>";
}

}  // namespace

TEST_CASE("resolve_config_path: absolute stays, relative joins base, normalised, ~ is a plain name", "[config][paths]") {
  struct Row { const char* base; const char* p; const char* expected; };
  const Row rows[] = {
      {"/srv/app", "/var/lib/x.db", "/var/lib/x.db"},
      {"/srv/app", "/var/lib/../lib/./x.db", "/var/lib/x.db"},
      {"/srv/app", "./data/images_primary.db", "/srv/app/data/images_primary.db"},
      {"/srv/app", "data/a.db", "/srv/app/data/a.db"},
      {"/srv/app", "../other/a.db", "/srv/other/a.db"},
      {"/srv/app", "var/drd/", "/srv/app/var/drd"},
      {"/srv/app", ".", "/srv/app"},
      {"/srv/app", "./~/x", "/srv/app/~/x"},
      {"/", "data/a.db", "/data/a.db"},
  };
  for (const auto& r : rows) {
    INFO(r.base << " + " << r.p);
    CHECK(resolve_config_path(r.base, r.p) == fs::path(r.expected));
  }
}

TEST_CASE("resolve_base_dir: unset = the config folder, relative = against the config folder", "[config][paths]") {
  struct Row { const char* folder; const char* written; const char* expected; };
  const Row rows[] = {
      {"/srv/app/config", "", "/srv/app/config"},
      {"/srv/app/config/", "", "/srv/app/config"},
      {"/srv/app/config", "..", "/srv/app"},
      {"/srv/app/config", "../", "/srv/app"},
      {"/srv/app/config", ".", "/srv/app/config"},
      {"/srv/app/config", "./sub", "/srv/app/config/sub"},
      {"/srv/app/config", "/opt/app", "/opt/app"},
      {"/srv/app/config", "/opt/app/../app2/", "/opt/app2"},
  };
  for (const auto& r : rows) {
    INFO(r.folder << " base_dir: '" << r.written << "'");
    CHECK(resolve_base_dir(r.folder, r.written) == fs::path(r.expected));
  }
}

TEST_CASE("tilde_problem: ~ is never expanded, a leading ~ is refused with a way out", "[config][paths]") {
  struct Row { const char* written; bool refused; };
  const Row rows[] = {{"~", true},       {"~/data/a.db", true}, {"~app/data", true}, {"./~/a.db", false},
                      {"data/~/a", false}, {"/home/u/a.db", false}, {"", false}};
  for (const auto& r : rows) {
    INFO(r.written);
    auto why = tilde_problem(r.written);
    CHECK(why.has_value() == r.refused);
    if (why) {
      CHECK_THAT(*why, Catch::Contains("does not expand"));
      CHECK_THAT(*why, Catch::Contains(std::string("./") + r.written));
    }
  }
}

namespace {

// The application's layout: config/config.yaml, data and state next to config/.
const char* kAppLayout = R"(app_setting: kept for the application
disaster_recovery:
  base_dir: ..
  current_link: ./data/images.db
  databases:
    primary:    { type: primary,   url: "sqlite:///./data/images_primary.db" }
    secondary1: { type: secondary, url: "sqlite:///data/images_secondary1.db" }
  backup:
    encryption: { key_file: ./keys/backup.key }
  http: { listen: "127.0.0.1:8008", token_file: ./keys/http.token }
)";

}  // namespace

TEST_CASE("base_dir: .. resolves every relative path and every default against the app folder", "[config][paths]") {
  Config c = load_ok(kAppLayout, "/srv/app/config");
  CHECK(c.base_dir == "/srv/app");
  CHECK(c.file == "/srv/app/config/config.yaml");  // the file itself stays where it is
  struct Row { std::string key, expected; };
  const Row rows[] = {
      {"base_dir", "/srv/app"},
      {"state_dir", "/srv/app/var/drd"},
      {"control.socket", "/srv/app/var/drd/drd.sock"},
      {"current_link", "/srv/app/data/images.db"},
      {"databases.primary.url", "/srv/app/data/images_primary.db"},
      {"databases.secondary1.url", "/srv/app/data/images_secondary1.db"},
      {"backup.directory", "/srv/app/var/backups"},
      {"backup.encryption.key_file", "/srv/app/keys/backup.key"},
      {"http.token_file", "/srv/app/keys/http.token"},
  };
  const auto paths = resolved_paths(c);
  for (const auto& r : rows) {
    INFO(r.key);
    CHECK(value_of(paths, r.key) == r.expected);
  }
  CHECK(paths.size() == std::size(rows));  // nothing else is set, nothing listed twice
  for (const auto& p : paths) CHECK(p.path.is_absolute());
}

TEST_CASE("base_dir applies to PostgreSQL, store and explicit path keys, absolute paths stay", "[config][paths]") {
  const std::string pg = R"(disaster_recovery:
  base_dir: ../app
  state_dir: st
  control: { socket: run/drd.sock }
  databases:
    pg1:
      type: primary
      url: "postgresql://drd@db1/app"
      password_file: secrets/pg.pass
      data_dir: /var/lib/postgresql/15/main
      bin_dir: ./pgbin
    pg2: { url: "postgresql://drd@db2/app" }
  backup:
    directory: ./bk
    pg_wal_archive: { enabled: true }
  store:
    type: etcd
    endpoints: [https://127.0.0.1:2379]
    tls: { ca_file: tls/ca.pem, cert_file: tls/c.pem, key_file: /etc/drd/tls/k.pem }
    username: drd
    password_file: secrets/etcd.pass
    peer_token_file: secrets/peer.token
  local: pg1
)";
  Config c = load_ok(pg, "/srv/etc");
  const auto paths = resolved_paths(c);
  struct Row { std::string key, expected; };
  const Row rows[] = {
      {"base_dir", "/srv/app"},
      {"state_dir", "/srv/app/st"},
      {"control.socket", "/srv/app/run/drd.sock"},
      {"databases.pg1.password_file", "/srv/app/secrets/pg.pass"},
      {"databases.pg1.data_dir", "/var/lib/postgresql/15/main"},
      {"databases.pg1.bin_dir", "/srv/app/pgbin"},
      {"backup.directory", "/srv/app/bk"},
      {"backup.pg_wal_archive.spool", "/srv/app/bk/pg-wal-spool"},
      {"store.tls.ca_file", "/srv/app/tls/ca.pem"},
      {"store.tls.cert_file", "/srv/app/tls/c.pem"},
      {"store.tls.key_file", "/etc/drd/tls/k.pem"},
      {"store.password_file", "/srv/app/secrets/etcd.pass"},
      {"store.peer_token_file", "/srv/app/secrets/peer.token"},
  };
  for (const auto& r : rows) {
    INFO(r.key);
    CHECK(value_of(paths, r.key) == r.expected);
  }
  CHECK(value_of(paths, "databases.pg1.url") == "<absent>");  // a PostgreSQL URL is no path
  CHECK(*c.nodes[0].password_file == "/srv/app/secrets/pg.pass");
  CHECK(*c.store.ca_file == "/srv/app/tls/ca.pem");
}

TEST_CASE("without base_dir, paths resolve against the config folder exactly as before", "[config][paths]") {
  const std::string text = kAppLayout;
  Config with = load_ok(text, "/srv/app/config");
  std::string without_text = text;
  without_text.erase(without_text.find("  base_dir: ..\n"), std::string("  base_dir: ..\n").size());
  Config without = load_ok(without_text, "/srv/app/config");
  CHECK(without.base_dir == "/srv/app/config");
  CHECK(without.state_dir == "/srv/app/config/var/drd");
  CHECK(without.nodes[0].sqlite_path == "/srv/app/config/data/images_primary.db");
  CHECK(*without.current_link == "/srv/app/config/data/images.db");
  CHECK(with.nodes[0].sqlite_path == "/srv/app/data/images_primary.db");
  // An absolute base_dir stays.
  Config abs = load_ok("disaster_recovery:\n  base_dir: /opt/app\n  databases: { a: { url: \"sqlite:///a.db\" } }\n",
                       "/srv/app/config");
  CHECK(abs.nodes[0].sqlite_path == "/opt/app/a.db");
  CHECK(abs.state_dir == "/opt/app/var/drd");
}

TEST_CASE("a path starting with ~ is a config problem at its position, not a folder named ~", "[config][paths]") {
  struct Row { std::string yaml; int line, column; std::string key; };
  const Row rows[] = {
      {"disaster_recovery:\n  base_dir: ~/app\n  databases: { a: { url: \"sqlite:///a.db\" } }\n", 2, 13, "base_dir:"},
      {"disaster_recovery:\n  state_dir: ~/drd\n  databases: { a: { url: \"sqlite:///a.db\" } }\n", 2, 14, "state_dir:"},
      {"disaster_recovery:\n  databases: { a: { url: \"sqlite:///~/a.db\" } }\n", 2, 26, "databases.a.url:"},
      {"disaster_recovery:\n  current_link: \"~/x.db\"\n  databases: { a: { url: \"sqlite:///a.db\" } }\n", 2, 17,
       "current_link:"},
  };
  for (const auto& r : rows) {
    INFO(r.yaml);
    auto res = load_config_text(r.yaml, "config.yaml", "/srv/app/config");
    REQUIRE(res.problems.size() == 1);
    CHECK(res.problems[0].line == r.line);
    CHECK(res.problems[0].column == r.column);
    CHECK_THAT(res.problems[0].message, Catch::StartsWith(r.key));
    CHECK_THAT(res.problems[0].message, Catch::Contains("does not expand"));
  }
  // A lone ~ is YAML's null: the default, as for any other key.
  Config c = load_ok("disaster_recovery:\n  base_dir: ~\n  databases: { a: { url: \"sqlite:///a.db\" } }\n", "/srv/c");
  CHECK(c.base_dir == "/srv/c");
}

TEST_CASE("judge_current_link: only a symlink or nothing is acceptable, anything else names the path", "[config][paths][link]") {
  const fs::path link = "/srv/app/data/images.db";
  const std::vector<fs::path> nodes = {"/srv/app/data/images_primary.db", "/srv/app/data/images_secondary1.db"};
  struct Row {
    const char* what;
    LinkFacts facts;
    LinkLevel level;
    std::vector<std::string> says;
  };
  const Row rows[] = {
      {"missing", {LinkKind::missing, {}, 0, {}}, LinkLevel::info, {"does not exist", "creates it"}},
      {"symlink to a node (absolute)", {LinkKind::symlink, "/srv/app/data/images_primary.db", 0, {}}, LinkLevel::ok, {}},
      {"symlink to a node (relative)", {LinkKind::symlink, "images_secondary1.db", 0, {}}, LinkLevel::ok, {}},
      {"symlink to a node (relative, dotted)", {LinkKind::symlink, "../data/./images_primary.db", 0, {}}, LinkLevel::ok, {}},
      {"symlink elsewhere", {LinkKind::symlink, "/old/place/images.db", 0, {}}, LinkLevel::warning,
       {"symlink to /old/place/images.db", "none of the configured database files", "repoints"}},
      {"regular file", {LinkKind::regular_file, {}, 8192, {}}, LinkLevel::error,
       {"is a regular file (8192 bytes)", "not a symlink", "application's own database", "refuses to start"}},
      {"directory", {LinkKind::directory, {}, 0, {}}, LinkLevel::error, {"is a directory", "refuses to start"}},
      {"fifo", {LinkKind::other, {}, 0, "a FIFO"}, LinkLevel::error, {"is a FIFO", "refuses to start"}},
      {"unreadable", {LinkKind::unreadable, {}, 0, "Permission denied"}, LinkLevel::error,
       {"cannot be inspected: Permission denied"}},
  };
  for (const auto& r : rows) {
    INFO(r.what);
    auto v = judge_current_link(link, r.facts, nodes);
    CHECK(v.level == r.level);
    CHECK_THAT(v.message, Catch::StartsWith("current_link " + link.string() + " "));
    for (const auto& s : r.says) CHECK_THAT(v.message, Catch::Contains(s));
  }
}

TEST_CASE("inspect_link looks without following or changing anything", "[config][paths][link]") {
  drd::test::TempDir dir("drd-link");
  const fs::path file = dir / "file.db", sub = dir / "sub", link = dir / "link.db", fifo = dir / "fifo";
  drd::test::write_file(file, "application data");
  fs::create_directories(sub);
  fs::create_symlink("file.db", link);
  REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);

  CHECK(inspect_link(dir / "missing.db").kind == LinkKind::missing);
  CHECK(inspect_link(dir / "no/such/folder/x.db").kind == LinkKind::missing);
  auto f = inspect_link(file);
  CHECK(f.kind == LinkKind::regular_file);
  CHECK(f.size == std::string("application data").size());
  CHECK(inspect_link(sub).kind == LinkKind::directory);
  auto l = inspect_link(link);
  CHECK(l.kind == LinkKind::symlink);
  CHECK(l.target == "file.db");
  auto p = inspect_link(fifo);
  CHECK(p.kind == LinkKind::other);
  CHECK(p.detail == "a FIFO");
  CHECK(drd::test::read_file(file) == "application data");
}
