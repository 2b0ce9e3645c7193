// Loading good configurations: the seed's snippets, the full interface example, defaults,
// relative path resolution, and the shipped etc/ files.
#include <catch2/catch.hpp>

#include <filesystem>

#include "common/config.hpp"
#include "tests/support/temp_dir.hpp"

using namespace drd;
namespace fs = std::filesystem;

namespace {

std::string all_problems(const ConfigLoadResult& r) {
  std::string s;
  for (const auto& p : r.problems) s += p.to_string() + "\n";
  return s;
}

Config load_ok(const std::string& text, const fs::path& base = "/etc/drd") {
  auto r = load_config_text(text, "drd.yaml", base);
  INFO(all_problems(r));
  REQUIRE(r.problems.empty());
  REQUIRE(r.config);
  return *r.config;
}

// The seed README's snippets, verbatim.
const char* kSeedQuickStart = R"(disaster_recovery:
  enabled: true
  databases:
    primary:
      name: "primary"
      type: "primary"
      priority: 0
      url: "sqlite:///data/images_primary.db"
    secondary1:
      name: "secondary1"
      type: "secondary"
      priority: 1
      url: "sqlite:///data/images_secondary1.db"
)";

const char* kSeedSqlite = R"(disaster_recovery:
  enabled: true
  databases:
    primary:
      url: "sqlite:///data/images_primary.db"
    secondary1:
      url: "sqlite:///backup/images_secondary1.db"
)";

const char* kSeedPostgres = R"(disaster_recovery:
  enabled: true
  databases:
    primary:
      url: "postgresql://user:pass@localhost:5432/crawler_db"
    secondary1:
      url: "postgresql://user:pass@backup-server:5432/crawler_backup"
)";

// /work/shared/interface.md "Configuration (YAML)", verbatim.
const char* kInterfaceExample = R"(disaster_recovery:
  enabled: true
  state_dir: ./var/drd               # state DB (history, health samples, audit log, backup catalog)
  control:
    socket: ./var/drd/drd.sock       # drctl talks JSON-RPC 2.0 here
  current_link: ./var/data/images.db # SQLite only: symlink drd keeps pointing at the current primary
  databases:                         # 1 primary + N standbys, any names
    primary:
      name: primary
      type: primary                  # primary | secondary  (the starting role hint)
      priority: 0                    # lower = preferred
      url: "sqlite:///var/data/images_primary.db"
    secondary1:
      name: secondary1
      type: secondary
      priority: 1
      url: "sqlite:///var/data/images_secondary1.db"
  monitoring:
    enabled: true
    interval: 1s
    timeout: 1s
    failure_threshold: 3             # consecutive failed probes before a node is down
    history_retention: 7d
  failover:
    auto: true
    max_lag: 16MB                    # a standby further behind is not promoted without --force
  backup:
    enabled: true
    directory: ./var/backups
    schedule: "every 6h"             # or a 5-field cron expression
    compression: { algorithm: zstd, level: 3 }
    encryption: { key_file: ./var/backup.key }   # optional; AES-256-GCM
    retention: { keep_last: 7, keep_daily: 7, keep_weekly: 4, keep_monthly: 6 }
  alerts:
    channels:
      ops: { type: webhook, url: "http://127.0.0.1:9000/hook" }   # also: exec (command:), email (to:), log
    rules:
      - name: primary_slow
        metric: response_time_ms     # up, response_time_ms, lag_bytes, lag_ms, backup_age, disk_free_pct, ...
        op: ">"
        threshold: 200
        for: 30s
        severity: warning            # info | warning | critical
        nodes: [primary]             # optional; default every node
        channels: [ops]
  http:
    listen: 127.0.0.1:8008           # optional: /metrics /health /primary /replica
)";

}  // namespace

TEST_CASE("the seed's quick-start example loads unchanged", "[config][seed]") {
  Config c = load_ok(kSeedQuickStart);
  REQUIRE(c.nodes.size() == 2);
  CHECK(c.enabled);
  CHECK(c.nodes[0].name == "primary");
  CHECK(c.nodes[0].type == NodeType::primary);
  CHECK(c.nodes[0].priority == 0);
  CHECK(c.nodes[0].sqlite_path == "/etc/drd/data/images_primary.db");
  CHECK(c.nodes[1].type == NodeType::secondary);
  CHECK(c.nodes[1].priority == 1);
  CHECK(c.configured_primary() == &c.nodes[0]);
}

