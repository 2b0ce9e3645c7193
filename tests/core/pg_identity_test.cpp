// PostgreSQL node identity and the start rule for several primaries (postgres_identity.hpp),
// table-driven, no server.
#include <catch2/catch.hpp>

#include "daemon/engines/postgres/postgres_identity.hpp"
#include "daemon/failover/policy.hpp"

using namespace drd;
using namespace drd::pgid;

namespace {

const std::string kOurs = "7298000000000000001";
const std::string kOther = "7312000000000000002";

StartNode primary(std::string name, std::uint32_t tli, std::uint64_t lsn, std::optional<History> h,
                  std::string sysid = kOurs) {
  return StartNode{std::move(name), true, false, std::move(sysid), tli, lsn, std::move(h)};
}
StartNode standby(std::string name, std::uint32_t tli, std::uint64_t lsn, std::string sysid = kOurs) {
  return StartNode{std::move(name), true, true, std::move(sysid), tli, lsn, std::nullopt};
}
StartNode down(std::string name) { return StartNode{std::move(name), false, false, std::nullopt, {}, {}, {}}; }

}  // namespace

TEST_CASE("timeline history files are parsed", "[pg_identity]") {
  struct Row {
    const char* text;
    std::optional<History> expect;
  };
  const Row rows[] = {
      {"", History{}},
      {"1\t0/3000160\tno recovery target specified\n", History{{1, 0x3000160}}},
      {"1\t0/3000160\tno recovery target specified\n\n2\t1/A0\tbefore 2026-12-07\n",
       History{{1, 0x3000160}, {2, 0x1000000A0ull}}},
      {"# comment\n1\t0/10\treason\n", History{{1, 0x10}}},
      {"1 0/10", History{{1, 0x10}}},
      {"x\t0/10\treason\n", std::nullopt},
      {"1\tnot-an-lsn\treason\n", std::nullopt},
      {"1\n", std::nullopt},
      {"0\t0/10\treason\n", std::nullopt},
  };
  for (auto& r : rows) {
    CAPTURE(r.text);
    auto h = parse_timeline_history(r.text);
    REQUIRE(h.has_value() == r.expect.has_value());
    if (h) CHECK(*h == *r.expect);
  }
}

TEST_CASE("a server with another system identifier is not a member", "[pg_identity]") {
  struct Row {
    std::optional<std::string> cluster, node;
    bool member;
  };
  const Row rows[] = {
      {kOurs, kOurs, true},
      {kOurs, kOther, false},
      {std::nullopt, kOther, true},  // nothing known yet: no verdict
      {kOurs, std::nullopt, true},   // the node did not say (did not answer)
      {std::nullopt, std::nullopt, true},
  };
  for (auto& r : rows) {
    auto why = not_member_reason(r.cluster, r.node);
    CAPTURE(r.cluster, r.node);
    CHECK(!why.has_value() == r.member);
    if (why) {
      CHECK_THAT(*why, Catch::Contains("system identifier " + *r.node + " differs from the cluster's " + *r.cluster));
      CHECK_THAT(*why, Catch::Contains("not a member"));
      CHECK_THAT(*why, Catch::Contains("not a candidate"));
    }
  }
}

TEST_CASE("the cluster's system identifier: stored, unanimous, majority, or wait", "[pg_identity]") {
  struct Row {
    const char* what;
    std::optional<std::string> stored;
    std::vector<StartNode> nodes;
    std::optional<std::string> expect;
    bool learned;
    bool hold;
  };
  const std::vector<Row> rows = {
      {"stored wins over a majority", kOurs,
       {standby("a", 1, 1, kOther), standby("b", 1, 1, kOther), standby("c", 1, 1)}, kOurs, false, false},
      {"all agree", std::nullopt, {primary("a", 1, 5, History{}), standby("b", 1, 5), down("c")}, kOurs, true, false},
      {"strict majority", std::nullopt,
       {primary("a", 1, 5, History{}), standby("b", 1, 5), primary("c", 1, 9, History{}, kOther)}, kOurs, true, false},
      {"one against one: wait", std::nullopt, {primary("a", 1, 5, History{}), primary("b", 1, 9, History{}, kOther), down("c")},
       std::nullopt, false, true},
      {"nobody answered: nothing known, no hold", std::nullopt, {down("a"), down("b")}, std::nullopt, false, false},
  };
  for (auto& r : rows) {
    INFO(r.what);
    auto id = cluster_identity(r.stored, r.nodes);
    CHECK(id.system_id == r.expect);
    CHECK(id.learned == r.learned);
    CHECK(id.hold.empty() == !r.hold);
    if (r.hold) {
      CHECK_THAT(id.hold, Catch::Contains(kOurs + " (a)"));
      CHECK_THAT(id.hold, Catch::Contains(kOther + " (b)"));
    }
  }
}

