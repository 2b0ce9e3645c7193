// The status panel, `test` lines, confirmations and the formatting helpers.
#include <catch2/catch.hpp>

#include "ctl/render.hpp"

using namespace drd::ctl;
namespace json = boost::json;

namespace {

// A healthy primary, a standby 1.5 MiB / 2.3 s behind, a standby that is down.
json::value canned_status() {
  return json::parse(R"({
    "enabled": true, "primary": "primary", "term": 3, "monitoring": true, "auto_failover": true,
    "auto_backup": true, "failure_threshold": 3, "failover_state": "degraded",
    "failover_reason": "secondary2 is down", "interval_ms": 1000,
    "nodes": [
      {"name": "primary", "type": "primary", "role": "primary", "priority": 0, "engine": "sqlite",
       "healthy": true, "connection": "ok", "response_time_ms": 0.42, "lag_bytes": 0, "lag_ms": 0,
       "url": "sqlite:///var/data/p.db", "consecutive_failures": 0, "last_error": "", "fenced": false},
      {"name": "secondary1", "type": "secondary", "role": "standby", "priority": 1, "engine": "sqlite",
       "healthy": true, "connection": "ok", "response_time_ms": 15.67, "lag_bytes": 1572864, "lag_ms": 2300,
       "url": "sqlite:///var/data/s1.db", "consecutive_failures": 0, "last_error": "", "fenced": false},
      {"name": "secondary2", "type": "secondary", "role": "down", "priority": 2, "engine": "sqlite",
       "healthy": false, "connection": "failed", "response_time_ms": 0.01, "lag_bytes": null, "lag_ms": null,
       "url": "sqlite:///var/data/s2.db", "consecutive_failures": 5,
       "last_error": "unable to open database file", "fenced": false}],
    "daemon": {"pid": 123, "version": "0.1.0", "uptime_s": 42, "config": "/etc/drd/drd.yaml"}})");
}

}  // namespace

TEST_CASE("status panel in English, plain markers when not on a TTY", "[render][status]") {
  const std::string expected =
      "=== Disaster Recovery Status ===\n"
      "Disaster recovery: enabled\n"
      "\n"
      "--- Databases ---\n"
      "Current primary: primary\n"
      "Auto backup: enabled\n"
      "Health monitoring: enabled\n"
      "Auto failover: enabled\n"
      "\n"
      "  [ok] primary (primary)\n"
      "    Type: primary\n"
      "    Role: primary\n"
      "    Priority: 0\n"
      "    Connection: ok\n"
      "\n"
      "  [ok] secondary1\n"
      "    Type: secondary\n"
      "    Role: standby\n"
      "    Priority: 1\n"
      "    Connection: ok\n"
      "    Replication lag: 1.5 MiB, 2.3 s\n"
      "\n"
      "  [down] secondary2\n"
      "    Type: secondary\n"
      "    Role: down\n"
      "    Priority: 2\n"
      "    Connection: failed\n"
      "    Last error: unable to open database file\n"
      "\n"
      "--- Health ---\n"
      "Overall: degraded\n"
      "  primary: healthy\n"
      "    Response time: 0.42ms\n"
      "  secondary1: healthy\n"
      "    Response time: 15.67ms\n"
      "  secondary2: unhealthy\n"
      "    Response time: -\n"
      "    Consecutive failures: 5\n"
      "\n"
      "--- Failover ---\n"
      "State: degraded\n"
      "Auto failover: enabled\n"
      "Threshold: 3\n"
      "Reason: secondary2 is down\n";
  CHECK(render_status(canned_status(), RenderOptions{}) == expected);
}

