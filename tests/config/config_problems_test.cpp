// Bad configurations: every kind of problem is reported with FILE:LINE:COL and a message
// that says what is wrong; several problems come back at once; secrets never show.
#include <catch2/catch.hpp>

#include "common/config.hpp"
#include "tests/support/temp_dir.hpp"

using namespace drd;

namespace {

std::string all_problems(const ConfigLoadResult& r) {
  std::string s;
  for (const auto& p : r.problems) s += p.to_string() + "\n";
  return s;
}

ConfigLoadResult load(const std::string& text) { return load_config_text(text, "drd.yaml", "/etc/drd"); }

struct Row {
  const char* what;
  const char* yaml;
  int line, column;
  const char* message;  // the problem's text must contain this
};

// Lines below are numbered from "disaster_recovery:" = 1.
const Row kRows[] = {
    {"unknown key with a suggestion",
     "disaster_recovery:\n"
     "  databases:\n"
     "    a: { url: \"sqlite:///a.db\" }\n"
     "  monitoring:\n"
     "    failur_threshold: 3\n",
     5, 5, "unknown key 'failur_threshold' in monitoring (did you mean 'failure_threshold'?)"},
    {"unknown key in a database entry",
     "disaster_recovery:\n"
     "  databases:\n"
     "    a: { url: \"sqlite:///a.db\", prority: 1 }\n",
     3, 33, "unknown key 'prority' in databases.a (did you mean 'priority'?)"},
    {"unknown key at the top of the section",
     "disaster_recovery:\n"
     "  databases:\n"
     "    a: { url: \"sqlite:///a.db\" }\n"
     "  monitorin: {}\n",
     4, 3, "unknown key 'monitorin' in disaster_recovery (did you mean 'monitoring'?)"},
    {"a password key gets a hint instead of a suggestion",
     "disaster_recovery:\n"
     "  databases:\n"
     "    a: { url: \"postgresql://u@h/db\", password: hunter2 }\n",
     3, 38, "unknown key 'password' in databases.a (put the password in the URL, in password_file:"},
    {"bad duration",
     "disaster_recovery:\n"
     "  databases:\n"
     "    a: { url: \"sqlite:///a.db\" }\n"
     "  monitoring:\n"
     "    interval: fast\n",
     5, 15, "monitoring.interval: expected a duration like 1s or 200ms, got 'fast'"},
    {"interval below 10ms",
     "disaster_recovery:\n"
     "  databases: { a: { url: \"sqlite:///a.db\" } }\n"
     "  monitoring: { interval: 5ms }\n",
     3, 27, "monitoring.interval: must be at least 10ms, got '5ms'"},
    {"zero timeout",
     "disaster_recovery:\n"
     "  databases: { a: { url: \"sqlite:///a.db\" } }\n"
     "  monitoring: { timeout: 0s }\n",
     3, 26, "monitoring.timeout: must be greater than 0, got '0s'"},
    {"failure_threshold out of range",
     "disaster_recovery:\n"
     "  databases: { a: { url: \"sqlite:///a.db\" } }\n"
     "  monitoring: { failure_threshold: 0 }\n",
     3, 36, "monitoring.failure_threshold: must be an integer 1..100, got '0'"},
    {"bad priority (not a number)",
     "disaster_recovery:\n"
     "  databases:\n"
     "    a:\n"
     "      priority: high\n"
     "      url: \"sqlite:///a.db\"\n",
     4, 17, "databases.a.priority: must be an integer 0..1000, got 'high'"},
    {"bad priority (too large)",
     "disaster_recovery:\n"
     "  databases:\n"
     "    a:\n"
     "      priority: 1001\n"
     "      url: \"sqlite:///a.db\"\n",
     4, 17, "databases.a.priority: must be an integer 0..1000, got '1001'"},
    {"bad type",
     "disaster_recovery:\n"
     "  databases:\n"
     "    a: { type: master, url: \"sqlite:///a.db\" }\n",
     3, 16, "databases.a.type: must be one of primary, secondary, standby, got 'master'"},
    {"two primaries",
     "disaster_recovery:\n"
     "  databases:\n"
     "    a: { type: primary, url: \"sqlite:///a.db\" }\n"
     "    b: { type: primary, url: \"sqlite:///b.db\" }\n",
     4, 16, "databases.b.type: only one database may have type: primary ('a' at line 3 already has it"},
    {"duplicate names",
     "disaster_recovery:\n"
     "  databases:\n"
     "    a: { name: x, url: \"sqlite:///a.db\" }\n"
     "    b: { name: x, url: \"sqlite:///b.db\" }\n",
     4, 16, "databases.b: duplicate database name 'x' (also used by 'a' at line 3)"},
    {"two nodes on one SQLite file",
     "disaster_recovery:\n"
     "  databases:\n"
     "    a: { url: \"sqlite:///data/a.db\" }\n"
     "    b: { url: \"sqlite:///./data/x/../a.db\" }\n",
     4, 15, "databases.b.url: same SQLite file as 'a' (line 3): /etc/drd/data/a.db"},
    {"two nodes on one PostgreSQL database",
     "disaster_recovery:\n"
     "  databases:\n"
     "    a: { url: \"postgresql://u:secret@DB1:5432/app\" }\n"
     "    b: { url: \"postgresql://v@db1/app\" }\n",
     4, 15, "databases.b.url: same PostgreSQL server and database as 'a' (line 3): db1:5432/app"},
    {"unknown URL scheme",
     "disaster_recovery:\n"
     "  databases:\n"
     "    a: { url: \"mysql://u:secret@h/db\" }\n",
     3, 15, "databases.a.url: unknown URL scheme 'mysql' in 'mysql://u:***@h/db'"},
    {"misspelt URL scheme gets a suggestion",
     "disaster_recovery:\n"
     "  databases:\n"
     "    a: { url: \"postgressql://u@h/db\" }\n",
     3, 15, "(did you mean 'postgresql'?)"},
    {"SQLite URL with a host part",
     "disaster_recovery:\n"
     "  databases:\n"
     "    a: { url: \"sqlite://data/a.db\" }\n",
     3, 15, "SQLite URLs have no host part: write sqlite:///relative.db"},
    {"bad PostgreSQL port",
     "disaster_recovery:\n"
     "  databases:\n"
     "    a: { url: \"postgresql://u:secret@h:99999/db\" }\n",
     3, 15, "bad port '99999' in PostgreSQL URL 'postgresql://u:***@h:99999/db'"},
    {"missing url",
     "disaster_recovery:\n"
     "  databases:\n"
     "    a: { name: x }\n",
     3, 5, "databases.a: missing url"},
    {"an empty database entry",
     "disaster_recovery:\n"
     "  databases:\n"
     "    a:\n",
     3, 5, "databases.a: missing url"},
    {"no databases",
     "disaster_recovery:\n"
     "  enabled: true\n",
     1, 1, "databases: none configured"},
    {"mixed engines",
     "disaster_recovery:\n"
     "  databases:\n"
     "    a: { url: \"sqlite:///a.db\" }\n"
     "    b: { url: \"postgresql://u:secret@h/db\" }\n",
     4, 15, "all databases must use one engine: 'b' is postgresql but 'a' (line 3) is sqlite"},
    {"PostgreSQL-only key on an SQLite node",
     "disaster_recovery:\n"
     "  databases:\n"
     "    a: { url: \"sqlite:///a.db\", data_dir: /x }\n",
     3, 43, "databases.a.data_dir: only PostgreSQL databases use data_dir"},
    {"current_link on PostgreSQL",
     "disaster_recovery:\n"
     "  current_link: ./x.db\n"
     "  databases:\n"
     "    a: { url: \"postgresql://u@h/db\" }\n",
     2, 17, "current_link: only SQLite clusters have a current link"},
    {"current_link pointing at a database file",
     "disaster_recovery:\n"
     "  current_link: data/a.db\n"
     "  databases:\n"
     "    a: { url: \"sqlite:///data/a.db\" }\n",
     2, 17, "current_link: is the database file of 'a' (line 4); it must be a separate symlink path"},
    {"duplicate rule names",
     "disaster_recovery:\n"
     "  databases: { a: { url: \"sqlite:///a.db\" } }\n"
     "  alerts:\n"
     "    rules:\n"
     "      - { name: r, metric: failover }\n"
     "      - { name: r, metric: backup_failed }\n",
     6, 17, "alerts.rules.r: duplicate rule name (first at line 5)"},
    {"exec channel with an empty command",
     "disaster_recovery:\n"
     "  databases: { a: { url: \"sqlite:///a.db\" } }\n"
     "  alerts:\n"
     "    channels:\n"
     "      run: { type: exec, command: [] }\n",
     5, 35, "alerts.channels.run.command: must name a program to run"},
    {"a database entry that is not a mapping",
     "disaster_recovery:\n"
     "  databases:\n"
     "    a: \"sqlite:///a.db\"\n",
     3, 8, "databases.a: expected a mapping of keys, got 'sqlite:///a.db'"},
    {"bad boolean",
     "disaster_recovery:\n"
     "  enabled: maybe\n"
     "  databases: { a: { url: \"sqlite:///a.db\" } }\n",
     2, 12, "enabled: expected true or false, got 'maybe'"},
    {"bad size",
     "disaster_recovery:\n"
     "  databases: { a: { url: \"sqlite:///a.db\" } }\n"
     "  failover: { max_lag: lots }\n",
     3, 24, "failover.max_lag: expected a size like 16MB or 512KiB, got 'lots'"},
    {"bad schedule",
     "disaster_recovery:\n"
     "  databases: { a: { url: \"sqlite:///a.db\" } }\n"
     "  backup: { schedule: \"twice a day\" }\n",
     3, 23, "backup.schedule: expected 'every DURATION' (like 'every 6h') or a 5-field cron expression"},
    {"unsupported compression",
     "disaster_recovery:\n"
     "  databases: { a: { url: \"sqlite:///a.db\" } }\n"
     "  backup: { compression: { algorithm: gzip } }\n",
     3, 39, "backup.compression.algorithm: must be one of zstd, none, got 'gzip'"},
    {"compression level out of range",
     "disaster_recovery:\n"
     "  databases: { a: { url: \"sqlite:///a.db\" } }\n"
     "  backup: { compression: { level: 20 } }\n",
     3, 35, "backup.compression.level: must be an integer 1..19, got '20'"},
    {"a section of the wrong shape",
     "disaster_recovery:\n"
     "  databases: { a: { url: \"sqlite:///a.db\" } }\n"
     "  monitoring: [1, 2]\n",
     3, 15, "monitoring: expected a mapping of keys, got a list"},
    {"YAML syntax error",
     "disaster_recovery:\n"
     "  databases:\n"
     "    a: { url: \"sqlite:///a.db\"\n"
     "  monitoring: {}\n",
     4, 3, "YAML syntax error: end of map flow not found"},
    {"no disaster_recovery section, with a suggestion",
     "disaster_recover:\n"
     "  databases: { a: { url: \"sqlite:///a.db\" } }\n",
     1, 1, "unknown section 'disaster_recover' (did you mean 'disaster_recovery'?)"},
    {"no disaster_recovery section",
     "crawler: { threads: 4 }\n",
     0, 0, "no 'disaster_recovery:' section found"},
    {"empty file", "", 0, 0, "the file is empty"},
    {"duplicate key",
     "disaster_recovery:\n"
     "  databases: { a: { url: \"sqlite:///a.db\" } }\n"
     "  monitoring: { interval: 1s, interval: 2s }\n",
     3, 31, "duplicate key 'interval' in monitoring (first at line 3)"},
    {"undefined channel in a rule",
     "disaster_recovery:\n"
     "  databases:\n"
     "    a: { url: \"sqlite:///a.db\" }\n"
     "  alerts:\n"
     "    channels:\n"
     "      ops: { type: log }\n"
     "    rules:\n"
     "      - name: r\n"
     "        metric: up\n"
     "        op: \"==\"\n"
     "        threshold: 0\n"
     "        channels: [opz]\n",
     12, 20, "alerts.rules.r.channels: no alert channel named 'opz' under alerts.channels (did you mean 'ops'?)"},
    {"undefined node in a rule",
     "disaster_recovery:\n"
     "  databases: { primary: { url: \"sqlite:///a.db\" } }\n"
     "  alerts:\n"
     "    rules:\n"
     "      - { name: r, metric: up, op: \"<\", threshold: 1, nodes: [primry] }\n",
     5, 63, "alerts.rules.r.nodes: no database named 'primry' (did you mean 'primary'?)"},
    {"unknown metric",
     "disaster_recovery:\n"
     "  databases: { a: { url: \"sqlite:///a.db\" } }\n"
     "  alerts:\n"
     "    rules:\n"
     "      - { name: r, metric: response_time, op: \">\", threshold: 1 }\n",
     5, 28, "alerts.rules.r.metric: must be one of up, response_time_ms"},
    {"unquoted op",
     "disaster_recovery:\n"
     "  databases: { a: { url: \"sqlite:///a.db\" } }\n"
     "  alerts:\n"
     "    rules:\n"
     "      - { name: r, metric: up, op: =, threshold: 1 }\n",
     5, 36, "alerts.rules.r.op: must be one of > >= < <= == != (quote it: op: \">\"), got '='"},
    {"missing threshold",
     "disaster_recovery:\n"
     "  databases: { a: { url: \"sqlite:///a.db\" } }\n"
     "  alerts:\n"
     "    rules:\n"
     "      - { name: r, metric: lag_ms, op: \">\" }\n",
     5, 9, "alerts.rules.r: missing threshold"},
    {"bad severity",
     "disaster_recovery:\n"
     "  databases: { a: { url: \"sqlite:///a.db\" } }\n"
     "  alerts:\n"
     "    rules:\n"
     "      - { name: r, metric: failover, severity: warn }\n",
     5, 48, "alerts.rules.r.severity: must be one of info, warning, critical, got 'warn'"},
    {"https webhook",
     "disaster_recovery:\n"
     "  databases: { a: { url: \"sqlite:///a.db\" } }\n"
     "  alerts:\n"
     "    channels:\n"
     "      hook: { type: webhook, url: \"https://x.example/h\" }\n",
     5, 35, "alerts.channels.hook.url: https is not supported"},
    {"webhook without url",
     "disaster_recovery:\n"
     "  databases: { a: { url: \"sqlite:///a.db\" } }\n"
     "  alerts:\n"
     "    channels:\n"
     "      hook: { type: webhook }\n",
     5, 7, "alerts.channels.hook: a webhook channel needs url:"},
    {"exec without command",
     "disaster_recovery:\n"
     "  databases: { a: { url: \"sqlite:///a.db\" } }\n"
     "  alerts:\n"
     "    channels:\n"
     "      run: { type: exec }\n",
     5, 7, "alerts.channels.run: a exec channel needs command:"},
    {"email without address",
     "disaster_recovery:\n"
     "  databases: { a: { url: \"sqlite:///a.db\" } }\n"
     "  alerts:\n"
     "    channels:\n"
     "      mail: { type: email, to: nobody }\n",
     5, 32, "alerts.channels.mail.to: expected an email address, got 'nobody'"},
    {"unknown channel type",
     "disaster_recovery:\n"
     "  databases: { a: { url: \"sqlite:///a.db\" } }\n"
     "  alerts:\n"
     "    channels:\n"
     "      x: { type: slack }\n",
     5, 18, "alerts.channels.x.type: must be one of webhook, exec, email, log, got 'slack'"},
    {"bad http port",
     "disaster_recovery:\n"
     "  databases: { a: { url: \"sqlite:///a.db\" } }\n"
     "  http: { listen: \"127.0.0.1:80800\" }\n",
     3, 19, "http.listen: bad port '80800' in '127.0.0.1:80800' (expected 1..65535)"},
    {"http listen without a port",
     "disaster_recovery:\n"
     "  databases: { a: { url: \"sqlite:///a.db\" } }\n"
     "  http: { listen: localhost }\n",
     3, 19, "http.listen: expected HOST:PORT like 127.0.0.1:8008"},
};

}  // namespace

