// The real drctl process against a fake drd: exit codes 0/1/2/3, --json
// passthrough, error and hint printing, socket resolution from env and config.
#include <catch2/catch.hpp>

#include "fake_drd.hpp"
#include "tests/support/temp_dir.hpp"

using namespace drd::test;
namespace json = boost::json;
namespace rpc = drd::rpc;

namespace {

const char* kStatus = R"({"enabled": true, "primary": "primary", "term": 3, "monitoring": true,
  "auto_failover": false, "auto_backup": true, "failure_threshold": 3, "failover_state": "normal",
  "failover_reason": "", "interval_ms": 1000,
  "nodes": [{"name": "primary", "type": "primary", "role": "primary", "priority": 0, "engine": "sqlite",
             "healthy": true, "connection": "ok", "response_time_ms": 0.42, "lag_bytes": 0, "lag_ms": 0,
             "url": "sqlite:///var/data/p.db", "consecutive_failures": 0, "last_error": "", "fenced": false}],
  "daemon": {"pid": 1, "version": "0.1.0", "uptime_s": 5, "config": "/etc/drd/drd.yaml"}})";

struct Fixture {
  TempDir dir{"drctl-e2e"};
  FakeDrd drd{dir / "drd.sock"};
  Run run(std::vector<std::string> args, std::vector<std::string> env = {}) {
    args.insert(args.begin(), {"--socket", drd.path()});
    return run_drctl(args, env);
  }
};

}  // namespace

TEST_CASE("status prints the panel without colour when stdout is not a TTY", "[e2e]") {
  Fixture f;
  f.drd.reply("status", json::parse(kStatus));
  auto r = f.run({"status"});
  INFO(r.err);
  CHECK(r.rc == 0);
  CHECK(r.out.rfind("=== Disaster Recovery Status ===\n", 0) == 0);
  CHECK(r.out.find("  [ok] primary (primary)\n") != std::string::npos);
  CHECK(r.out.find("Auto failover: disabled\n") != std::string::npos);
  CHECK(r.out.find("\033[") == std::string::npos);
  CHECK(r.err.empty());
  auto zh = f.run({"status", "--lang", "zh"});
  CHECK(zh.rc == 0);
  CHECK(zh.out.find("=== 容灾备份系统状态 ===\n容灾备份功能: 启用\n") == 0);
  REQUIRE(f.drd.requests().size() == 2);
  CHECK(f.drd.requests()[0].method == "status");
}

TEST_CASE("with --json drctl prints exactly the daemon's result, for any command", "[e2e]") {
  Fixture f;
  const json::value status = json::parse(kStatus);
  const json::value history = json::parse(R"([{"time": "2026-11-24T05:29:20.123Z", "from": "primary",
      "to": "secondary1", "mode": "auto", "reason": "down", "duration_ms": 412, "lag_bytes": 0, "term": 4}])");
  f.drd.reply("status", status);
  f.drd.reply("history", history);
  f.drd.reply("monitoring.stop", json::object{{"monitoring", false}});
  struct Row { std::vector<std::string> args; json::value expected; };
  const Row rows[] = {{{"status", "--json"}, status},
                      {{"--json", "history"}, history},
                      {{"stop-monitoring", "--json"}, json::object{{"monitoring", false}}}};
  for (const auto& row : rows) {
    auto r = f.run(row.args);
    INFO(row.args.front() << " " << r.err);
    CHECK(r.rc == 0);
    REQUIRE(!r.out.empty());
    CHECK(r.out.back() == '\n');
    CHECK(r.out.find('\n') == r.out.size() - 1);  // one document, one line
    CHECK(json::parse(r.out) == row.expected);
  }
}