TEST_CASE("status panel in Chinese uses the seed's labels and emoji on a TTY", "[render][status]") {
  const std::string expected =
      "=== 容灾备份系统状态 ===\n"
      "容灾备份功能: 启用\n"
      "\n"
      "--- 数据库状态 ---\n"
      "当前主数据库: primary\n"
      "自动备份: 启用\n"
      "健康监控: 启用\n"
      "自动故障转移: 启用\n"
      "\n"
      "  🟢 primary 👑\n"
      "    类型: primary\n"
      "    角色: primary\n"
      "    优先级: 0\n"
      "    连接状态: 正常\n"
      "\n"
      "  🟢 secondary1\n"
      "    类型: secondary\n"
      "    角色: standby\n"
      "    优先级: 1\n"
      "    连接状态: 正常\n"
      "    复制延迟: 1.5 MiB, 2.3 s\n"
      "\n"
      "  🔴 secondary2\n"
      "    类型: secondary\n"
      "    角色: down\n"
      "    优先级: 2\n"
      "    连接状态: 失败\n"
      "    最近错误: unable to open database file\n"
      "\n"
      "--- 健康状态 ---\n"
      "整体状态: degraded\n"
      "  primary: healthy\n"
      "    响应时间: 0.42ms\n"
      "  secondary1: healthy\n"
      "    响应时间: 15.67ms\n"
      "  secondary2: unhealthy\n"
      "    响应时间: -\n"
      "    连续失败次数: 5\n"
      "\n"
      "--- 故障转移状态 ---\n"
      "当前状态: degraded\n"
      "自动故障转移: 启用\n"
      "检测阈值: 3\n"
      "原因: secondary2 is down\n";
  CHECK(render_status(canned_status(), RenderOptions{Lang::zh, false, true}) == expected);
}

TEST_CASE("the seed's own situation renders exactly as the seed's panel", "[render][status]") {
  // The seed's status knew no roles or lag; drd omits nothing the seed showed.
  auto s = json::parse(R"({"enabled": true, "primary": "primary", "monitoring": true, "auto_failover": true,
    "auto_backup": true, "failure_threshold": 3, "failover_state": "normal",
    "nodes": [{"name": "primary", "type": "primary", "priority": 0, "healthy": true, "response_time_ms": 12.34},
              {"name": "secondary1", "type": "secondary", "priority": 1, "healthy": true, "response_time_ms": 15.67}]})");
  const std::string seed =
      "=== 容灾备份系统状态 ===\n容灾备份功能: 启用\n\n--- 数据库状态 ---\n当前主数据库: primary\n"
      "自动备份: 启用\n健康监控: 启用\n自动故障转移: 启用\n\n  🟢 primary 👑\n    类型: primary\n"
      "    优先级: 0\n    连接状态: 正常\n\n  🟢 secondary1\n    类型: secondary\n    优先级: 1\n"
      "    连接状态: 正常\n\n--- 健康状态 ---\n整体状态: healthy\n  primary: healthy\n    响应时间: 12.34ms\n"
      "  secondary1: healthy\n    响应时间: 15.67ms\n\n--- 故障转移状态 ---\n当前状态: normal\n"
      "自动故障转移: 启用\n检测阈值: 3\n";
  CHECK(render_status(s, RenderOptions{Lang::zh, false, true}) == seed);
}

TEST_CASE("status colours only when asked, and marks fenced and unknown nodes", "[render][status]") {
  auto s = canned_status();
  auto& nodes = s.as_object()["nodes"].as_array();
  nodes[1].as_object()["fenced"] = true;
  nodes[1].as_object()["role"] = "fenced";
  nodes[1].as_object()["healthy"] = false;
  nodes[2].as_object()["connection"] = "unknown";
  std::string plain = render_status(s, RenderOptions{});
  CHECK(plain.find("\033[") == std::string::npos);
  CHECK(plain.find("  [fenced] secondary1\n") != std::string::npos);
  CHECK(plain.find("  [unknown] secondary2\n") != std::string::npos);
  CHECK(plain.find("    Connection: unknown\n") != std::string::npos);
  CHECK(plain.find("  secondary1: fenced\n") != std::string::npos);
  std::string coloured = render_status(s, RenderOptions{Lang::en, true, true});
  CHECK(coloured.find("\033[32m") != std::string::npos);
  CHECK(coloured.find("\033[31m") != std::string::npos);
  CHECK(coloured.find("\033[0m") != std::string::npos);
}

TEST_CASE("status says when the primary is paused for a restore", "[render][status]") {
  auto s = canned_status();
  CHECK(render_status(s, RenderOptions{}).find("Primary paused") == std::string::npos);
  s.as_object()["primary_paused"] = "backup b1 is being restored onto it";
  CHECK(render_status(s, RenderOptions{}).find(
            "Primary paused: backup b1 is being restored onto it (automatic failover waits)\n") != std::string::npos);
}