TEST_CASE("every kind of bad input is reported at FILE:LINE:COL", "[config][problems]") {
  for (const auto& row : kRows) {
    INFO(row.what);
    auto r = load(row.yaml);
    INFO(all_problems(r));
    CHECK_FALSE(r.config);
    REQUIRE(r.problems.size() == 1);
    const auto& p = r.problems[0];
    CHECK(p.file == "drd.yaml");
    CHECK(p.line == row.line);
    CHECK(p.column == row.column);
    CHECK_THAT(p.message, Catch::Contains(row.message));
    const std::string prefix =
        row.line ? "drd.yaml:" + std::to_string(row.line) + ":" + std::to_string(row.column) + ": " : "drd.yaml: ";
    CHECK(p.to_string().rfind(prefix, 0) == 0);
    // Passwords written in any URL above never reach a message.
    CHECK_THAT(p.to_string(), !Catch::Contains("secret") && !Catch::Contains("hunter2"));
  }
}

TEST_CASE("several problems are reported at once, in file order", "[config][problems]") {
  auto r = load(R"(disaster_recovery:
  databases:
    a: { type: primary, priority: -1, url: "sqlite:///a.db" }
    b: { type: primary, url: "redis://h" }
  monitoring:
    interval: soon
    failure_threshold: 500
  alerts:
    rules:
      - { name: r, metric: up, op: "<", threshold: 1, channels: [nowhere] }
)");
  INFO(all_problems(r));
  CHECK_FALSE(r.config);
  REQUIRE(r.problems.size() == 6);
  CHECK_THAT(r.problems[0].to_string(), Catch::StartsWith("drd.yaml:3:35: databases.a.priority"));
  CHECK_THAT(r.problems[1].to_string(), Catch::StartsWith("drd.yaml:4:16: databases.b.type: only one"));
  CHECK_THAT(r.problems[2].to_string(), Catch::StartsWith("drd.yaml:4:30: databases.b.url: unknown URL scheme"));
  CHECK_THAT(r.problems[3].to_string(), Catch::StartsWith("drd.yaml:6:15: monitoring.interval"));
  CHECK_THAT(r.problems[4].to_string(), Catch::StartsWith("drd.yaml:7:24: monitoring.failure_threshold"));
  CHECK_THAT(r.problems[5].to_string(), Catch::StartsWith("drd.yaml:10:66: alerts.rules.r.channels"));
}

