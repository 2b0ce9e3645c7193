// Retention: table-driven, pure.
#include <catch2/catch.hpp>
#include <map>

#include "daemon/backup/manifest.hpp"
#include "daemon/backup/retention.hpp"

using namespace drd;
using namespace drd::backup;

namespace {
SysTime at(const std::string& s) { return parse_time_utc(s).value(); }
RetentionItem full(const std::string& id, const std::string& t, bool verified = false) {
  return RetentionItem{id, at(t), verified, "full", "", "primary"};
}
RetentionItem incr(const std::string& id, const std::string& t, const std::string& parent) {
  return RetentionItem{id, at(t), false, "incremental", parent, "primary"};
}
using Keep = std::map<std::string, std::vector<std::string>>;
Keep kept(const RetentionDecision& d) {
  Keep k;
  for (auto& e : d.keep) k[e.id] = e.reasons;
  return k;
}

struct Case {
  const char* name;
  std::vector<RetentionItem> items;
  RetentionPolicy policy;
  Keep expect_keep;
  std::vector<std::string> expect_remove;  // newest first
};
}  // namespace

TEST_CASE("retention decisions (table)", "[retention]") {
  const SysTime now = at("2026-11-24T12:00:00Z");
  std::vector<Case> cases = {
      {"empty list", {}, {7, 7, 4, 6}, {}, {}},
      {"keep_last only",
       {full("a", "2026-11-20T00:00:00Z"), full("b", "2026-11-21T00:00:00Z"), full("c", "2026-11-22T00:00:00Z"),
        full("d", "2026-11-23T00:00:00Z")},
       {2, 0, 0, 0},
       {{"d", {"last 2"}}, {"c", {"last 2"}}},
       {"b", "a"}},
      {"daily keeps the newest of each day that has backups",
       {full("a1", "2026-11-18T01:00:00Z"), full("a2", "2026-11-18T13:00:00Z"), full("b1", "2026-11-19T01:00:00Z"),
        full("b2", "2026-11-19T23:59:59Z"), full("c1", "2026-11-20T00:00:00Z")},
       {0, 2, 0, 0},
       {{"c1", {"daily 2026-11-20"}}, {"b2", {"daily 2026-11-19"}}},
       {"b1", "a2", "a1"}},
      {"days without backups do not count",
       {full("x", "2026-11-01T05:00:00Z"), full("y", "2026-11-10T05:00:00Z"), full("z", "2026-11-20T05:00:00Z")},
       {0, 2, 0, 0},
       {{"z", {"daily 2026-11-20"}}, {"y", {"daily 2026-11-10"}}},
       {"x"}},
      {"weekly uses ISO weeks (Monday start)",
       {full("sun", "2026-11-22T10:00:00Z"), full("mon", "2026-11-23T10:00:00Z"), full("sat", "2026-11-21T10:00:00Z"),
        full("prev", "2026-11-15T10:00:00Z")},
       {0, 0, 2, 0},
       {{"mon", {"weekly 2026-W48"}}, {"sun", {"weekly 2026-W47"}}},
       {"sat", "prev"}},
      {"monthly and overlapping reasons",
       {full("oct", "2026-10-31T23:00:00Z"), full("sep", "2026-09-15T00:00:00Z"), full("nov", "2026-11-24T06:00:00Z"),
        full("aug", "2026-08-01T00:00:00Z")},
       {1, 1, 0, 3},
       {{"nov", {"last 1", "daily 2026-11-24", "monthly 2026-11"}},
        {"oct", {"monthly 2026-10"}},
        {"sep", {"monthly 2026-09"}}},
       {"aug"}},
      {"the newest verified backup is never deleted",
       {full("old", "2026-01-01T00:00:00Z", true), full("mid", "2026-06-01T00:00:00Z", true),
        full("new", "2026-11-01T00:00:00Z")},
       {1, 0, 0, 0},
       {{"new", {"last 1"}}, {"mid", {"newest verified"}}},
       {"old"}},
      {"an all-zero policy still keeps the newest",
       {full("a", "2026-11-01T00:00:00Z"), full("b", "2026-11-02T00:00:00Z")},
       {0, 0, 0, 0},
       {{"b", {"newest"}}},
       {"a"}},
      {"a kept incremental keeps its full (transitively)",
       {full("F", "2026-11-01T00:00:00Z"), incr("I1", "2026-11-02T00:00:00Z", "F"),
        incr("I2", "2026-11-03T00:00:00Z", "I1"), full("G", "2026-10-01T00:00:00Z"),
        incr("J", "2026-10-02T00:00:00Z", "G")},
       {1, 0, 0, 0},
       {{"I2", {"last 1"}}, {"I1", {"parent of kept incremental"}}, {"F", {"parent of kept incremental"}}},
       {"J", "G"}},
      {"a deleted incremental does not pin its parent",
       {full("F", "2026-11-01T00:00:00Z"), incr("I", "2026-11-02T00:00:00Z", "F"), full("G", "2026-11-03T00:00:00Z")},
       {1, 0, 0, 0},
       {{"G", {"last 1"}}},
       {"I", "F"}},
      {"backups dated after now are kept and not bucketed",
       {full("future", "2026-12-01T00:00:00Z"), full("a", "2026-11-23T00:00:00Z"), full("b", "2026-11-22T00:00:00Z")},
       {0, 1, 0, 0},
       {{"future", {"newest", "dated in the future"}}, {"a", {"daily 2026-11-23"}}},
       {"b"}},
  };
  for (auto& c : cases) {
    SECTION(c.name) {
      auto d = apply_retention(c.items, c.policy, now);
      CHECK(kept(d) == c.expect_keep);
      CHECK(d.remove == c.expect_remove);
      CHECK(d.keep.size() + d.remove.size() == c.items.size());
    }
  }
}