TEST_CASE("a refusal exits 1 with the daemon's message and hint on stderr", "[e2e]") {
  Fixture f;
  f.drd.fail("failover", rpc::operation_failed, "secondary1 lags 64.0 MiB behind (max_lag 16.0 MiB)",
             json::object{{"errc", "refused"}, {"hint", "use --force to promote it anyway"}});
  auto r = f.run({"failover", "secondary1"});
  CHECK(r.rc == 1);
  CHECK(r.out.empty());
  CHECK(r.err == "drctl: secondary1 lags 64.0 MiB behind (max_lag 16.0 MiB)\nhint: use --force to promote it anyway\n");
  auto req = f.drd.requests().at(0);
  CHECK(req.method == "failover");
  CHECK(json::value(req.params) == json::parse(R"({"node": "secondary1"})"));

  auto j = f.run({"--json", "failover", "secondary1"});
  CHECK(j.rc == 1);
  auto doc = json::parse(j.out);
  CHECK(doc.at("error").at("code") == rpc::operation_failed);
}

TEST_CASE("a capability drd does not have yet prints its message plainly and exits 1", "[e2e]") {
  Fixture f;
  f.drd.fail("clone", rpc::not_supported, "clone of SQLite nodes is not supported by this drd yet");
  auto r = f.run({"clone", "secondary2"});
  CHECK(r.rc == 1);
  CHECK(r.err == "clone of SQLite nodes is not supported by this drd yet\n");
}

TEST_CASE("permission and busy errors carry a hint even when drd gives none", "[e2e]") {
  Fixture f;
  f.drd.fail("reload", rpc::permission_denied, "uid 1000 may not call reload");
  f.drd.fail("switchover", rpc::busy, "a failover is running");
  auto p = f.run({"reload"});
  CHECK(p.rc == 1);
  CHECK(p.err.find("hint: run drctl as root") != std::string::npos);
  auto m = f.run({"audit"});  // FakeDrd answers -32601 to methods it was not given
  CHECK(m.rc == 1);
  CHECK(m.err == "drctl: unknown method\nhint: the running drd does not know this command; is drctl newer than drd?\n");
  auto b = f.run({"switchover", "s1"});
  CHECK(b.rc == 1);
  CHECK(b.err.find("hint: another operation is running") != std::string::npos);
}

TEST_CASE("usage errors exit 2 without contacting drd", "[e2e]") {
  Fixture f;
  for (auto args : {std::vector<std::string>{"frobnicate"}, {"failover"}, {"backup", "--kind", "weird"}, {}}) {
    auto r = f.run(args);
    INFO(r.err);
    CHECK(r.rc == 2);
    CHECK(r.err.rfind("drctl: ", 0) == 0);
  }
  CHECK(f.drd.requests().empty());
  auto help = f.run({"--help"});
  CHECK(help.rc == 0);
  CHECK(help.out.find("Usage: drctl") != std::string::npos);
}

TEST_CASE("an unreachable drd exits 3 and says how to start it", "[e2e]") {
  TempDir dir("drctl-e2e");
  const std::string sock = (dir / "nobody.sock").string();
  auto r = run_drctl({"status", "--socket", sock});
  CHECK(r.rc == 3);
  CHECK(r.err == "drctl: cannot reach drd at " + sock +
                     ": No such file or directory (is drd running? start it with `make run` or `systemctl start drd`)\n");
  auto j = run_drctl({"status", "--json", "--socket", sock});
  CHECK(j.rc == 3);
  CHECK(json::parse(j.out).at("error").at("unreachable") == true);
}

TEST_CASE("a drd that never answers times out with exit 3", "[e2e]") {
  Fixture f;
  f.drd.on("status", [](const rpc::Request&) { return std::vector<std::string>{}; });
  auto r = f.run({"status", "--timeout", "300ms"});
  CHECK(r.rc == 3);
  CHECK(r.err.find("did not answer in time") != std::string::npos);
}

TEST_CASE("test exits 1 when a node fails, 0 when all answer", "[e2e]") {
  Fixture f;
  f.drd.reply("test", json::parse(R"({"nodes": [{"name": "primary", "ok": true, "response_time_ms": 0.42},
      {"name": "secondary1", "ok": false, "error": "file not found: /x.db"}]})"));
  auto bad = f.run({"test"});
  CHECK(bad.rc == 1);
  CHECK(bad.out == "primary     ok      0.42 ms\nsecondary1  FAILED  file not found: /x.db\n");
  f.drd.reply("test", json::parse(R"({"nodes": [{"name": "primary", "ok": true, "response_time_ms": 1}]})"));
  CHECK(f.run({"test"}).rc == 0);
  f.drd.reply("test", json::parse(R"({"nodes": [{"name": "p", "ok": false, "error": "x"}]})"));
  CHECK(f.run({"test", "--json"}).rc == 1);  // the verdict does not depend on the output format
}

