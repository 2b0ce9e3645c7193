// The loader's value helpers: redact_url, nearest_key, database URL parsing, schedules,
// listen addresses.
#include <catch2/catch.hpp>

#include "common/config.hpp"
#include "common/config_detail.hpp"
#include "common/node_url.hpp"

using namespace drd;
using namespace drd::config_detail;

TEST_CASE("redact_url hides passwords and nothing else", "[config][redact]") {
  struct Row {
    const char* in;
    const char* out;
  };
  const Row rows[] = {
      {"postgresql://user:secret@host/db", "postgresql://user:***@host/db"},
      {"postgresql://user:secret@host:5432/db?sslmode=require", "postgresql://user:***@host:5432/db?sslmode=require"},
      {"postgresql://user@host:5432/db", "postgresql://user@host:5432/db"},
      {"postgresql://host/db", "postgresql://host/db"},
      {"postgresql+psycopg2://u:p%40ss@h/db", "postgresql+psycopg2://u:***@h/db"},
      {"postgresql://u:pa@ss@h/db", "postgresql://u:***@h/db"},          // unencoded '@' in a password
      {"postgresql://u:p/w?x@h/db", "postgresql://u:***@h/db"},          // '/' and '?' in a password
      {"postgresql://u@h/db?password=secret", "postgresql://u@h/db?password=***"},
      {"postgresql://u@h/db?sslmode=require&password=secret&connect_timeout=3",
       "postgresql://u@h/db?sslmode=require&password=***&connect_timeout=3"},
      {"host=h dbname=db password=secret user=u", "host=h dbname=db password=*** user=u"},
      {"host=h password='se cret\\' x' user=u", "host=h password=*** user=u"},
      {"host=h PASSWORD=secret", "host=h PASSWORD=***"},
      {"sqlite:///data/a.db", "sqlite:///data/a.db"},
      {"sqlite:////abs/a.db", "sqlite:////abs/a.db"},
      {"http://127.0.0.1:9000/hook", "http://127.0.0.1:9000/hook"},
      {"", ""},
      {"postgresql//u:secret@h/db", "postgresql//u:***@h/db"},  // mangled, still redacted
      {"u:secret@h/db", "u:***@h/db"},
      {"user@host", "user@host"},
  };
  for (const auto& r : rows) {
    INFO(r.in);
    CHECK(redact_url(r.in) == r.out);
  }
}

TEST_CASE("nearest_key suggests close keys only", "[config][nearest]") {
  const std::vector<std::string> monitoring = {"enabled",           "interval",          "timeout",
                                               "failure_threshold", "quick_check_interval", "history_retention",
                                               "raw_retention"};
  struct Row {
    const char* key;
    const char* expected;  // nullptr = no suggestion
  };
  const Row rows[] = {
      {"failur_threshold", "failure_threshold"},
      {"failure_treshold", "failure_threshold"},
      {"intervall", "interval"},
      {"Interval", "interval"},  // case is not a typo worth more than 0
      {"timout", "timeout"},
      {"enable", "enabled"},
      {"history_retension", "history_retention"},
      {"raw_retentoin", "raw_retention"},
      {"colour", nullptr},
      {"x", nullptr},
      {"", nullptr},
  };
  for (const auto& r : rows) {
    INFO(r.key);
    auto got = nearest_key(r.key, monitoring);
    if (r.expected) {
      REQUIRE(got);
      CHECK(*got == r.expected);
    } else {
      CHECK_FALSE(got);
    }
  }
  CHECK_FALSE(nearest_key("ab", {"to"}));      // shares nothing
  CHECK(nearest_key("ab", {"to", "ac"}) == std::optional<std::string>("ac"));
  CHECK_FALSE(nearest_key("anything", {}));
  CHECK(edit_distance("kitten", "sitting") == 3);
  CHECK(edit_distance("", "abc") == 3);
}

TEST_CASE("database URLs parse into engine, file or conninfo and identity", "[config][url]") {
  struct Row {
    const char* url;
    Engine engine;
    const char* file_or_conninfo;
    const char* identity;
  };
  const Row rows[] = {
      {"sqlite:///rel/a.db", Engine::sqlite, "rel/a.db", ""},
      {"sqlite:////abs/a.db", Engine::sqlite, "/abs/a.db", ""},
      {"SQLite:///a.db", Engine::sqlite, "a.db", ""},
      {"postgresql://u:p@h:5433/db", Engine::postgresql, "postgresql://u:p@h:5433/db", "h:5433/db"},
      {"postgres://u@H/db", Engine::postgresql, "postgres://u@H/db", "h:5432/db"},
      {"postgresql+psycopg2://u:p@h/db?sslmode=require", Engine::postgresql,
       "postgresql://u:p@h/db?sslmode=require", "h:5432/db"},
      {"postgresql://u@/db?host=/run/postgresql&port=5444", Engine::postgresql,
       "postgresql://u@/db?host=/run/postgresql&port=5444", "/run/postgresql:5444/db"},
      {"postgresql://alice@[::1]:6000", Engine::postgresql, "postgresql://alice@[::1]:6000", "::1:6000/alice"},
      {"postgresql://u@h1:5432,h2:5433/db", Engine::postgresql, "postgresql://u@h1:5432,h2:5433/db",
       "h1:5432,h2:5433/db"},
      {"postgresql://u@h/my%20db", Engine::postgresql, "postgresql://u@h/my%20db", "h:5432/my db"},
  };
  for (const auto& r : rows) {
    INFO(r.url);
    auto parsed = parse_database_url(r.url);
    REQUIRE(std::holds_alternative<ParsedUrl>(parsed));
    const auto& p = std::get<ParsedUrl>(parsed);
    CHECK(p.engine == r.engine);
    if (r.engine == Engine::sqlite) {
      CHECK(p.sqlite_file == r.file_or_conninfo);
    } else {
      CHECK(p.pg_conninfo == r.file_or_conninfo);
      CHECK(p.pg_identity == r.identity);
    }
  }
}