TEST_CASE("retention over 90 days of 6-hourly backups with the default policy", "[retention]") {
  std::vector<RetentionItem> items;
  SysTime start = at("2026-08-26T00:00:00Z");
  for (int i = 0; i < 90 * 4; ++i)
    items.push_back(RetentionItem{"b" + std::to_string(1000 + i), start + std::chrono::hours(6 * i), i == 300, "full", "", "p"});
  SysTime now = items.back().created_at + std::chrono::hours(1);
  auto d = apply_retention(items, RetentionPolicy{}, now);
  // last 7 spans 2 days; 7 days; 4 weeks; months Aug..Nov = 4; plus the verified one.
  CHECK(d.keep.size() >= 7 + 5);
  CHECK(d.keep.size() <= 7 + 7 + 4 + 6 + 1);
  auto k = kept(d);
  CHECK(k.count("b1300") == 1);
  CHECK(k.at("b1300") == std::vector<std::string>{"newest verified"});
  CHECK(k.count("b" + std::to_string(1000 + 359)) == 1);
  REQUIRE(k.count("b1023") == 1);  // Aug 31 18:00, the newest of August
  CHECK(k.at("b1023") == std::vector<std::string>{"monthly 2026-08"});
  CHECK(k.count("b1022") == 0);
  // The outcome does not depend on input order.
  std::reverse(items.begin(), items.end());
  CHECK(kept(apply_retention(items, RetentionPolicy{}, now)) == k);
}

TEST_CASE("bucket labels (table)", "[retention]") {
  struct L {
    const char* t;
    const char* day;
    const char* week;
    const char* month;
  };
  for (auto& l : std::vector<L>{{"2026-11-20T10:00:00Z", "2026-11-20", "2026-W47", "2026-11"},
                                {"2026-12-31T23:59:59Z", "2026-12-31", "2026-W53", "2026-12"},
                                {"2027-01-01T00:00:00Z", "2027-01-01", "2026-W53", "2027-01"},
                                {"2024-12-30T00:00:00Z", "2024-12-30", "2025-W01", "2024-12"},
                                {"2024-02-29T12:00:00Z", "2024-02-29", "2024-W09", "2024-02"},
                                {"2021-01-03T00:00:00Z", "2021-01-03", "2020-W53", "2021-01"}}) {
    INFO(l.t);
    CHECK(day_label(at(l.t)) == l.day);
    CHECK(iso_week_label(at(l.t)) == l.week);
    CHECK(month_label(at(l.t)) == l.month);
  }
}