TEST_CASE("verify sends a file as its absolute path and exits 1 on a mismatch", "[e2e]") {
  Fixture f;
  write_file(f.dir / "b.drbk", "not really a backup");
  f.drd.reply("backup.verify", json::parse(R"({"ok": false, "id": "b1",
      "checks": [{"name": "checksum", "ok": false, "detail": "chunk 2 differs"}]})"));
  auto r = f.run({"verify", (f.dir / "b.drbk").string()});
  CHECK(r.rc == 1);
  CHECK(r.out.find("backup b1 FAILED verification") != std::string::npos);
  CHECK(f.drd.requests().at(0).params.at("path").as_string() == (f.dir / "b.drbk").string());
  f.drd.reply("backup.verify", json::parse(R"({"ok": true, "id": "b1", "checks": []})"));
  auto ok = f.run({"verify", "b1"});
  CHECK(ok.rc == 0);
  CHECK(json::value(f.drd.requests().at(1).params) == json::parse(R"({"id": "b1"})"));
}

TEST_CASE("backup passes its options, skips progress off a TTY, and prints id and path", "[e2e]") {
  Fixture f;
  f.drd.on("backup.create", [](const rpc::Request& r) {
    json::value b = json::parse(R"({"id": "20261124-1", "name": "pre-upgrade", "node": "primary", "kind": "full",
        "size_bytes": 2048, "source_bytes": 8192, "encrypted": false, "verified": null, "path": "/b/1.drbk"})");
    // notifications before the reply must be skipped quietly
    return std::vector<std::string>{
        rpc::notification_line("progress", json::object{{"done", 1024}, {"total", 8192}, {"phase", "copy"}}),
        rpc::result_line(r.id, b)};
  });
  auto r = f.run({"backup", "--name", "pre-upgrade", "--kind", "full"});
  INFO(r.err);
  CHECK(r.rc == 0);
  CHECK(r.out == "backup 20261124-1 created\npath: /b/1.drbk\nsize: 2.0 KiB, 4.0x, full\n");
  CHECK(r.err.empty());
  CHECK(json::value(f.drd.requests().at(0).params) == json::parse(R"({"name": "pre-upgrade", "kind": "full"})"));
}

TEST_CASE("the socket comes from $DRD_SOCKET, then from --config", "[e2e]") {
  Fixture f;
  f.drd.reply("primary", json::parse(R"({"name": "primary", "url": "sqlite:///var/data/p.db", "term": 3})"));
  auto env = run_drctl({"primary"}, {"DRD_SOCKET=" + f.drd.path()});
  CHECK(env.rc == 0);
  CHECK(env.out == "primary\n");
  write_file(f.dir / "drd.yaml", "disaster_recovery:\n  control:\n    socket: ./drd.sock\n");
  auto cfg = run_drctl({"primary", "--url", "--config", (f.dir / "drd.yaml").string()});
  CHECK(cfg.rc == 0);
  CHECK(cfg.out == "sqlite:///var/data/p.db\n");
  auto bad = run_drctl({"primary", "--config", (f.dir / "missing.yaml").string()});
  CHECK(bad.rc == 2);
  CHECK(bad.err.find("missing.yaml does not exist") != std::string::npos);
}

TEST_CASE("version works with or without drd", "[e2e]") {
  Fixture f;
  f.drd.reply("ping", json::parse(R"({"pong": true, "version": "0.1.0"})"));
  auto r = f.run({"version"});
  CHECK(r.rc == 0);
  CHECK(r.out.rfind("drctl ", 0) == 0);
  CHECK(r.out.find("\ndrd 0.1.0 at " + f.drd.path() + "\n") != std::string::npos);
  auto away = run_drctl({"version", "--json", "--socket", (f.dir / "none.sock").string()});
  CHECK(away.rc == 0);
  auto doc = json::parse(away.out);
  CHECK(doc.at("drctl").is_string());
  CHECK(doc.at("drd").is_null());
}