TEST_CASE("a disabled section is still validated", "[config][problems]") {
  auto r = load(R"(disaster_recovery:
  enabled: false
  databases:
    a: { url: "sqlite:///a.db" }
  monitoring: { interval: never }
)");
  REQUIRE(r.problems.size() == 1);
  CHECK(r.problems[0].line == 5);
}

TEST_CASE("a missing file is one problem without a position", "[config][problems]") {
  drd::test::TempDir dir("drd-config");
  const auto file = dir / "absent.yaml";
  auto r = load_config(file);
  CHECK_FALSE(r.config);
  REQUIRE(r.problems.size() == 1);
  CHECK(r.problems[0].line == 0);
  CHECK(r.problems[0].to_string() ==
        file.string() + ": cannot read " + file.string() + ": No such file or directory");
}

TEST_CASE("problems in a file name the path as given", "[config][problems]") {
  drd::test::TempDir dir("drd-config");
  drd::test::write_file(dir / "bad.yaml", "disaster_recovery:\n  databases:\n    a: { url: \"ftp://x\" }\n");
  auto r = load_config(dir / "bad.yaml");
  REQUIRE(r.problems.size() == 1);
  CHECK_THAT(r.problems[0].to_string(), Catch::StartsWith((dir / "bad.yaml").string() + ":3:15: "));
}

