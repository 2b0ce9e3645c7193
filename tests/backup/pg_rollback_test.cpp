// Rolling a live PostgreSQL primary back to a backup: which timeline history files must be
// staged, the recovery settings, and the check that the copy ends on a new timeline
// (daemon/backup/pg_rollback.hpp), table-driven, no server.
#include <catch2/catch.hpp>

#include "daemon/backup/pg_rollback.hpp"

using namespace drd::backup;

TEST_CASE("roll-back: the highest timeline in use and the history files to read from the primary", "[backup][pg]") {
  struct Row {
    const char* what;
    std::uint32_t backup_tl, primary_tl;
    std::vector<std::uint32_t> archived;
    std::uint32_t highest;
    std::vector<std::uint32_t> fetch;
  };
  const Row rows[] = {
      {"never failed over", 1, 1, {}, 1, {}},
      {"a failover since the backup, its history archived", 1, 2, {2}, 2, {}},
      {"a failover since the backup, archiving was off then", 1, 2, {}, 2, {2}},
      {"two failovers, only the later one archived", 1, 3, {3}, 3, {2}},
      {"the backup is on the primary's timeline", 3, 3, {2, 3}, 3, {}},
      {"an abandoned branch above the primary's timeline (archive only)", 1, 2, {2, 3}, 3, {}},
      {"a backup of a branch the primary left", 3, 2, {2, 3}, 3, {}},
      {"history files below the backup's timeline are not needed", 4, 5, {}, 5, {5}},
  };
  for (const auto& r : rows) {
    INFO(r.what);
    auto t = pg_rollback_timelines(r.backup_tl, r.primary_tl, r.archived);
    CHECK(t.highest == r.highest);
    CHECK(t.fetch == r.fetch);
  }
}

TEST_CASE("roll-back: recovery settings follow the primary's timeline to a time, else stop at the backup's end",
          "[backup][pg]") {
  const std::string t = "recovery_target_time = '2026-11-24 10:00:00.000000 +00'\n";
  CHECK(pg_rollback_settings(t, 3) == t + "recovery_target_timeline = '3'\n");
  auto immediate = pg_rollback_settings(std::nullopt, 3);
  CHECK(immediate.find("recovery_target = 'immediate'") != std::string::npos);
  CHECK(immediate.find("recovery_target_timeline = 'current'") != std::string::npos);
  CHECK(immediate.find("recovery_target_time =") == std::string::npos);
}

TEST_CASE("roll-back: the copy must end on a timeline above every one in use", "[backup][pg]") {
  struct Row {
    std::uint32_t copy_tl, highest;
    bool ok;
  };
  const Row rows[] = {{2, 1, true}, {5, 4, true}, {9, 4, true}, {4, 4, false}, {3, 4, false}, {1, 1, false}};
  for (const auto& r : rows) {
    INFO(r.copy_tl << " vs " << r.highest);
    auto p = pg_rollback_timeline_problem(r.copy_tl, r.highest);
    CHECK(!p.has_value() == r.ok);
    if (p) CHECK(p->find("timeline " + std::to_string(r.highest)) != std::string::npos);
  }
}
