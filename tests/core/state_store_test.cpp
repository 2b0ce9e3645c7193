#include <catch2/catch.hpp>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "daemon/store/state_store.hpp"
#include "tests/support/temp_dir.hpp"

using namespace drd;

TEST_CASE("state store migrates a new file to the current schema", "[store]") {
  test::TempDir dir;
  auto s = SqliteStateStore::open(dir / "state" / "state.db");
  REQUIRE(s.ok());
  CHECK((*s)->schema_version() == SqliteStateStore::kSchemaVersion);
  auto c = (*s)->cluster();
  REQUIRE(c.ok());
  CHECK(c->primary.empty());
  CHECK(c->term == 0);
}

TEST_CASE("state store refuses a schema newer than it knows", "[store]") {
  test::TempDir dir;
  {
    auto s = SqliteStateStore::open(dir / "state.db");
    REQUIRE(s.ok());
    sqlite3_exec((*s)->raw(), "PRAGMA user_version=99", nullptr, nullptr, nullptr);
  }
  auto s = SqliteStateStore::open(dir / "state.db");
  REQUIRE_FALSE(s.ok());
  CHECK_THAT(s.error().message, Catch::Contains("schema version 99"));
}

TEST_CASE("compare-and-set of primary bumps the term and refuses stale terms", "[store]") {
  test::TempDir dir;
  auto s = std::move(SqliteStateStore::open(dir / "state.db").value());
  REQUIRE(s->compare_and_set_primary(0, "primary").value());
  CHECK(s->cluster()->term == 1);
  CHECK_FALSE(s->compare_and_set_primary(0, "secondary1").value());  // stale
  CHECK(s->cluster()->primary == "primary");
  REQUIRE(s->compare_and_set_primary(1, "secondary1").value());
  CHECK(s->cluster()->primary == "secondary1");
  CHECK(s->cluster()->term == 2);
}

TEST_CASE("claim_primary records the new primary and the fenced old one together, or neither", "[store]") {
  test::TempDir dir;
  auto s = std::move(SqliteStateStore::open(dir / "state.db").value());
  REQUIRE(s->compare_and_set_primary(0, "primary").value());
  CHECK_FALSE(s->claim_primary(0, "secondary1", "primary").value());  // stale term: nothing written
  CHECK(s->cluster()->primary == "primary");
  CHECK(s->fenced_nodes()->empty());
  REQUIRE(s->claim_primary(1, "secondary1", "primary").value());
  CHECK(s->cluster()->primary == "secondary1");
  CHECK(s->cluster()->term == 2);
  CHECK(s->fenced_nodes().value() == std::vector<std::string>{"primary"});
  REQUIRE(s->claim_primary(2, "primary", "").value());  // no fence: a switchover
  CHECK(s->fenced_nodes().value() == std::vector<std::string>{"primary"});
  REQUIRE(s->set_flag("monitoring", true).ok());  // the store is usable after (no open transaction)
}

TEST_CASE("a pending failover persists until its history row is appended", "[store]") {
  test::TempDir dir;
  {
    auto s = std::move(SqliteStateStore::open(dir / "state.db").value());
    CHECK_FALSE(s->pending_failover().value().has_value());
    REQUIRE(s->set_pending_failover(FailoverRecord{1000, "p", "s1", "auto", "p down", 0, 0, 2}).ok());
  }
  auto s = std::move(SqliteStateStore::open(dir / "state.db").value());  // a restart
  auto p = s->pending_failover().value();
  REQUIRE(p.has_value());
  CHECK(p->from == "p");
  CHECK(p->to == "s1");
  CHECK(p->mode == "auto");
  CHECK(p->reason == "p down");
  CHECK(p->term == 2);
  CHECK(p->time_ms == 1000);
  // Another term's history row leaves it; its own clears it, in the same transaction.
  REQUIRE(s->append_history({1500, "x", "y", "manual", "r", 1, 0, 1}).ok());
  CHECK(s->pending_failover().value().has_value());
  REQUIRE(s->append_history({2000, "p", "s1", "auto", "p down", 10, 0, 2}).ok());
  CHECK_FALSE(s->pending_failover().value().has_value());
  // Replaced by a newer one, cleared explicitly.
  REQUIRE(s->set_pending_failover(FailoverRecord{3000, "s1", "s2", "manual", "r", 0, 0, 3}).ok());
  REQUIRE(s->set_pending_failover(FailoverRecord{4000, "s1", "p", "manual", "r", 0, 0, 4}).ok());
  CHECK(s->pending_failover().value()->to == "p");
  REQUIRE(s->set_pending_failover(std::nullopt).ok());
  CHECK_FALSE(s->pending_failover().value().has_value());
  CHECK(s->history(10).value().size() == 2);
}

TEST_CASE("history, flags, fenced nodes and audit persist across reopen", "[store]") {
  test::TempDir dir;
  {
    auto s = std::move(SqliteStateStore::open(dir / "state.db").value());
    REQUIRE(s->append_history({1000, "p", "s1", "auto", "p down", 412, 0, 2}).ok());
    REQUIRE(s->append_history({2000, "s1", "p", "switchover", "planned", 300, 4096, 3, 1409040}).ok());
    REQUIRE(s->set_flag("auto_failover", false).ok());
    REQUIRE(s->set_fenced("p", true).ok());
    REQUIRE(s->append_audit({5, 1000, 42, "failover", "{\"node\":\"s1\"}", true, "ok"}).ok());
  }
  auto s = std::move(SqliteStateStore::open(dir / "state.db").value());
  auto h = s->history(10).value();
  REQUIRE(h.size() == 2);
  CHECK(h[0].mode == "switchover");  // newest first
  CHECK(h[1].duration_ms == 412);
  CHECK(h[0].lag_bytes == 4096);
  CHECK(h[0].position == std::optional<std::uint64_t>(1409040));
  CHECK_FALSE(h[1].position.has_value());  // unknown
  CHECK(s->history(10, 1500).value().size() == 1);
  CHECK(s->flag("auto_failover").value() == std::optional<bool>(false));
  CHECK_FALSE(s->flag("monitoring").value().has_value());
  CHECK(s->fenced_nodes().value() == std::vector<std::string>{"p"});
  REQUIRE(s->set_fenced("p", false).ok());
  CHECK(s->fenced_nodes().value().empty());
  auto a = s->audit(10).value();
  REQUIRE(a.size() == 1);
  CHECK(a[0].uid == 1000);
  CHECK(a[0].method == "failover");
}

