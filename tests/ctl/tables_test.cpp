// history, backups, health, alerts, audit, verify, restore, backup.
#include <catch2/catch.hpp>

#include "ctl/render.hpp"

using namespace drd::ctl;
namespace json = boost::json;

TEST_CASE("tables pad columns to the widest cell and trim trailing blanks", "[render][table]") {
  CHECK(render_table({"A", "LONG HEADER", "C"}, {{"xx", "1", ""}, {"y", "22", "z"}}, RenderOptions{}) ==
        "A   LONG HEADER  C\n"
        "xx  1\n"
        "y   22           z\n");
  // CJK headers are two columns wide per character
  CHECK(render_table({"节点", "X"}, {{"a", "1"}}, RenderOptions{}) == "节点  X\na     1\n");
}

TEST_CASE("history is a table, newest first as drd sent it", "[render][table]") {
  auto h = json::parse(R"([
    {"time": "2026-11-24T06:00:00.000Z", "from": "secondary1", "to": "primary", "mode": "switchover",
     "reason": "planned", "duration_ms": 1250, "lag_bytes": 0, "term": 5},
    {"time": "2026-11-24T05:29:20.123Z", "from": "primary", "to": "secondary1", "mode": "auto",
     "reason": "primary down for 3 probes", "duration_ms": 412, "lag_bytes": 4096, "term": 4, "position": 1409040}])");
  CHECK(render_history(h, RenderOptions{}) ==
        "TIME (UTC)           FROM        TO          MODE        REASON                     DURATION  LAG      POSITION\n"
        "2026-11-24 06:00:00  secondary1  primary     switchover  planned                    1.2 s     0 B      -\n"
        "2026-11-24 05:29:20  primary     secondary1  auto        primary down for 3 probes  412 ms    4.0 KiB  1409040\n");
  CHECK(render_history(json::parse("[]"), RenderOptions{}) == "no failovers recorded\n");
  CHECK(render_history(json::parse("[]"), RenderOptions{Lang::zh}) == "没有故障转移记录\n");
}

TEST_CASE("backups list shows size, ratio, encryption and verification", "[render][table]") {
  auto b = json::parse(R"([
    {"id": "20261124-052920-primary", "name": "nightly", "node": "primary", "engine": "sqlite", "kind": "full",
     "created_at": "2026-11-24T05:29:20.000Z", "size_bytes": 1048576, "source_bytes": 4194304,
     "encrypted": true, "verified": null, "path": "/var/backups/a.drbk"},
    {"id": "20261123-000000-secondary1", "name": "", "node": "secondary1", "engine": "sqlite", "kind": "full",
     "created_at": "2026-11-23T00:00:00.000Z", "size_bytes": 512, "source_bytes": 512,
     "encrypted": false, "verified": true, "path": "/var/backups/b.drbk"}])");
  CHECK(render_backups(b, RenderOptions{}) ==
        "ID                          NAME     NODE        ENGINE  KIND  TIME (UTC)           SIZE     RATIO  ENCRYPTED  VERIFIED\n"
        "20261124-052920-primary     nightly  primary     sqlite  full  2026-11-24 05:29:20  1.0 MiB  4.0x   yes        -\n"
        "20261123-000000-secondary1           secondary1  sqlite  full  2026-11-23 00:00:00  512 B    1.0x   no         yes\n");
  CHECK(render_backups(json::parse("[]"), RenderOptions{}) == "no backups in the catalog\n");
}

TEST_CASE("a new backup prints its id and path", "[render]") {
  auto b = json::parse(R"({"id": "20261124-052920-primary", "kind": "full", "size_bytes": 1048576,
     "source_bytes": 4194304, "encrypted": true, "path": "/var/backups/a.drbk"})");
  CHECK(render_backup_created(b, RenderOptions{}) ==
        "backup 20261124-052920-primary created\n"
        "path: /var/backups/a.drbk\n"
        "size: 1.0 MiB, 4.0x, full, encrypted\n");
}

TEST_CASE("verify lists each check and the verdict", "[render]") {
  auto ok = json::parse(R"({"ok": true, "id": "b1", "checks": [
      {"name": "checksum", "ok": true, "detail": "sha256 matches"},
      {"name": "test restore", "ok": true, "detail": "integrity_check ok"}]})");
  CHECK(render_verify(ok, RenderOptions{}) ==
        "RESULT  CHECK         DETAIL\n"
        "ok      checksum      sha256 matches\n"
        "ok      test restore  integrity_check ok\n"
        "backup b1 verified\n");
  auto bad = json::parse(R"({"ok": false, "id": "b1", "checks": [{"name": "checksum", "ok": false, "detail": "chunk 3"}]})");
  CHECK(render_verify(bad, RenderOptions{}).find("FAILED  checksum  chunk 3\nbackup b1 FAILED verification\n") !=
        std::string::npos);
}

