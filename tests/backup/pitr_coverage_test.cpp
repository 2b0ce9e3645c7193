// SQLite point-in-time coverage and its gaps: table-driven, pure.
#include <catch2/catch.hpp>

#include "daemon/backup/incremental.hpp"
#include "daemon/backup/manifest.hpp"
#include "daemon/backup/pitr_coverage.hpp"

using namespace drd;
using namespace drd::backup;

namespace {

// Minutes after 12:00 on a fixed day.
SysTime m(int minutes) { return parse_time_utc("2026-12-07T12:00:00Z").value() + std::chrono::minutes(minutes); }

struct Gap {
  int from;
  int to;  // -1: open
  std::string after, before;
  bool operator==(const Gap&) const = default;
};

std::vector<Gap> gaps_of(const Coverage& c) {
  std::vector<Gap> out;
  for (auto& g : c.gaps)
    out.push_back({static_cast<int>(std::chrono::duration_cast<std::chrono::minutes>(g.from - m(0)).count()),
                   g.to ? static_cast<int>(std::chrono::duration_cast<std::chrono::minutes>(*g.to - m(0)).count()) : -1,
                   g.after_id, g.before_id});
  return out;
}

struct Case {
  const char* name;
  std::vector<ChainWindow> windows;
  bool expected;
  std::vector<Gap> gaps;
  bool live;
};

}  // namespace

TEST_CASE("pitr_coverage finds the gaps between WAL chains and an open one at the end", "[backup][pitr][unit]") {
  const std::vector<Case> cases = {
      {"nothing archived yet: no coverage, no gap", {}, true, {}, false},
      {"one live chain", {{"A", m(0), m(10), true}}, true, {}, true},
      {"one chain that ended, archiving expected: open gap after it", {{"A", m(0), m(10), false}}, true,
       {{10, -1, "A", ""}}, false},
      {"one chain that ended, archiving not configured: no open gap", {{"A", m(0), m(10), false}}, false, {}, false},
      {"rotation: the new chain starts before the old one's last cut", {{"A", m(0), m(10), false}, {"B", m(9), m(20), true}},
       true, {}, true},
      {"switchover: the old chain ends, the new base comes later", {{"A", m(0), m(10), false}, {"B", m(12), m(20), true}},
       true, {{10, 12, "A", "B"}}, true},
      {"two gaps, then an open one", {{"C", m(30), m(40), false}, {"A", m(0), m(10), false}, {"B", m(12), m(20), false}},
       true, {{10, 12, "A", "B"}, {20, 30, "B", "C"}, {40, -1, "C", ""}}, false},
      {"a chain inside another leaves no gap", {{"A", m(0), m(30), false}, {"B", m(5), m(10), false}, {"C", m(30), m(40), true}},
       true, {}, true},
      {"an older chain still live while a newer one starts: no gap", {{"A", m(0), m(10), true}, {"B", m(20), m(21), true}},
       true, {}, true},
      {"touching windows: no gap", {{"A", m(0), m(10), false}, {"B", m(10), m(20), false}}, true, {{20, -1, "B", ""}},
       false},
  };
  for (const auto& c : cases) {
    SECTION(c.name) {
      auto cov = pitr_coverage(c.windows, c.expected);
      CHECK(gaps_of(cov) == c.gaps);
      CHECK(cov.live == c.live);
      CHECK((cov.open_gap() != nullptr) == (!c.gaps.empty() && c.gaps.back().to == -1));
      if (!c.windows.empty()) CHECK(cov.from == m(0));  // every case's oldest window starts at 12:00
    }
  }
}

TEST_CASE("gap_at names the gap a time falls in, and nothing at its edges", "[backup][pitr][unit]") {
  auto cov = pitr_coverage({{"A", m(0), m(10), false}, {"B", m(12), m(20), false}}, true);
  CHECK_FALSE(gap_at(cov, m(5)));
  CHECK_FALSE(gap_at(cov, m(10)));  // the end of A's window is restorable
  REQUIRE(gap_at(cov, m(11)));
  CHECK(gap_at(cov, m(11))->after_id == "A");
  CHECK(gap_at(cov, m(11))->before_id == "B");
  CHECK_FALSE(gap_at(cov, m(12)));  // the start of B's window is restorable
  REQUIRE(gap_at(cov, m(25)));
  CHECK_FALSE(gap_at(cov, m(25))->to);  // the open gap after B
  CHECK_FALSE(gap_at(cov, m(-5)));      // before any backup is not a gap (nothing was ever covered)
  CHECK(describe_gap(*gap_at(cov, m(11))) ==
        "from 2026-12-07T12:10:00.000Z to 2026-12-07T12:12:00.000Z (between backups A and B)");
  CHECK(describe_gap(*gap_at(cov, m(25))) ==
        "from 2026-12-07T12:20:00.000Z until now (archiving after backup B ended)");
}

TEST_CASE("sqlite_chain_windows reads the windows from the catalog rows of full backups and segments",
          "[backup][pitr][unit]") {
  auto full = [](const std::string& id, int at) {
    CatalogEntry e;
    e.manifest.id = id;
    e.manifest.engine = "sqlite";
    e.manifest.kind = "full";
    e.manifest.created_at = m(at);
    return e;
  };
  auto seg = [](const std::string& parent, int n, bool base, int at) {
    CatalogEntry e;
    e.manifest.id = segment_id(parent, static_cast<std::uint64_t>(n));
    e.manifest.engine = "sqlite";
    e.manifest.kind = "incremental";
    e.manifest.parent = parent;
    e.manifest.content = kWalSegmentContent;
    e.manifest.created_at = m(at);
    e.manifest.source_position =
        "{\"segment\":" + std::to_string(n) + ",\"base\":" + (base ? "true" : "false") + ",\"frames\":1}";
    return e;
  };
  std::vector<CatalogEntry> list = {full("A", 0), seg("A", 1, true, 1), seg("A", 2, false, 5), seg("A", 4, false, 9),
                                    full("S", 6),  // a standby's full: no chain
                                    full("B", 12), seg("B", 1, true, 13)};
  auto w = sqlite_chain_windows(list, {"B"});
  REQUIRE(w.size() == 2);
  CHECK(w[0].full_id == "A");
  CHECK(w[0].from == m(1));  // the base segment's cut
  CHECK(w[0].to == m(5));    // segment 3 is missing: the replay stops at 2
  CHECK_FALSE(w[0].live);
  CHECK(w[1].full_id == "B");
  CHECK(w[1].live);
  auto cov = pitr_coverage(w, true);
  REQUIRE(cov.gaps.size() == 1);
  CHECK(cov.gaps[0].from == m(5));
  CHECK(cov.gaps[0].to == m(13));
}