TEST_CASE("health samples keep per-minute summaries, pruning drops old raw rows", "[store]") {
  test::TempDir dir;
  auto s = std::move(SqliteStateStore::open(dir / "state.db").value());
  std::vector<HealthSample> batch;
  for (int i = 0; i < 120; ++i) batch.push_back({"p", 60000LL * 10 + i * 1000LL, i % 10 != 0, double(i), ""});
  // Two batches splitting minute 10 in half: the summary merges them.
  REQUIRE(s->add_health_samples({batch.begin(), batch.begin() + 30}).ok());
  REQUIRE(s->add_health_samples({batch.begin() + 30, batch.end()}).ok());
  CHECK(s->health_samples("p", 0).value().size() == 120);
  auto minutes = s->health_minutes("p", 0).value();
  REQUIRE(minutes.size() == 2);
  CHECK(minutes[0].minute_ms == 600000);
  CHECK(minutes[0].count == 60);
  CHECK(minutes[0].failures == 6);
  CHECK(minutes[0].min_ms == 1.0);
  CHECK(minutes[0].max_ms == 59.0);
  CHECK(minutes[0].avg_ms == Approx(30.0));  // mean of 1..59 without the multiples of 10
  // Raw samples before minute 11 go; their summary stays.
  REQUIRE(s->prune_health(60000LL * 11, 0).ok());
  CHECK(s->health_samples("p", 0).value().size() == 60);
  CHECK(s->health_minutes("p", 0).value().size() == 2);
  // Summaries older than the retention go too.
  REQUIRE(s->prune_health(60000LL * 11, 60000LL * 11).ok());
  CHECK(s->health_minutes("p", 0).value().size() == 1);
}

TEST_CASE("state store survives kill -9 in the middle of term changes", "[store][crash]") {
  test::TempDir dir;
  auto file = dir / "state.db";
  { REQUIRE(SqliteStateStore::open(file).ok()); }
  for (int round = 0; round < 5; ++round) {
    pid_t child = fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      auto s = std::move(SqliteStateStore::open(file).value());
      for (;;) {  // keeps flipping primary and writing history until killed
        auto c = s->cluster().value();
        if (s->compare_and_set_primary(c.term, c.term % 2 ? "a" : "b").value())
          (void)s->append_history({0, c.primary, c.term % 2 ? "a" : "b", "auto", "test", 1, 0, c.term + 1});
      }
    }
    usleep(20000 + round * 7000);
    kill(child, SIGKILL);
    int status = 0;
    waitpid(child, &status, 0);
    auto s = SqliteStateStore::open(file);
    REQUIRE(s.ok());
    auto c = (*s)->cluster().value();
    CHECK(c.term >= 0);
    // Every history row names a term no greater than the cluster's current one.
    for (auto& h : (*s)->history(1000000).value()) CHECK(h.term <= c.term);
    sqlite3_stmt* st = nullptr;
    sqlite3_prepare_v2((*s)->raw(), "PRAGMA integrity_check", -1, &st, nullptr);
    REQUIRE(sqlite3_step(st) == SQLITE_ROW);
    CHECK(std::string(reinterpret_cast<const char*>(sqlite3_column_text(st, 0))) == "ok");
    sqlite3_finalize(st);
  }
}

TEST_CASE("cluster facts (the PostgreSQL system identifier) persist across reopen and a version-4 file gains them",
          "[store]") {
  test::TempDir dir;
  {
    auto s = std::move(SqliteStateStore::open(dir / "state.db").value());
    CHECK_FALSE(s->cluster_fact("pg_system_identifier").value().has_value());
    REQUIRE(s->set_cluster_fact("pg_system_identifier", "7298811202716316540").ok());
    REQUIRE(s->set_cluster_fact("pg_system_identifier", "7298811202716316541").ok());  // replaced, not added
  }
  {
    auto s = std::move(SqliteStateStore::open(dir / "state.db").value());
    CHECK(s->cluster_fact("pg_system_identifier").value() == std::optional<std::string>("7298811202716316541"));
    // A file written by the previous schema (4): the table is dropped and the version set back.
    // (Schema 6 added history.position: a version-4 file has no such column.)
    REQUIRE(sqlite3_exec(s->raw(), "DROP TABLE cluster_facts; ALTER TABLE history DROP COLUMN position; PRAGMA user_version=4",
                         nullptr, nullptr, nullptr) == SQLITE_OK);
  }
  auto s = std::move(SqliteStateStore::open(dir / "state.db").value());
  CHECK(s->schema_version() == SqliteStateStore::kSchemaVersion);
  CHECK_FALSE(s->cluster_fact("pg_system_identifier").value().has_value());
  REQUIRE(s->set_cluster_fact("pg_system_identifier", "42").ok());
  CHECK(s->cluster_fact("pg_system_identifier").value() == std::optional<std::string>("42"));
}