TEST_CASE("restore says where and how it went", "[render]") {
  CHECK(render_restore(json::parse(R"({"restored_to": "/tmp/x.db", "integrity": "ok"})"), RenderOptions{}) ==
        "restored to /tmp/x.db (integrity: ok)\n");
  CHECK(render_restore(json::parse(R"({"restored_to": "node1", "id": "b1", "bytes": 10, "wal_files": 2,
                                       "detail": "10 bytes restored", "streaming_from": "node0"})"),
                       RenderOptions{}) == "restored to node1: 10 bytes restored\nstandby streaming from node0\n");
  // The PostgreSQL primary rolled back: safety backup, new timeline, each standby's re-clone.
  CHECK(render_restore(json::parse(R"({"restored_to": "node0", "id": "b1", "detail": "recovered",
                                       "safety_backup": "b2", "timeline": 3, "previous_timeline": 2,
                                       "standbys": {"node1": "re-cloned, streaming", "node2": "not rebuilt: disk full"}})"),
                       RenderOptions{}) ==
        "restored to node0: recovered\nsafety backup taken first: b2\nprimary now on timeline 3\n"
        "standby node1: re-cloned, streaming\nstandby node2: not rebuilt: disk full\n");
}

TEST_CASE("health shows availability, percentiles and outages", "[render][table]") {
  auto h = json::parse(R"({"since": "2026-11-24T04:29:20.000Z", "nodes": [
      {"name": "primary", "availability_pct": 100, "p50_ms": 0.4, "p95_ms": 0.9, "p99_ms": 1.7, "failures": 0,
       "samples": 3600, "outages": []},
      {"name": "secondary2", "availability_pct": 97.5, "p50_ms": 0.5, "p95_ms": 12.5, "p99_ms": 250, "failures": 90,
       "samples": 3600, "outages": [{"start": "2026-11-24T05:00:00.000Z", "end": "2026-11-24T05:01:30.000Z",
                                     "duration_ms": 90000},
                                    {"start": "2026-11-24T05:20:00.000Z"}]}],
      "failovers": [{}]})");
  CHECK(render_health(h, RenderOptions{}) ==
        "since 2026-11-24 04:29:20\n"
        "NODE        AVAILABILITY  P50      P95      P99      FAILURES  SAMPLES  OUTAGES\n"
        "primary     100.00%       0.40 ms  0.90 ms  1.70 ms  0         3600     0\n"
        "secondary2  97.50%        0.50 ms  12.5 ms  250 ms   90        3600     2\n"
        "\n"
        "Outages:\n"
        "NODE        START                END                  DURATION\n"
        "secondary2  2026-11-24 05:00:00  2026-11-24 05:01:30  1m30s\n"
        "secondary2  2026-11-24 05:20:00  ongoing              -\n"
        "\n"
        "failovers in this period: 1\n");
  CHECK(render_health(json::parse(R"({"since": "x", "nodes": []})"), RenderOptions{}) ==
        "since x\nno health samples recorded\n");
}

TEST_CASE("alerts show firing and recent, or say there are none", "[render][table]") {
  CHECK(render_alerts(json::parse(R"({"firing": [], "recent": []})"), RenderOptions{}) ==
        "no alerts firing\n\nno recent alerts\n");
  auto a = json::parse(R"({"firing": [{"rule": "primary_slow", "node": "primary", "severity": "warning",
      "state": "firing", "since": "2026-11-24T05:29:20Z", "value": 250.5, "message": "response 250.5 ms > 200"}],
      "recent": []})");
  CHECK(render_alerts(a, RenderOptions{}) ==
        "Firing:\n"
        "SINCE (UTC)          SEVERITY  RULE          NODE     STATE   VALUE  MESSAGE\n"
        "2026-11-24 05:29:20  warning   primary_slow  primary  firing  250.5  response 250.5 ms > 200\n"
        "\nno recent alerts\n");
}

TEST_CASE("audit shows who called what", "[render][table]") {
  auto a = json::parse(R"([{"time": "2026-11-24T05:29:20Z", "uid": 0, "pid": 4242, "method": "failover",
      "params": {"node": "secondary1"}, "ok": false, "result": "refused"},
      {"time": "2026-11-24T05:00:00Z", "uid": 1000, "pid": 7, "method": "reload", "params": {}, "ok": true}])");
  CHECK(render_audit(a, RenderOptions{}) ==
        "TIME (UTC)           UID   PID   METHOD    RESULT  PARAMS\n"
        "2026-11-24 05:29:20  0     4242  failover  failed  {\"node\":\"secondary1\"}\n"
        "2026-11-24 05:00:00  1000  7     reload    ok      -\n");
  CHECK(render_audit(json::parse("[]"), RenderOptions{}) == "no audit entries\n");
}
