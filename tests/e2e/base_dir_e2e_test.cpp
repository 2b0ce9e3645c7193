// The application's layout with real drd processes: the config in <app>/config/config.yaml,
// base_dir: .. and ./data/... paths. drd must open <app>/data/..., keep its state in
// <app>/var, print every resolved path with --check-config, and never replace a regular
// file found at current_link.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>

#include "common/rpc.hpp"
#include "tests/e2e/drd_fixture.hpp"

using namespace drd::test;
namespace fs = std::filesystem;

namespace {

struct AppLayout {
  TempDir tmp{"drd-basedir"};
  fs::path app = tmp / "app";
  fs::path config = app / "config/config.yaml";
  fs::path data = app / "data";
  fs::path link = data / "images.db";
  fs::path socket = app / "var/drd/drd.sock";

  AppLayout() {
    fs::create_directories(data);
    make_sqlite_db(data / "images_primary.db", 10);
    fs::copy_file(data / "images_primary.db", data / "images_secondary1.db");
    write_file(config,
               "# the application's own settings, left alone by drd\n"
               "crawler: { database: \"sqlite:///./data/images_primary.db\" }\n"
               "disaster_recovery:\n"
               "  enabled: true\n"
               "  base_dir: ..\n"
               "  current_link: ./data/images.db\n"
               "  control: { socket_group: nogroup }\n"
               "  databases:\n"
               "    primary:    { type: primary,   priority: 0, url: \"sqlite:///./data/images_primary.db\" }\n"
               "    secondary1: { type: secondary, priority: 1, url: \"sqlite:///./data/images_secondary1.db\" }\n"
               "  monitoring: { interval: 100ms, timeout: 500ms }\n");
  }
  RunResult check() const { return run({bin("drd"), "--config", config.string(), "--check-config"}); }
};

std::string bytes_of(const fs::path& f) {
  std::ifstream in(f, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

TEST_CASE("base_dir: .. makes drd open <app>/data and keep its state in <app>/var", "[e2e][config][base_dir]") {
  AppLayout a;
  auto check = a.check();
  INFO("stdout: " << check.out << "\nstderr: " << check.err);
  REQUIRE(check.exit_code == 0);
  const std::string app = a.app.string();
  for (const std::string& line :
       {"base_dir = " + app, "state_dir = " + app + "/var/drd", "control.socket = " + app + "/var/drd/drd.sock",
        "current_link = " + app + "/data/images.db", "databases.primary.url = " + app + "/data/images_primary.db",
        "databases.secondary1.url = " + app + "/data/images_secondary1.db",
        "backup.directory = " + app + "/var/backups", a.config.string() + ": ok (2 databases)"})
    CHECK_THAT(check.out, Catch::Contains(line + "\n"));

  Background drd({bin("drd"), "--config", a.config.string(), "--foreground"}, a.tmp / "drd.log");
  bool up = eventually([&] {
    if (!drd.running()) return true;
    drd::rpc::Client c(a.socket.string(), std::chrono::milliseconds(500));
    return std::holds_alternative<boost::json::value>(c.call("ping"));
  });
  INFO(drd.log());
  REQUIRE(up);
  REQUIRE(drd.running());

  // The link was missing: created next to the application's data, and said so in the log.
  CHECK(fs::read_symlink(a.link) == a.data / "images_primary.db");
  CHECK_THAT(drd.log(), Catch::Contains("current_link " + a.link.string() + " does not exist"));
  CHECK_THAT(drd.log(), Catch::Contains("created current_link " + a.link.string()));
  // drd replicates the application's files: a row written through the link reaches the standby.
  app_exec(a.link, "INSERT INTO images (url) VALUES ('http://example.test/new.jpg')");
  CHECK(eventually([&] { return count_rows(a.data / "images_secondary1.db") == 11; }));
  // State where the application keeps it, nothing inside config/.
  CHECK(fs::exists(a.app / "var/drd/state.db"));
  CHECK_FALSE(fs::exists(a.app / "config/var"));
  CHECK_FALSE(fs::exists(a.app / "config/data"));
  // drctl --config finds the socket the same way.
  auto st = run({bin("drctl"), "--config", a.config.string(), "status"}, {{"NO_COLOR", "1"}});
  INFO("drctl: " << st.out << st.err);
  CHECK(st.exit_code == 0);
  CHECK_THAT(st.out, Catch::Contains("secondary1"));

  drd.signal(15);
  CHECK(drd.wait(std::chrono::seconds(10)) == 0);
}

TEST_CASE("a regular file at current_link is refused (exit 2) and left byte-identical", "[e2e][config][base_dir]") {
  AppLayout a;
  // The application's own database sits where current_link is configured.
  make_sqlite_db(a.link, 3);
  const std::string before = bytes_of(a.link);
  REQUIRE(before.size() > 0);
  const std::string says = "current_link " + a.link.string() + " is a regular file";

  auto check = a.check();
  INFO("stdout: " << check.out << "\nstderr: " << check.err);
  CHECK(check.exit_code == 2);
  CHECK_THAT(check.err, Catch::Contains(says));
  CHECK_THAT(check.err, Catch::Contains("drd: 1 problem in " + a.config.string()));
  CHECK_THAT(check.out, Catch::Contains("current_link = " + a.link.string() + "\n"));  // paths still shown

  auto start = run({bin("drd"), "--config", a.config.string(), "--foreground"}, {}, std::chrono::seconds(30));
  INFO("drd: " << start.out << start.err);
  CHECK(start.exit_code == 2);
  CHECK_THAT(start.err, Catch::Contains(says));
  CHECK(fs::is_regular_file(fs::symlink_status(a.link)));
  CHECK(bytes_of(a.link) == before);
  CHECK_FALSE(fs::exists(a.socket));
  CHECK_FALSE(fs::exists(a.link.string() + ".drd-tmp"));
}

TEST_CASE("a directory at current_link is refused, a symlink elsewhere is repointed with a warning", "[e2e][config][base_dir]") {
  AppLayout a;
  fs::create_directories(a.link);
  auto dir_check = a.check();
  INFO("stderr: " << dir_check.err);
  CHECK(dir_check.exit_code == 2);
  CHECK_THAT(dir_check.err, Catch::Contains("current_link " + a.link.string() + " is a directory"));
  auto start = run({bin("drd"), "--config", a.config.string(), "--foreground"}, {}, std::chrono::seconds(30));
  CHECK(start.exit_code == 2);
  CHECK(fs::is_directory(fs::symlink_status(a.link)));

  fs::remove(a.link);
  write_file(a.tmp / "elsewhere.db", "x");
  fs::create_symlink(a.tmp / "elsewhere.db", a.link);
  auto warn = a.check();
  INFO("stderr: " << warn.err);
  CHECK(warn.exit_code == 0);
  CHECK_THAT(warn.err, Catch::Contains("warning: current_link " + a.link.string() + " is a symlink to " +
                                       (a.tmp / "elsewhere.db").string()));
}