TEST_CASE("several primaries at start: the newer continuing timeline wins, else an operator decides",
          "[pg_identity]") {
  using K = PrimaryVerdict::Kind;
  const History tl1{};
  const History tl2{{1, 0x3000000}};              // left timeline 1 at 0/3000000
  const History tl2_elsewhere{{1, 0x3500000}};    // another promotion to "timeline 2"
  const History tl3{{1, 0x3000000}, {2, 0x5000000}};
  const History tl3_skip2{{1, 0x3000000}};        // timeline 3 forked straight from 1
  struct Row {
    const char* what;
    std::vector<StartNode> nodes;
    K kind;
    std::string primary;
    std::vector<std::string> fence;
    std::vector<std::string> reason_has;
  };
  const std::vector<Row> rows = {
      {"no primary at all", {standby("pg1", 1, 10), standby("pg2", 1, 10), down("pg3")}, K::none, "", {}, {}},
      {"one primary, whatever the config says", {standby("pg1", 2, 10), primary("pg2", 2, 20, tl2), down("pg3")},
       K::one, "pg2", {}, {"only primary"}},
      {"the reported case: old primary back on timeline 1 past the fork, new one on 2",
       {primary("pg1", 1, 0x3400000, tl1), primary("pg2", 2, 0x9000000, tl2), standby("pg3", 2, 0x9000000)},
       K::winner, "pg2", {"pg1"},
       {"pg2 continues timeline 1", "pg1 wrote 4194304 bytes of WAL after that fork point", "fenced, not rewound",
        "pg1 (timeline 1, LSN 0/3400000)", "pg2 (timeline 2, LSN 0/9000000)"}},
      {"newer timeline wins even with a smaller LSN",
       {primary("pg1", 1, 0x9900000, tl1), primary("pg2", 2, 0x3100000, tl2)}, K::winner, "pg2", {"pg1"}, {}},
      {"old primary stopped exactly at the fork: nothing of its own", {primary("pg1", 1, 0x3000000, tl1), primary("pg2", 2, 0x4000000, tl2)},
       K::winner, "pg2", {"pg1"}, {"continues timeline 1"}},
      {"three primaries along one history", {primary("a", 1, 0x3100000, tl1), primary("b", 2, 0x5100000, tl2), primary("c", 3, 0x6000000, tl3)},
       K::winner, "c", {"b", "a"}, {}},
      {"timeline 3 that skipped timeline 2: diverged from the timeline-2 primary",
       {primary("b", 2, 0x5100000, tl2), primary("c", 3, 0x6000000, tl3_skip2)}, K::needs_operator, "", {},
       {"does not pass through timeline 2", "diverged", "waits for an operator", "b (timeline 2", "c (timeline 3"}},
      {"timeline 3 whose earlier fork differs from the other's history: diverged",
       {primary("b", 2, 0x5100000, tl2_elsewhere), primary("c", 3, 0x6000000, tl3)}, K::needs_operator, "", {},
       {"diverged"}},
      {"two promotions to the same timeline from different points: diverged",
       {primary("pg2", 2, 0x6000000, tl2), primary("pg3", 2, 0x7000000, tl2_elsewhere)}, K::needs_operator, "", {},
       {"both on timeline 2 with different histories"}},
      {"same timeline, same history: the further LSN", {primary("pg2", 2, 0x6000000, tl2), primary("pg3", 2, 0x7000000, tl2)},
       K::winner, "pg3", {"pg2"}, {"further than pg2"}},
      {"same timeline, same history, same LSN: cannot tell", {primary("pg2", 2, 0x6000000, tl2), primary("pg3", 2, 0x6000000, tl2)},
       K::needs_operator, "", {}, {"same LSN"}},
      {"history of the newer one unknown: cannot tell", {primary("pg1", 1, 0x3400000, tl1), primary("pg2", 2, 0x9000000, std::nullopt)},
       K::needs_operator, "", {}, {"timeline history of pg2 could not be read"}},
      {"a primary of another cluster is ignored", {primary("pg1", 1, 0x3400000, tl1), primary("pg3", 7, 0x9000000, History{}, kOther), standby("pg2", 1, 0x3400000)},
       K::one, "pg1", {}, {}},
      {"an unreachable node is ignored", {down("pg1"), primary("pg2", 2, 0x9000000, tl2), standby("pg3", 2, 0x9000000)},
       K::one, "pg2", {}, {}},
  };
  for (auto& r : rows) {
    INFO(r.what);
    auto v = settle_primaries(r.nodes, kOurs);
    INFO(v.reason);
    CHECK(v.kind == r.kind);
    CHECK(v.primary == r.primary);
    CHECK(v.fence == r.fence);
    for (auto& s : r.reason_has) CHECK_THAT(v.reason, Catch::Contains(s));
  }
}

TEST_CASE("a node of another cluster is never a failover candidate", "[pg_identity][policy]") {
  auto view = [](std::string name, int prio, std::uint64_t pos, std::optional<std::string> not_member) {
    NodeView n;
    n.name = std::move(name);
    n.priority = prio;
    n.healthy = true;
    n.position = pos;
    n.timeline = not_member ? 9 : 2;  // another cluster's timeline must not outrank ours
    n.not_member = std::move(not_member);
    return n;
  };
  const std::string why = *not_member_reason(kOurs, kOther);
  struct Row {
    const char* what;
    std::vector<NodeView> nodes;
    std::optional<std::string> manual;
    std::optional<std::string> target;
  };
  const std::vector<Row> rows = {
      {"the outsider is more advanced and preferred, a member is chosen",
       {view("pg1", 0, 100, {}), view("pg2", 2, 50, {}), view("pg3", 1, 900, why)}, std::nullopt, "pg2"},
      {"only the outsider is left: no candidate", {view("pg1", 0, 100, {}), view("pg3", 1, 900, why)}, std::nullopt,
       std::nullopt},
      {"an operator asking for it is refused too", {view("pg1", 0, 100, {}), view("pg3", 1, 900, why)},
       std::string("pg3"), std::nullopt},
  };
  for (auto& r : rows) {
    INFO(r.what);
    auto c = choose_failover_target(r.nodes, "pg1", FailoverPolicy{}, false, r.manual);
    INFO(c.reason);
    CHECK(c.target == r.target);
    if (!c.target) CHECK_THAT(c.reason, Catch::Contains("not a member"));
  }
}
