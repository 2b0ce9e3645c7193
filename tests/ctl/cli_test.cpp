// Command line -> JSON-RPC request: method names, params, timeouts, usage errors.
#include <catch2/catch.hpp>

#include <filesystem>

#include "ctl/cli.hpp"
#include "tests/support/temp_dir.hpp"

using namespace drd::ctl;
namespace json = boost::json;

namespace {

Invocation parsed(std::vector<std::string> args) {
  auto out = parse_command_line(args);
  INFO(out.err);
  REQUIRE(out.invocation);
  return *out.invocation;
}

}  // namespace

TEST_CASE("every command maps to its docs/rpc.md method and params", "[cli]") {
  struct Row { std::vector<std::string> args; const char* method; const char* params; };
  const Row rows[] = {
      {{"status"}, "status", "{}"},
      {{"test"}, "test", "{}"},
      {{"test", "--node", "s1"}, "test", R"({"node":"s1"})"},
      {{"backup"}, "backup.create", "{}"},
      {{"backup", "--name", "n", "--node", "s1", "--kind", "logical"}, "backup.create",
       R"({"name":"n","node":"s1","kind":"logical"})"},
      {{"backups"}, "backup.list", "{}"},
      {{"verify", "20261124-x"}, "backup.verify", R"({"id":"20261124-x"})"},
      {{"restore", "b1", "--node", "s2", "--force"}, "restore", R"({"id":"b1","node":"s2","force":true})"},
      {{"restore", "b1", "--target", "/tmp/new.db", "--to-time", "2026-11-24T05:00:00Z"}, "restore",
       R"({"id":"b1","target":"/tmp/new.db","to_time":"2026-11-24T05:00:00Z"})"},
      {{"failover", "secondary1"}, "failover", R"({"node":"secondary1"})"},
      {{"failover", "secondary1", "--force"}, "failover", R"({"node":"secondary1","force":true})"},
      {{"switchover", "s1"}, "switchover", R"({"node":"s1"})"},
      {{"history"}, "history", "{}"},
      {{"history", "--limit", "5"}, "history", R"({"limit":5})"},
      {{"start-monitoring"}, "monitoring.start", "{}"},
      {{"stop-monitoring"}, "monitoring.stop", "{}"},
      {{"enable-auto-failover"}, "auto_failover.enable", "{}"},
      {{"disable-auto-failover"}, "auto_failover.disable", "{}"},
      {{"health", "--since", "6h", "--node", "p"}, "health", R"({"since":"6h","node":"p"})"},
      {{"alerts"}, "alerts", "{}"},
      {{"primary", "--url"}, "primary", "{}"},
      {{"rejoin", "primary"}, "rejoin", R"({"node":"primary"})"},
      {{"rejoin", "primary", "--reclone"}, "rejoin", R"({"node":"primary","reclone":true})"},
      {{"clone", "s2"}, "clone", R"({"node":"s2"})"},
      {{"reload"}, "reload", "{}"},
      {{"audit", "--limit", "3"}, "audit", R"({"limit":3})"},
      {{"version"}, "", "{}"},
  };
  for (const auto& r : rows) {
    INFO(r.args.front());
    auto inv = parsed(r.args);
    CHECK(inv.command == r.args.front());
    CHECK(inv.method == r.method);
    CHECK(json::value(inv.params) == json::parse(r.params));
  }
}

TEST_CASE("verify and restore send an existing file as its absolute path", "[cli]") {
  drd::test::TempDir dir("drctl-cli");
  drd::test::write_file(dir / "b.drbk", "x");
  const auto prev = std::filesystem::current_path();
  std::filesystem::current_path(dir.path());
  auto v = parsed({"verify", "b.drbk"});
  auto r = parsed({"restore", "./b.drbk", "--target", "out/new.db"});
  auto id_like = parsed({"verify", "20261124T052920Z-primary-1a2b.seg-3"});
  auto missing = parse_command_line({"verify", "nope.drbk"});
  std::filesystem::current_path(prev);
  CHECK(json::value(v.params) == json::value{{"path", (dir.path() / "b.drbk").string()}});
  CHECK(r.params.at("path").as_string() == (dir.path() / "b.drbk").string());
  CHECK(r.params.at("target").as_string() == (dir.path() / "out/new.db").string());
  CHECK(json::value(id_like.params) == json::value{{"id", "20261124T052920Z-primary-1a2b.seg-3"}});
  // Written like a file, but there is no such file: not sent to drd as an id.
  CHECK_FALSE(missing.invocation);
  CHECK(missing.exit_code == 2);
  CHECK_THAT(missing.err, Catch::Contains("'nope.drbk': no such file, and not a backup id"));
}

TEST_CASE("global options work before or after the command", "[cli]") {
  auto a = parsed({"--socket", "/s", "--json", "--lang", "zh", "--no-color", "status"});
  auto b = parsed({"status", "--socket", "/s", "--json", "--lang", "zh", "--no-color"});
  for (const auto* inv : {&a, &b}) {
    CHECK(inv->globals.socket == "/s");
    CHECK(inv->globals.json);
    CHECK(inv->globals.lang == Lang::zh);
    CHECK(inv->globals.no_color);
  }
  auto c = parsed({"--config", "/etc/x.yaml", "history", "--limit", "2"});
  CHECK(c.globals.config == "/etc/x.yaml");
  CHECK_FALSE(c.globals.json);
  CHECK(c.globals.lang == Lang::en);
}