TEST_CASE("bad database URLs are explained without their password", "[config][url]") {
  struct Row {
    const char* url;
    const char* message;
  };
  const Row rows[] = {
      {"data/a.db", "not a database URL: 'data/a.db'"},
      {"sqlite://", "names no file"},
      {"sqlite:///", "names no file"},
      {"sqlite:///:memory:", "in-memory SQLite database cannot be replicated"},
      {"sqlite://host/a.db", "SQLite URLs have no host part"},
      {"mysql://u:secret@h/db", "unknown URL scheme 'mysql' in 'mysql://u:***@h/db'"},
      {"postgresql://u:secret@h:port/db", "bad port 'port' in PostgreSQL URL 'postgresql://u:***@h:port/db'"},
      {"postgresql://u:secret@h:0/db", "bad port '0'"},
      {"postgresql://u:secret@[::1/db", "malformed host"},
  };
  for (const auto& r : rows) {
    INFO(r.url);
    auto parsed = parse_database_url(r.url);
    REQUIRE(std::holds_alternative<std::string>(parsed));
    const auto& msg = std::get<std::string>(parsed);
    CHECK_THAT(msg, Catch::Contains(r.message));
    CHECK_THAT(msg, !Catch::Contains("secret"));
  }
}

TEST_CASE("schedules: every DURATION or 5-field cron", "[config][schedule]") {
  for (auto ok : {"every 6h", "every 30m", "Every 1h30m", "every 1 d", "0 3 * * *", "*/15 * * * 1-5",
                  "0 0 1 jan,jul sun"}) {
    INFO(ok);
    CHECK_FALSE(check_schedule(ok));
  }
  CHECK_FALSE(check_schedule("every 1m"));
  // Backups are planned on whole minutes: the loader refuses what the scheduler would.
  CHECK(check_schedule("every 30s").value_or("") == "a schedule must be at least 'every 1m', got 'every 30s'");
  for (auto bad : {"", "every", "every often", "every 500ms", "every 59s", "0 3 * *", "0 3 * * * *", "@daily", "0 3 * * ?"}) {
    INFO(bad);
    CHECK(check_schedule(bad));
  }
}

TEST_CASE("http listen addresses need a host and a valid port", "[config][listen]") {
  for (auto ok : {"127.0.0.1:8008", "0.0.0.0:1", "localhost:65535", "[::1]:8008", "[::]:9100"}) {
    INFO(ok);
    CHECK_FALSE(check_listen(ok));
  }
  for (auto bad : {"8008", ":8008", "localhost", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536", "h:http",
                   "[::1]8008", "[::1"}) {
    INFO(bad);
    CHECK(check_listen(bad));
  }
}

TEST_CASE("display_url shows an SQLite node's file as an absolute path", "[config][url]") {
  auto loaded = load_config_text(R"(disaster_recovery:
  databases:
    primary: { type: primary, url: "sqlite:///data/a.db" }
    abs: { type: secondary, url: "sqlite:////var/lib/app/b.db" }
)",
                                 "/cfg/dir/drd.yaml", "/cfg/dir");
  for (auto& p : loaded.problems) INFO(p.to_string());
  REQUIRE(loaded.config);
  const auto& n = loaded.config->nodes;
  REQUIRE(n.size() == 2);
  CHECK(n[0].safe_url == "sqlite:///data/a.db");  // as written
  CHECK(display_url(n[0]) == "sqlite:////cfg/dir/data/a.db");
  CHECK(display_url(n[1]) == "sqlite:////var/lib/app/b.db");

  auto pg = load_config_text(R"(disaster_recovery:
  databases:
    primary: { type: primary, url: "postgresql://u:secret@h:5432/db" }
    standby: { type: secondary, url: "postgresql://u:secret@h2:5432/db" }
)",
                             "/cfg/dir/drd.yaml", "/cfg/dir");
  REQUIRE(pg.config);
  CHECK(display_url(pg.config->nodes[0]) == "postgresql://u:***@h:5432/db");
}