TEST_CASE("status shows each SQLite copy's history and which copy is at risk", "[render][status]") {
  auto s = canned_status();
  auto& nodes = s.as_object()["nodes"].as_array();
  nodes[1].as_object()["history"] = json::object{{"term", 2}, {"epoch", 41}};
  std::string out = render_status(s, RenderOptions{});
  CHECK(out.find("    History: term 2, epoch 41\n") != std::string::npos);
  CHECK(out.find("Most advanced") == std::string::npos);  // nothing at risk: no verdict
  nodes[2].as_object()["history"] = json::object{{"term", 2}, {"epoch", 30}};
  nodes[2].as_object()["copy_problem"] = "not overwritten: it holds a longer history than the source";
  out = render_status(s, RenderOptions{});
  CHECK(out.find("    Copy at risk: not overwritten: it holds a longer history than the source\n") != std::string::npos);
  CHECK(out.find("  Most advanced standby copy: secondary1 (term 2, epoch 41)\n") != std::string::npos);
}

TEST_CASE("overall health follows the primary and the standbys", "[render][status]") {
  auto s = canned_status();
  CHECK(overall_health(s) == "degraded");
  s.as_object()["nodes"].as_array()[2].as_object()["healthy"] = true;
  CHECK(overall_health(s) == "healthy");
  s.as_object()["nodes"].as_array()[0].as_object()["healthy"] = false;
  CHECK(overall_health(s) == "critical");
  s.as_object()["primary"] = "";
  CHECK(overall_health(s) == "critical");
}

TEST_CASE("status tolerates an empty or odd result", "[render][status]") {
  std::string out = render_status(json::parse("{}"), RenderOptions{});
  CHECK(out.find("Current primary: -\n") != std::string::npos);
  CHECK(out.find("Overall: critical\n") != std::string::npos);
  CHECK(out.find("State: -\n") != std::string::npos);
  CHECK_NOTHROW(render_status(json::parse("[1,2]"), RenderOptions{}));
  CHECK_NOTHROW(render_status(json::parse(R"({"nodes": [1, "x", {"priority": "high"}]})"), RenderOptions{}));
}

TEST_CASE("test prints one aligned line per node", "[render][test]") {
  auto r = json::parse(R"({"nodes": [
      {"name": "primary", "ok": true, "response_time_ms": 0.42, "role": "primary"},
      {"name": "secondary1", "ok": false, "error": "file not found: /var/data/s1.db", "role": "standby"}]})");
  CHECK(render_test(r, RenderOptions{}) ==
        "primary     ok      0.42 ms\n"
        "secondary1  FAILED  file not found: /var/data/s1.db\n");
  CHECK(render_test(json::parse(R"({"nodes": []})"), RenderOptions{}) == "no nodes configured\n");
}

TEST_CASE("primary prints the name or the URL", "[render]") {
  auto r = json::parse(R"({"name": "secondary1", "url": "postgresql://drd:***@10.0.0.2:5432/app", "term": 4})");
  CHECK(render_primary(r, false) == "secondary1\n");
  CHECK(render_primary(r, true) == "postgresql://drd:***@10.0.0.2:5432/app\n");
}

TEST_CASE("confirmations say what happened", "[render]") {
  RenderOptions en{};
  auto entry = json::parse(R"({"time": "2026-11-24T05:29:20.123Z", "from": "primary", "to": "secondary1",
      "mode": "manual", "reason": "operator", "duration_ms": 412, "lag_bytes": 0, "term": 4})");
  CHECK(render_transition(entry, "failover", "secondary1", en) == "failover to secondary1 done in 412 ms (term 4)\n");
  CHECK(render_transition(json::parse("{}"), "switchover", "s2", en) == "switchover to s2 done\n");
  CHECK(render_rejoin(json::parse(R"({"node": "primary", "role": "standby"})"), "rejoin", "primary", en) ==
        "primary rejoined as standby\n");
  CHECK(render_rejoin(json::parse(R"({"node": "primary", "role": "standby", "primary": "secondary1"})"), "rejoin",
                      "primary", en) == "primary rejoined as a standby of secondary1\n");
  CHECK(render_rejoin(json::parse(R"({"node": "s3", "role": "standby", "primary": "secondary1"})"), "clone", "s3",
                      en) == "s3 cloned from secondary1, now a standby of it\n");
  CHECK(render_confirmation(json::parse(R"({"monitoring": true})"), "monitoring.start", en) == "health monitoring started\n");
  CHECK(render_confirmation(json::parse(R"({"auto_failover": false})"), "auto_failover.disable", en) ==
        "auto failover disabled\n");
  CHECK(render_confirmation(json::parse(R"({"reloaded": true, "config": "/etc/drd/drd.yaml"})"), "reload", en) ==
        "configuration reloaded (/etc/drd/drd.yaml)\n");
  CHECK(render_confirmation(json::parse("{}"), "auto_failover.enable", RenderOptions{Lang::zh}) == "自动故障转移已启用\n");
}