TEST_CASE("mangled input never throws and always explains itself", "[config][problems][robust]") {
  // Every third byte of a full config replaced in turn by characters that upset YAML.
  const std::string good = R"(disaster_recovery:
  state_dir: ./var/drd
  databases:
    primary: { type: primary, priority: 0, url: "postgresql://u:secret@h:5432/db" }
    standby: { priority: 1, url: "postgresql://u:secret@h:5433/db", no_failover: true }
  monitoring: { interval: 1s, timeout: 1s, failure_threshold: 3 }
  backup: { enabled: true, schedule: "every 6h", compression: { algorithm: zstd, level: 3 } }
  alerts:
    channels: { ops: { type: webhook, url: "http://127.0.0.1:9000/hook" } }
    rules:
      - { name: slow, metric: response_time_ms, op: ">", threshold: 200, channels: [ops] }
  http: { listen: 127.0.0.1:8008 }
)";
  REQUIRE(load(good).problems.empty());
  std::size_t loads = 0;
  for (std::size_t i = 0; i < good.size(); i += 3) {
    for (char c : {':', '{', '[', '"', '-', '\t', '*', '\n'}) {
      std::string text = good;
      text[i] = c;
      ConfigLoadResult r;
      REQUIRE_NOTHROW(r = load(text));
      ++loads;
      // Either it still loads, or it says why; never both, never neither.
      CHECK(r.config.has_value() == r.problems.empty());
      for (const auto& p : r.problems) {
        CHECK_FALSE(p.message.empty());
        CHECK_THAT(p.message, !Catch::Contains("secret"));
      }
    }
  }
  CHECK(loads > 1000);
}