TEST_CASE("the seed's url-only SQLite example loads with defaults", "[config][seed]") {
  Config c = load_ok(kSeedSqlite);
  REQUIRE(c.nodes.size() == 2);
  CHECK(c.nodes[0].key == "primary");
  CHECK(c.nodes[0].name == "primary");  // name defaults to the key
  CHECK(c.nodes[1].name == "secondary1");
  CHECK(c.nodes[0].engine == Engine::sqlite);
  CHECK(c.nodes[0].sqlite_path == "/etc/drd/data/images_primary.db");
  CHECK(c.nodes[1].sqlite_path == "/etc/drd/backup/images_secondary1.db");
  CHECK(c.nodes[0].safe_url == "sqlite:///data/images_primary.db");
  // Nobody is typed primary: the lowest priority number, then declaration order, starts.
  CHECK(c.nodes[0].type == NodeType::secondary);
  REQUIRE(c.configured_primary());
  CHECK(c.configured_primary()->name == "primary");
  CHECK(c.nodes[0].line == 4);
  CHECK(c.nodes[0].column == 5);
}

TEST_CASE("the seed's PostgreSQL example loads, passwords stay out of safe_url", "[config][seed]") {
  Config c = load_ok(kSeedPostgres);
  REQUIRE(c.nodes.size() == 2);
  CHECK(c.nodes[0].engine == Engine::postgresql);
  CHECK(c.nodes[0].pg_conninfo == "postgresql://user:pass@localhost:5432/crawler_db");
  CHECK(c.nodes[0].safe_url == "postgresql://user:***@localhost:5432/crawler_db");
  CHECK(c.nodes[1].safe_url == "postgresql://user:***@backup-server:5432/crawler_backup");
  CHECK(c.nodes[0].url == "postgresql://user:pass@localhost:5432/crawler_db");
  CHECK(c.configured_primary()->name == "primary");
}