TEST_CASE("milliseconds format by magnitude", "[render][format]") {
  struct Row { double ms; const char* text; };
  const Row rows[] = {{0.42, "0.42 ms"}, {0, "0 ms"}, {4, "4 ms"}, {9.5, "9.50 ms"}, {12.345, "12.3 ms"}, {412, "412 ms"},
                      {1500, "1.5 s"}, {59'900, "59.9 s"}, {125'000, "2m05s"}, {3'720'000, "1h02m"},
                      {-1, "-"}};
  for (auto r : rows) {
    INFO(r.ms);
    CHECK(format_ms(r.ms) == r.text);
  }
}

TEST_CASE("bytes, lag, ratio, percent and time format for people", "[render][format]") {
  CHECK(format_bytes(0) == "0 B");
  CHECK(format_bytes(1023) == "1023 B");
  CHECK(format_bytes(1572864) == "1.5 MiB");
  CHECK(format_bytes(3ull << 30) == "3.0 GiB");
  CHECK(format_lag(1572864.0, 230.0) == "1.5 MiB, 230 ms");
  CHECK(format_lag(std::nullopt, 5.0) == "-, 5 ms");
  CHECK(format_lag(0.0, 0.0) == "0 B, 0 ms");
  CHECK(format_ratio(1000.0, 250.0) == "4.0x");
  CHECK(format_ratio(1000.0, 0.0) == "-");
  CHECK(format_ratio(std::nullopt, 10.0) == "-");
  CHECK(format_pct(99.954) == "99.95%");
  CHECK(format_pct(std::nullopt) == "-");
  CHECK(format_time("2026-11-24T05:29:20.123Z") == "2026-11-24 05:29:20");
  CHECK(format_time("yesterday") == "yesterday");
  CHECK(format_time("") == "-");
}

TEST_CASE("display width counts CJK and emoji as two columns and skips colours", "[render][format]") {
  CHECK(display_width("abc") == 3);
  CHECK(display_width("类型") == 4);
  CHECK(display_width("🟢 x") == 4);
  CHECK(display_width("\033[32mok\033[0m") == 2);
}

TEST_CASE("progress line shows a bar when the total is known", "[render][progress]") {
  CHECK(progress_line(5 << 20, double(10 << 20), "copy", 10) == "[#####-----]  50%  5.0 MiB / 10.0 MiB  copy");
  CHECK(progress_line(10 << 20, double(10 << 20), "", 4) == "[####] 100%  10.0 MiB / 10.0 MiB");
  CHECK(progress_line(2048, std::nullopt, "dump") == "2.0 KiB  dump");
  CHECK(progress_line(50, 0.0, "") == "50 B");
}

TEST_CASE("monitoring stopped: the panel says nothing is checked and how old each verdict is", "[render][status]") {
  auto s = canned_status();
  s.as_object()["monitoring"] = false;
  for (auto& n : s.as_object()["nodes"].as_array()) {
    n.as_object()["health"] = "stale";
    n.as_object()["stale"] = true;
    n.as_object()["last_probe_age_ms"] = 42'300;
  }
  CHECK(overall_health(s) == "unknown");
  std::string out = render_status(s, RenderOptions{});
  CHECK(out.find("Overall: unknown (monitoring stopped: nothing is checked; drctl start-monitoring)\n") !=
        std::string::npos);
  CHECK(out.find("  primary: stale (monitoring stopped: nothing is checked; last probe 42s ago)\n") != std::string::npos);
  CHECK(out.find("[stale] primary") != std::string::npos);
  CHECK(out.find("primary: healthy") == std::string::npos);
}