TEST_CASE("timeouts: 30s by default, 1h for long operations, --timeout wins", "[cli]") {
  using namespace std::chrono_literals;
  CHECK(parsed({"status"}).timeout == 30s);
  CHECK(parsed({"failover", "s1"}).timeout == 30s);
  for (auto cmd : {std::vector<std::string>{"backup"}, {"restore", "b", "--node", "s"}, {"verify", "b"}, {"switchover", "s"},
                   {"rejoin", "p"}, {"clone", "p"}}) {
    INFO(cmd.front());
    CHECK(parsed(cmd).timeout == 1h);
  }
  CHECK(parsed({"backup", "--timeout", "5m"}).timeout == 5min);
  CHECK(parsed({"--timeout", "2", "status"}).timeout == 2s);
  CHECK(parsed({"--timeout", "250ms", "status"}).timeout == 250ms);
  CHECK(parse_timeout("0.5") == std::chrono::milliseconds(500));
  CHECK_FALSE(parse_timeout("0"));
  CHECK_FALSE(parse_timeout("soon"));
  CHECK_FALSE(parse_timeout(""));
}

TEST_CASE("only backup may ask for progress notifications", "[cli]") {
  CHECK(parsed({"backup"}).progress);
  CHECK_FALSE(parsed({"restore", "b", "--target", "/t"}).progress);
  CHECK_FALSE(parsed({"status"}).progress);
}

TEST_CASE("usage errors exit 2 with a message naming the problem", "[cli]") {
  struct Row { std::vector<std::string> args; const char* says; };
  const Row rows[] = {
      {{}, "a command is required"},
      {{"frobnicate"}, "unknown command 'frobnicate'"},
      {{"--json", "frobnicate"}, "unknown command 'frobnicate'"},
      {{"--socket", "/s", "nope"}, "unknown command 'nope'"},
      {{"failover"}, "NODE is required"},
      {{"verify"}, "BACKUP is required"},
      {{"backup", "--kind", "incremental"}, "--kind"},
      {{"restore", "b", "--node", "a", "--target", "/t"}, "--node excludes --target"},
      {{"history", "--limit", "0"}, "--limit"},
      {{"history", "--limit", "many"}, "--limit"},
      {{"health", "--since", "yesterday"}, "not a duration"},
      {{"status", "--lang", "fr"}, "--lang"},
      {{"status", "--timeout", "forever"}, "not a timeout"},
      {{"status", "--bogus"}, "--bogus"},
      {{"status", "extra"}, "extra"},
      {{"restore", "backup.sql"}, "BACKUP 'backup.sql': no such file, and not a backup id; expected a backup id"},
      {{"restore", "b1"}, "restore needs a destination: --node NODE"},
      {{"--json", "failover"}, "NODE is required"},
  };
  for (const auto& r : rows) {
    auto out = parse_command_line(r.args);
    INFO((r.args.empty() ? "(none)" : r.args.front()) << ": " << out.err);
    CHECK_FALSE(out.invocation);
    CHECK(out.exit_code == 2);
    CHECK(out.err.rfind("drctl: ", 0) == 0);
    CHECK(out.err.find(r.says) != std::string::npos);
  }
}

TEST_CASE("a usage error says what the command expects, and prints JSON with --json", "[cli]") {
  auto fo = parse_command_line({"failover"});
  CHECK(fo.exit_code == 2);
  CHECK(fo.out.empty());
  CHECK_THAT(fo.err, Catch::Contains("usage: drctl failover NODE [--force]"));

  auto js = parse_command_line({"--json", "failover"});
  CHECK(js.exit_code == 2);
  INFO(js.out);
  auto doc = json::parse(js.out);
  CHECK_THAT(std::string(doc.at("error").at("message").as_string()), Catch::Contains("NODE is required"));
  CHECK(doc.at("error").at("usage_error").as_bool());
  CHECK(doc.at("error").at("usage").as_string() == "drctl failover NODE [--force]");

  auto restore = parse_command_line({"restore", "backup.sql", "--json"});
  CHECK(restore.exit_code == 2);
  auto rdoc = json::parse(restore.out);
  CHECK_THAT(std::string(rdoc.at("error").at("message").as_string()), Catch::Contains("backup.sql"));
  CHECK_THAT(std::string(rdoc.at("error").at("usage").as_string()), Catch::Contains("drctl restore BACKUP [--node NODE]"));

  auto unknown = parse_command_line({"--json", "frobnicate"});
  CHECK(unknown.exit_code == 2);
  CHECK(json::parse(unknown.out).at("error").at("message").as_string() == "unknown command 'frobnicate'");
}

TEST_CASE("help and version flags print and exit 0", "[cli]") {
  auto help = parse_command_line({"--help"});
  CHECK_FALSE(help.invocation);
  CHECK(help.exit_code == 0);
  for (auto cmd : {"status", "test", "backup", "backups", "verify", "restore", "failover", "switchover", "history",
                   "start-monitoring", "stop-monitoring", "enable-auto-failover", "disable-auto-failover", "health",
                   "alerts", "primary", "rejoin", "clone", "reload", "audit", "version"}) {
    INFO(cmd);
    CHECK(help.out.find(std::string("  ") + cmd + " ") != std::string::npos);
  }
  auto sub = parse_command_line({"restore", "--help"});
  CHECK(sub.exit_code == 0);
  CHECK(sub.out.find("--to-time") != std::string::npos);
  auto ver = parse_command_line({"--version"});
  CHECK(ver.exit_code == 0);
  CHECK(ver.out.rfind("drctl ", 0) == 0);
}