TEST_CASE("the interface example loads and every field lands in the struct", "[config]") {
  Config c = load_ok(kInterfaceExample, "/srv/app");
  CHECK(c.file == "/srv/app/drd.yaml");
  CHECK(c.enabled);
  CHECK(c.state_dir == "/srv/app/var/drd");
  CHECK(c.control.socket == "/srv/app/var/drd/drd.sock");
  REQUIRE(c.current_link);
  CHECK(*c.current_link == "/srv/app/var/data/images.db");

  REQUIRE(c.nodes.size() == 2);
  CHECK(c.nodes[0].sqlite_path == "/srv/app/var/data/images_primary.db");
  CHECK(c.nodes[1].sqlite_path == "/srv/app/var/data/images_secondary1.db");
  CHECK(c.find_node("secondary1") == &c.nodes[1]);
  CHECK(c.find_node("nope") == nullptr);

  CHECK(c.monitoring.enabled);
  CHECK(c.monitoring.interval == Millis(1000));
  CHECK(c.monitoring.timeout == Millis(1000));
  CHECK(c.monitoring.failure_threshold == 3);
  CHECK(c.monitoring.history_retention == Millis(7LL * 86'400'000));

  CHECK(c.failover.auto_failover);
  CHECK(c.failover.max_lag_bytes == 16ull << 20);

  CHECK(c.backup.enabled);
  CHECK(c.backup.directory == "/srv/app/var/backups");
  CHECK(c.backup.schedule == "every 6h");
  CHECK(c.backup.compression_algorithm == "zstd");
  CHECK(c.backup.compression_level == 3);
  REQUIRE(c.backup.key_file);
  CHECK(*c.backup.key_file == "/srv/app/var/backup.key");
  CHECK(c.backup.keep_last == 7);
  CHECK(c.backup.keep_daily == 7);
  CHECK(c.backup.keep_weekly == 4);
  CHECK(c.backup.keep_monthly == 6);

  REQUIRE(c.alerts.channels.size() == 1);
  CHECK(c.alerts.channels[0].name == "ops");
  CHECK(c.alerts.channels[0].type == "webhook");
  CHECK(c.alerts.channels[0].url == "http://127.0.0.1:9000/hook");
  REQUIRE(c.alerts.rules.size() == 1);
  const auto& r = c.alerts.rules[0];
  CHECK(r.name == "primary_slow");
  CHECK(r.metric == "response_time_ms");
  CHECK(r.op == ">");
  CHECK(r.threshold == 200);
  CHECK(r.for_duration == Millis(30'000));
  CHECK(r.severity == "warning");
  CHECK(r.nodes == std::vector<std::string>{"primary"});
  CHECK(r.channels == std::vector<std::string>{"ops"});
  CHECK(r.line == 38);

  CHECK(c.http.listen == "127.0.0.1:8008");
}

TEST_CASE("every remaining key maps onto its field", "[config]") {
  Config c = load_ok(R"(disaster_recovery:
  enabled: false
  state_dir: /var/lib/drd
  control: { socket: /run/drd/drd.sock, admin_group: drd-admin, socket_group: drd }
  databases:
    pg1:
      name: alpha
      type: primary
      priority: 5
      url: "postgresql+psycopg2://app@db1:5433/app?sslmode=require"
      password_file: secrets/pg1.pass
      data_dir: /var/lib/postgresql/15/main
      bin_dir: /usr/lib/postgresql/15/bin
      os_user: postgres
    pg2:
      type: standby
      url: "postgres://app@db2/app"
      no_failover: yes
  monitoring:
    enabled: off
    interval: 250ms
    timeout: 2s
    failure_threshold: 5
    quick_check_interval: 0s
    history_retention: 30d
    raw_retention: 2d
  failover:
    auto: false
    max_lag: 1GB
    synchronous: true
    synchronous_degrade_after: 15s
    restart_grace: 90s
  backup:
    compression: { algorithm: zstd, level: 19, threads: 2 }
    prefer_standby: true
    verify_schedule: "0 4 * * 0"
  alerts:
    channels:
      run: { type: exec, command: "/usr/local/bin/page --urgent", timeout: 10s, retries: 1 }
      run2: { type: exec, command: [/bin/echo, "two words"] }
      mail: { type: email, to: ops@example.com }
      journal: { type: log }
    rules:
      - { name: down, metric: up, op: "==", threshold: 0, severity: critical, repeat: 10m,
          nodes: alpha, channels: [run, mail, journal] }
      - { name: failed_over, metric: failover, channels: journal }
      - { name: sync_lost, metric: sync_degraded, severity: critical }
  http:
    listen: "[::1]:9100"
    token_file: http.token
)", "/opt/drd/conf");
  CHECK_FALSE(c.enabled);
  CHECK(c.state_dir == "/var/lib/drd");
  CHECK(c.control.socket == "/run/drd/drd.sock");
  CHECK(c.control.admin_group == "drd-admin");
  CHECK(c.control.socket_group == "drd");
  CHECK_FALSE(c.current_link);

  const auto& a = c.nodes.at(0);
  CHECK(a.key == "pg1");
  CHECK(a.name == "alpha");
  CHECK(a.type == NodeType::primary);
  CHECK(a.priority == 5);
  CHECK(a.engine == Engine::postgresql);
  CHECK(a.pg_conninfo == "postgresql://app@db1:5433/app?sslmode=require");
  CHECK(a.password_file == fs::path("/opt/drd/conf/secrets/pg1.pass"));
  CHECK(a.data_dir == fs::path("/var/lib/postgresql/15/main"));
  CHECK(a.bin_dir == fs::path("/usr/lib/postgresql/15/bin"));
  CHECK(a.os_user == std::optional<std::string>("postgres"));
  CHECK_FALSE(a.no_failover);
  const auto& b = c.nodes.at(1);
  CHECK(b.type == NodeType::secondary);  // "standby" is an alias
  CHECK(b.priority == 100);
  CHECK(b.no_failover);
  CHECK(b.pg_conninfo == "postgres://app@db2/app");
  CHECK(c.configured_primary() == &a);
  CHECK(c.find_node("pg1") == &a);  // by key too

  CHECK_FALSE(c.monitoring.enabled);
  CHECK(c.monitoring.interval == Millis(250));
  CHECK(c.monitoring.timeout == Millis(2000));
  CHECK(c.monitoring.failure_threshold == 5);
  CHECK(c.monitoring.quick_check_interval == Millis(0));
  CHECK(c.monitoring.history_retention == Millis(30LL * 86'400'000));
  CHECK(c.monitoring.raw_retention == Millis(2LL * 86'400'000));

  CHECK_FALSE(c.failover.auto_failover);
  CHECK(c.failover.max_lag_bytes == 1ull << 30);
  CHECK(c.failover.synchronous);
  CHECK(c.failover.synchronous_degrade_after == Millis(15'000));
  CHECK(c.failover.restart_grace == Millis(90'000));
  CHECK(Config{}.failover.restart_grace == Millis(60'000));  // the default

  CHECK_FALSE(c.backup.enabled);
  CHECK(c.backup.directory == "/var/lib/backups");  // sibling of state_dir
  CHECK(c.backup.schedule.empty());
  CHECK(c.backup.compression_level == 19);
  CHECK(c.backup.compression_threads == 2);
  CHECK(c.backup.prefer_standby);
  CHECK(c.backup.verify_schedule == "0 4 * * 0");
  CHECK_FALSE(c.backup.key_file);

  REQUIRE(c.alerts.channels.size() == 4);
  CHECK(c.alerts.channels[0].command == std::vector<std::string>{"/usr/local/bin/page", "--urgent"});
  CHECK(c.alerts.channels[0].timeout == Millis(10'000));
  CHECK(c.alerts.channels[0].retries == 1);
  CHECK(c.alerts.channels[1].command == std::vector<std::string>{"/bin/echo", "two words"});
  CHECK(c.alerts.channels[2].to == "ops@example.com");
  CHECK(c.alerts.channels[3].type == "log");
  REQUIRE(c.alerts.rules.size() == 3);
  CHECK(c.alerts.rules[0].op == "==");
  CHECK(c.alerts.rules[0].severity == "critical");
  CHECK(c.alerts.rules[0].repeat_interval == Millis(600'000));
  CHECK(c.alerts.rules[0].nodes == std::vector<std::string>{"alpha"});
  CHECK(c.alerts.rules[0].channels.size() == 3);
  // Event metrics may leave out op and threshold: "whenever it happens".
  CHECK(c.alerts.rules[1].op == ">");
  CHECK(c.alerts.rules[1].threshold == 0);
  CHECK(c.alerts.rules[1].channels == std::vector<std::string>{"journal"});
  CHECK(c.alerts.rules[2].metric == "sync_degraded");
  CHECK(c.alerts.rules[2].op == ">");
  CHECK(c.alerts.rules[2].threshold == 0);

  CHECK(c.http.listen == "[::1]:9100");
  CHECK(c.http.token_file == fs::path("/opt/drd/conf/http.token"));
}

TEST_CASE("defaults: state_dir, socket and backup directory follow the config folder", "[config][defaults]") {
  Config c = load_ok(kSeedSqlite, "/etc/drd");
  CHECK(c.state_dir == "/etc/drd/var/drd");
  CHECK(c.control.socket == "/etc/drd/var/drd/drd.sock");
  CHECK(c.backup.directory == "/etc/drd/var/backups");
  CHECK_FALSE(c.backup.enabled);
  CHECK(c.monitoring.interval == Millis(1000));
  CHECK(c.monitoring.failure_threshold == 3);
  CHECK(c.failover.auto_failover);

  Config d = load_ok(R"(disaster_recovery:
  state_dir: ../state/
  databases: { a: { url: "sqlite:///a.db" } }
)", "/etc/drd");
  CHECK(d.state_dir == "/etc/state");
  CHECK(d.control.socket == "/etc/state/drd.sock");
  CHECK(d.backup.directory == "/etc/backups");
}

TEST_CASE("relative paths resolve against the config file's folder", "[config][paths]") {
  struct Row {
    const char* url;
    const char* expected;
  };
  const Row rows[] = {
      {"sqlite:///a.db", "/cfg/dir/a.db"},
      {"sqlite:///./data/../data/a.db", "/cfg/dir/data/a.db"},
      {"sqlite:///../var/data/a.db", "/cfg/var/data/a.db"},
      {"sqlite:////abs/path/a.db", "/abs/path/a.db"},
      {"sqlite:////abs//x/../a.db", "/abs/a.db"},
      {"sqlite+pysqlite:///b.db", "/cfg/dir/b.db"},
      {"sqlite:///c.db?timeout=10", "/cfg/dir/c.db"},
  };
  for (const auto& r : rows) {
    INFO(r.url);
    Config c = load_ok(std::string("disaster_recovery:\n  databases:\n    a:\n      url: \"") + r.url + "\"\n",
                       "/cfg/dir");
    CHECK(c.nodes[0].sqlite_path == r.expected);
  }
  Config c = load_ok(R"(disaster_recovery:
  state_dir: st
  control: { socket: ../run/s.sock }
  databases:
    a: { url: "postgresql://u@h/db", password_file: p.pass, data_dir: ./pg, bin_dir: bin }
  backup: { directory: bk, encryption: { key_file: keys/k } }
  http: { token_file: ./t }
  alerts: {}
)", "/cfg/dir");
  CHECK(c.state_dir == "/cfg/dir/st");
  CHECK(c.control.socket == "/cfg/run/s.sock");
  CHECK(c.backup.directory == "/cfg/dir/bk");
  CHECK(*c.backup.key_file == "/cfg/dir/keys/k");
  CHECK(*c.http.token_file == "/cfg/dir/t");
  CHECK(*c.nodes[0].password_file == "/cfg/dir/p.pass");
  CHECK(*c.nodes[0].data_dir == "/cfg/dir/pg");
  CHECK(*c.nodes[0].bin_dir == "/cfg/dir/bin");
  Config l = load_ok("disaster_recovery:\n  current_link: ../data/./link.db\n  databases: { a: { url: \"sqlite:///a.db\" } }\n",
                     "/cfg/dir");
  CHECK(*l.current_link == "/cfg/data/link.db");
}

TEST_CASE("load_config reads a file and resolves against its folder", "[config][file]") {
  drd::test::TempDir dir("drd-config");
  drd::test::write_file(dir / "conf/drd.yaml", kSeedSqlite);
  auto r = load_config(dir / "conf/drd.yaml");
  INFO(all_problems(r));
  REQUIRE(r.config);
  CHECK(r.config->file == dir.path() / "conf/drd.yaml");
  CHECK(r.config->nodes[0].sqlite_path == dir.path() / "conf/data/images_primary.db");
  CHECK(r.config->state_dir == dir.path() / "conf/var/drd");
}

TEST_CASE("other top-level sections of a shared config.yaml are left alone", "[config][seed]") {
  Config c = load_ok(std::string("crawler:\n  threads: 8\ndatabase:\n  url: whatever\n") + kSeedSqlite);
  CHECK(c.nodes.size() == 2);
}

TEST_CASE("etc/drd.yaml and every file in etc/examples load without problems", "[config][shipped]") {
  const fs::path src = DRD_SOURCE_DIR;
  std::vector<fs::path> files = {src / "etc/drd.yaml"};
  for (const auto& e : fs::directory_iterator(src / "etc/examples"))
    if (e.path().extension() == ".yaml" || e.path().extension() == ".yml") files.push_back(e.path());
  CHECK(files.size() >= 4);
  for (const auto& f : files) {
    INFO(f.string());
    auto r = load_config(f);
    INFO(all_problems(r));
    CHECK(r.problems.empty());
    CHECK(r.config);
  }
}

TEST_CASE("etc/drd.yaml is the SQLite primary + 2 standbys that make run expects", "[config][shipped]") {
  const fs::path src = DRD_SOURCE_DIR;
  auto r = load_config(src / "etc/drd.yaml");
  INFO(all_problems(r));
  REQUIRE(r.config);
  const Config& c = *r.config;
  const fs::path root = src.lexically_normal();
  REQUIRE(c.nodes.size() == 3);
  CHECK(c.configured_primary()->name == "primary");
  for (const auto& n : c.nodes) {
    CHECK(n.engine == Engine::sqlite);
    CHECK(n.sqlite_path.parent_path() == root / "var/data");
  }
  CHECK(c.state_dir == root / "var/drd");
  CHECK(c.control.socket == root / "var/drd/drd.sock");
  CHECK(*c.current_link == root / "var/data/images.db");
  CHECK(c.backup.enabled);
  CHECK(c.backup.directory == root / "var/backups");
  CHECK(c.backup.schedule == "every 6h");
  CHECK_FALSE(c.backup.key_file);
  CHECK(c.failover.auto_failover);
  CHECK(c.monitoring.interval == Millis(1000));
  CHECK(c.monitoring.failure_threshold == 3);
  CHECK(c.http.listen.empty());
  REQUIRE_FALSE(c.alerts.rules.empty());
}
