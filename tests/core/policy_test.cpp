#include <catch2/catch.hpp>

#include "daemon/failover/policy.hpp"

using namespace drd;

namespace {

NodeView node(std::string name, int prio, bool healthy, std::uint64_t pos = 0, std::uint64_t lag = 0) {
  NodeView n;
  n.name = std::move(name);
  n.priority = prio;
  n.healthy = healthy;
  n.position = pos;
  n.lag_bytes = lag;
  return n;
}

}  // namespace

TEST_CASE("health goes down only after threshold consecutive failures", "[policy]") {
  struct Row { std::vector<bool> probes; int threshold; Health expect; int failures; };
  const Row rows[] = {
      {{}, 3, Health::unknown, 0},
      {{true}, 3, Health::up, 0},
      {{false}, 3, Health::unknown, 1},
      {{false, false}, 3, Health::unknown, 2},
      {{false, false, false}, 3, Health::down, 3},
      {{true, false, false}, 3, Health::up, 2},
      {{true, false, false, false}, 3, Health::down, 3},
      {{false, false, true}, 3, Health::up, 0},
      {{false, false, false, true}, 3, Health::up, 0},
      {{false}, 1, Health::down, 1},
      {{true, false, true, false, true, false}, 2, Health::up, 1},
  };
  for (auto& r : rows) {
    HealthState s;
    for (bool ok : r.probes) s = next_health(s, ok, r.threshold);
    CAPTURE(r.probes, r.threshold);
    CHECK(s.health == r.expect);
    CHECK(s.consecutive_failures == r.failures);
  }
}

TEST_CASE("health: a failed probe that proves a crash makes the node down at once", "[policy]") {
  struct Row { const char* what; std::vector<std::pair<bool, bool>> probes; int threshold; Health expect; };
  // Each probe: {ok, definitely_down}.
  const Row rows[] = {
      {"first probe proves a crash", {{false, true}}, 3, Health::down},
      {"after good probes", {{true, false}, {true, false}, {false, true}}, 3, Health::down},
      {"after one ordinary failure", {{true, false}, {false, false}, {false, true}}, 5, Health::down},
      {"ordinary failures still wait for the threshold", {{true, false}, {false, false}, {false, false}}, 3, Health::up},
      {"a good probe after the crash brings it up", {{false, true}, {true, false}}, 3, Health::up},
      {"a good probe ignores the flag", {{true, true}}, 3, Health::up},
  };
  for (auto& r : rows) {
    INFO(r.what);
    HealthState s;
    for (auto [ok, definite] : r.probes) s = next_health(s, ok, r.threshold, definite);
    CHECK(s.health == r.expect);
  }
}

TEST_CASE("failover target: healthy, within max_lag, priority, position, name", "[policy]") {
  FailoverPolicy p;
  p.max_lag_bytes = 1000;
  struct Row {
    const char* what;
    std::vector<NodeView> nodes;
    std::optional<std::string> expect;
  };
  std::vector<Row> rows = {
      {"equal positions: lowest priority number wins",
       {node("p", 0, false), node("s1", 2, true, 10), node("s2", 1, true, 10)}, "s2"},
      {"more advanced beats better priority (priority never costs data)",
       {node("p", 0, false), node("s1", 2, true, 10), node("s2", 1, true, 5)}, "s1"},
      {"one byte more is more", {node("p", 0, false), node("s1", 1, true, 1000), node("s2", 9, true, 1001)}, "s2"},
      {"unknown position ranks after any known one",
       {node("p", 0, false), node("s1", 1, true), node("s2", 2, true, 1)}, "s2"},
      {"unhealthy skipped", {node("p", 0, false), node("s1", 1, false, 10), node("s2", 2, true, 5)}, "s2"},
      {"too far behind skipped even when most advanced by position",
       {node("p", 0, false), node("s1", 1, true, 10, 5000), node("s2", 2, true, 5, 10)}, "s2"},
      {"equal priority: most advanced position",
       {node("p", 0, false), node("s1", 1, true, 10), node("s2", 1, true, 50)}, "s2"},
      {"equal priority and position: name", {node("p", 0, false), node("sb", 1, true, 7), node("sa", 1, true, 7)}, "sa"},
      {"three standbys: most advanced, then priority among the tied",
       {node("p", 0, false), node("s1", 1, true, 90), node("s2", 3, true, 100), node("s3", 2, true, 100)}, "s3"},
      {"nobody healthy", {node("p", 0, false), node("s1", 1, false), node("s2", 2, false)}, std::nullopt},
      {"everyone too far behind", {node("p", 0, false), node("s1", 1, true, 0, 2000)}, std::nullopt},
      {"failed primary itself never chosen even if healthy-looking", {node("p", 0, true), node("s1", 1, false)}, std::nullopt},
      {"lag exactly at the limit is allowed", {node("p", 0, false), node("s1", 1, true, 0, 1000)}, "s1"},
  };
  for (auto& r : rows) {
    INFO(r.what);
    auto c = choose_failover_target(r.nodes, "p", p);
    CHECK(c.target == r.expect);
    CHECK_FALSE(c.reason.empty());
  }
}

TEST_CASE("failover target: the reason names standbys passed over and why", "[policy]") {
  FailoverPolicy p;
  p.max_lag_bytes = 1000;
  auto c = choose_failover_target({node("p", 0, false), node("s1", 1, true, 10, 5000), node("s2", 2, true, 5, 10),
                                   node("s3", 3, false)},
                                  "p", p);
  REQUIRE(c.target == std::optional<std::string>("s2"));
  CHECK(c.reason.find("s2 chosen") == 0);
  CHECK(c.reason.find("skipped: s1 lag 5000 bytes exceeds max_lag 1000, s3 not healthy") != std::string::npos);
  // Nothing skipped: nothing said; the failed primary is never listed.
  auto plain = choose_failover_target({node("p", 0, false), node("s1", 1, true)}, "p", p);
  CHECK(plain.reason.find("skipped") == std::string::npos);
  // A manual target's reason stays the operator's request.
  auto manual = choose_failover_target({node("p", 0, false), node("s1", 1, true, 10, 5000), node("s2", 2, true)}, "p",
                                       p, false, std::string("s2"));
  CHECK(manual.reason == "s2 requested by the operator");
}

TEST_CASE("failover target: fenced, excluded, timeline and synchronous rules", "[policy]") {
  FailoverPolicy p;
  auto fenced = node("s1", 1, true);
  fenced.fenced = true;
  auto excluded = node("s2", 1, true);
  excluded.no_failover = true;
  auto c = choose_failover_target({node("p", 0, false), fenced, excluded, node("s3", 5, true)}, "p", p);
  CHECK(c.target == "s3");

  auto old_tl = node("s1", 1, true, 100);
  old_tl.timeline = 1;
  auto new_tl = node("s2", 2, true, 50);
  new_tl.timeline = 2;
  c = choose_failover_target({node("p", 0, false), old_tl, new_tl}, "p", p);
  CHECK(c.target == "s2");

  FailoverPolicy sync = p;
  sync.synchronous = true;
  auto async1 = node("s1", 1, true, 100);
  auto sync2 = node("s2", 2, true, 90);
  sync2.sync_standby = true;
  c = choose_failover_target({node("p", 0, false), async1, sync2}, "p", sync);
  CHECK(c.target == "s2");
  c = choose_failover_target({node("p", 0, false), async1}, "p", sync);
  CHECK_FALSE(c.target);
  CHECK_THAT(c.reason, Catch::Contains("synchronous"));
  // Forced, asynchronous standbys become eligible, but the synchronous one
  // (every acknowledged commit) still ranks first, even when less advanced.
  c = choose_failover_target({node("p", 0, false), async1, sync2}, "p", sync, true);
  CHECK(c.target == "s2");
  CHECK_THAT(c.reason, Catch::Contains("synchronous standby"));
  // Asynchronous mode: the sync flag alone does not outrank position.
  c = choose_failover_target({node("p", 0, false), async1, sync2}, "p", p);
  CHECK(c.target == "s1");
  CHECK_THAT(c.reason, Catch::Contains("most advanced"));
}

TEST_CASE("manual target: eligibility and --force", "[policy]") {
  FailoverPolicy p;
  p.max_lag_bytes = 100;
  std::vector<NodeView> nodes = {node("p", 0, true), node("s1", 1, true, 0, 500), node("s2", 2, false)};
  auto c = choose_failover_target(nodes, "p", p, false, std::string("s1"));
  CHECK_FALSE(c.target);
  CHECK_THAT(c.reason, Catch::Contains("max_lag"));
  c = choose_failover_target(nodes, "p", p, true, std::string("s1"));
  CHECK(c.target == "s1");
  c = choose_failover_target(nodes, "p", p, true, std::string("s2"));
  CHECK_FALSE(c.target);
  CHECK_THAT(c.reason, Catch::Contains("not healthy"));
  c = choose_failover_target(nodes, "p", p, false, std::string("nope"));
  CHECK_FALSE(c.target);
  CHECK_THAT(c.reason, Catch::Contains("no node named"));
  auto excluded = node("s3", 3, true);
  excluded.no_failover = true;
  nodes.push_back(excluded);
  c = choose_failover_target(nodes, "p", p, false, std::string("s3"));
  CHECK(c.target == "s3");  // no_failover only stops automatic promotion
}

TEST_CASE("startup primary: keep a healthy recorded one, else the best healthy node", "[policy]") {
  struct Row { const char* what; std::vector<NodeView> nodes; std::string persisted; std::optional<std::string> expect; bool changed; };
  auto typed = node("b", 5, true);
  typed.type_primary = true;
  std::vector<Row> rows = {
      {"first start picks lowest priority", {node("a", 1, true), node("b", 0, true)}, "", "b", true},
      {"recorded healthy primary kept even with worse priority", {node("a", 0, true), node("b", 1, true)}, "b", "b", false},
      {"recorded primary unhealthy: best healthy", {node("a", 0, true), node("b", 1, false)}, "b", "a", true},
      {"nothing healthy keeps the record", {node("a", 0, false), node("b", 1, false)}, "b", "b", false},
      {"nothing healthy and no record", {node("a", 0, false)}, "", std::nullopt, false},
      {"type hint breaks a priority tie", {node("a", 5, true), typed}, "", "b", true},
      {"first start: preference before position", {node("a", 0, true, 1), node("b", 1, true, 9)}, "", "a", true},
      {"recorded primary unhealthy (a failover): most advanced first",
       {node("p", 0, false), node("a", 1, true, 5), node("b", 2, true, 9)}, "p", "b", true},
      {"recorded primary unhealthy, tied positions: priority",
       {node("p", 0, false), node("a", 2, true, 9), node("b", 1, true, 9)}, "p", "b", true},
  };
  for (auto& r : rows) {
    INFO(r.what);
    auto c = choose_startup_primary(r.nodes, r.persisted);
    CHECK(c.primary == r.expect);
    CHECK(c.changed == r.changed);
  }
}

TEST_CASE("decide: failover only when the primary is down and auto-failover is on", "[policy]") {
  ClusterView v;
  v.primary = "p";
  v.nodes = {node("p", 0, false), node("s1", 1, true)};
  v.primary_health = Health::down;
  v.primary_failures = 3;

  auto d = decide(v);
  CHECK(d.kind == Decision::Kind::failover);
  CHECK(d.target == "s1");
  CHECK(d.state == FailoverState::failing_over);

  v.auto_failover = false;
  d = decide(v);
  CHECK(d.kind == Decision::Kind::none);
  CHECK(d.state == FailoverState::disabled);

  v.auto_failover = true;
  v.nodes[1].healthy = false;
  d = decide(v);
  CHECK(d.kind == Decision::Kind::no_candidate);
  CHECK(d.state == FailoverState::no_candidate);
  CHECK_THAT(d.reason, Catch::Contains("s1 not healthy"));

  v.failover_running = true;
  CHECK(decide(v).kind == Decision::Kind::none);

  v.failover_running = false;
  v.primary_health = Health::up;
  v.primary_failures = 1;
  CHECK(decide(v).state == FailoverState::failing);
  v.primary_failures = 0;
  CHECK(decide(v).state == FailoverState::degraded);
  v.nodes[1].healthy = true;
  CHECK(decide(v).state == FailoverState::normal);
}

TEST_CASE("config problem on the primary: no failover, and it is kept at startup", "[policy]") {
  auto refused = [](std::string name, int prio, bool type_primary = false) {
    NodeView n;
    n.name = std::move(name);
    n.priority = prio;
    n.healthy = false;
    n.type_primary = type_primary;
    n.config_problem = "the server's certificate did not verify (sslrootcert / sslmode)";
    return n;
  };
  ClusterView v;
  v.primary = "p";
  v.nodes = {refused("p", 0), node("s1", 1, true)};
  v.primary_health = Health::down;
  v.primary_failures = 3;
  auto d = decide(v);
  CHECK(d.kind == Decision::Kind::none);
  CHECK(d.state == FailoverState::degraded);
  CHECK_THAT(d.reason, Catch::Contains("configuration problem") && Catch::Contains("certificate did not verify"));
  // A standby with a configuration problem changes nothing about a real failure.
  v.nodes = {node("p", 0, false), refused("s1", 1), node("s2", 2, true)};
  d = decide(v);
  CHECK(d.kind == Decision::Kind::failover);
  CHECK(d.target == "s2");

  struct Row { const char* what; std::vector<NodeView> nodes; std::string persisted; std::optional<std::string> expect; bool changed; };
  std::vector<Row> rows = {
      {"recorded primary refused: kept", {refused("p", 0), node("s", 1, true)}, "p", "p", false},
      {"first start, configured primary refused: kept", {refused("p", 0, true), node("s", 1, true)}, "", "p", true},
      {"a refused standby is not chosen", {node("p", 0, false), refused("s", 1), node("t", 2, true)}, "p", "t", true},
  };
  for (auto& r : rows) {
    INFO(r.what);
    auto c = choose_startup_primary(r.nodes, r.persisted);
    CHECK(c.primary == r.expect);
    CHECK(c.changed == r.changed);
  }
}

TEST_CASE("decide: a primary paused for a restore is not failed over, whatever else holds", "[policy]") {
  struct Row {
    Health health;
    bool auto_failover;
    std::string paused;
    Decision::Kind kind;
    FailoverState state;
  };
  const Row rows[] = {
      {Health::down, true, "", Decision::Kind::failover, FailoverState::failing_over},
      {Health::down, true, "backup b1 is being restored onto it", Decision::Kind::none, FailoverState::disabled},
      {Health::down, false, "backup b1 is being restored onto it", Decision::Kind::none, FailoverState::disabled},
      {Health::up, true, "backup b1 is being restored onto it", Decision::Kind::none, FailoverState::normal},
      {Health::unknown, true, "backup b1 is being restored onto it", Decision::Kind::none, FailoverState::unknown},
  };
  for (const auto& r : rows) {
    ClusterView v;
    v.primary = "p";
    v.nodes = {node("p", 0, r.health == Health::up), node("s1", 1, true)};
    v.primary_health = r.health;
    v.primary_failures = r.health == Health::down ? 3 : 0;
    v.auto_failover = r.auto_failover;
    v.primary_paused = r.paused;
    INFO(r.paused << " auto=" << r.auto_failover);
    auto d = decide(v);
    CHECK(d.kind == r.kind);
    CHECK(d.state == r.state);
    if (r.health == Health::down && !r.paused.empty()) {
      CHECK_THAT(d.reason, Catch::Contains(r.paused));
      CHECK_THAT(d.reason, Catch::Contains("waits"));
    }
  }
}

TEST_CASE("decide: every state but normal names its reason", "[policy][reason]") {
  auto fenced = [](std::string name, bool healthy) {
    NodeView n = node(std::move(name), 0, healthy);
    n.fenced = true;
    return n;
  };
  struct Row {
    const char* what;
    std::vector<NodeView> nodes;
    Health health;
    int failures;
    bool monitoring, auto_failover, running;
    FailoverState state;
    std::vector<std::string> says;
    bool blocked;
  };
  const std::vector<Row> rows = {
      {"all healthy", {node("p", 0, true), node("s1", 1, true)}, Health::up, 0, true, true, false,
       FailoverState::normal, {}, false},
      {"after a failover: the old primary is fenced", {fenced("old", true), node("p", 1, true), node("s2", 2, true)},
       Health::up, 0, true, true, false, FailoverState::degraded,
       {"old is fenced", "drctl rejoin old"}, false},
      {"old primary fenced and down", {fenced("old", false), node("p", 1, true)}, Health::up, 0, true, true, false,
       FailoverState::degraded, {"old is down and fenced"}, false},
      {"a standby is down", {node("p", 0, true), node("s1", 1, true), node("s2", 2, false)}, Health::up, 0, true,
       true, false, FailoverState::degraded, {"s2 is down"}, false},
      {"two standbys down", {node("p", 0, true), node("s1", 1, false), node("s2", 2, false)}, Health::up, 0, true,
       true, false, FailoverState::degraded, {"s1 is down; s2 is down"}, false},
      {"primary failing", {node("p", 0, true), node("s1", 1, true)}, Health::up, 2, true, true, false,
       FailoverState::failing, {"primary p failed its last 2 probes"}, false},
      {"primary not probed yet", {node("p", 0, false), node("s1", 1, true)}, Health::unknown, 0, true, true, false,
       FailoverState::unknown, {"p has not been probed yet"}, false},
      {"monitoring stopped", {node("p", 0, true), node("s1", 1, true)}, Health::up, 0, false, true, false,
       FailoverState::unknown, {"monitoring is stopped"}, false},
      {"failover running", {node("p", 0, false), node("s1", 1, true)}, Health::down, 3, true, true, true,
       FailoverState::failing_over, {"a failover away from p is running"}, false},
      {"auto-failover disabled", {node("p", 0, false), node("s1", 1, true)}, Health::down, 3, true, false, false,
       FailoverState::disabled, {"p is down and automatic failover is disabled"}, true},
      {"no candidate", {node("p", 0, false), node("s1", 1, false)}, Health::down, 3, true, true, false,
       FailoverState::no_candidate, {"s1 not healthy"}, false},
      {"failover needed", {node("p", 0, false), node("s1", 1, true)}, Health::down, 3, true, true, false,
       FailoverState::failing_over, {"primary p down after 3 failed probes"}, false},
  };
  for (const auto& r : rows) {
    INFO(r.what);
    ClusterView v;
    v.primary = "p";
    v.nodes = r.nodes;
    v.primary_health = r.health;
    v.primary_failures = r.failures;
    v.monitoring = r.monitoring;
    v.auto_failover = r.auto_failover;
    v.failover_running = r.running;
    auto d = decide(v);
    CHECK(d.state == r.state);
    CHECK(d.blocked == r.blocked);
    if (r.state == FailoverState::normal) CHECK(d.reason.empty());
    else CHECK_FALSE(d.reason.empty());
    for (auto& s : r.says) CHECK_THAT(d.reason, Catch::Contains(s));
  }
}

TEST_CASE("health from what the server answered: saturated is up, a restart waits within the grace", "[policy][restart]") {
  using S = ServerState;
  constexpr std::int64_t grace = 10'000;
  struct Step {
    S state;
    std::int64_t at_ms;
    Health want;
    int failures;
  };
  struct Row {
    const char* what;
    std::vector<Step> steps;
  };
  const std::vector<Row> rows = {
      {"saturated answers are good probes", {{S::answering, 0, Health::up, 0}, {S::saturated, 100, Health::up, 0},
                                            {S::saturated, 200, Health::up, 0}, {S::saturated, 300, Health::up, 0}}},
      {"no answer: down after the threshold (3)",
       {{S::answering, 0, Health::up, 0}, {S::no_answer, 100, Health::up, 1}, {S::no_answer, 200, Health::up, 2},
        {S::no_answer, 300, Health::down, 3}}},
      {"crashed: down at once", {{S::answering, 0, Health::up, 0}, {S::crashed, 100, Health::down, 1}}},
      {"restart: shutting down, nothing listens, starting up, back: never down",
       {{S::answering, 0, Health::up, 0}, {S::shutting_down, 100, Health::restarting, 0},
        {S::no_answer, 200, Health::restarting, 0}, {S::no_answer, 300, Health::restarting, 0},
        {S::no_answer, 400, Health::restarting, 0}, {S::starting_up, 500, Health::restarting, 0},
        {S::answering, 600, Health::up, 0}}},
      {"restart that does not end within the grace: down at the first probe past it",
       {{S::answering, 0, Health::up, 0}, {S::shutting_down, 1000, Health::restarting, 0},
        {S::no_answer, 6000, Health::restarting, 0}, {S::no_answer, 11'000, Health::restarting, 0},
        {S::no_answer, 11'001, Health::down, 1}}},
      {"still answering 'starting up' past the grace: down", {{S::starting_up, 0, Health::restarting, 0},
                                                               {S::starting_up, 10'001, Health::down, 1}}},
      {"a crash during a restart is a crash", {{S::shutting_down, 0, Health::restarting, 0}, {S::crashed, 50, Health::down, 1}}},
      {"refusing drd ends a restart and counts as a failure",
       {{S::starting_up, 0, Health::restarting, 0}, {S::refuses_drd, 50, Health::up, 1}}},
      {"a second restart starts its own grace",
       {{S::shutting_down, 0, Health::restarting, 0}, {S::answering, 100, Health::up, 0},
        {S::shutting_down, 20'000, Health::restarting, 0}, {S::no_answer, 29'000, Health::restarting, 0}}},
  };
  for (auto& r : rows) {
    INFO(r.what);
    HealthState h;
    h.health = Health::up;
    for (std::size_t i = 0; i < r.steps.size(); ++i) {
      INFO("step " << i);
      h = next_health(h, r.steps[i].state, 3, r.steps[i].at_ms, grace);
      CHECK(health_name(h.health) == std::string(health_name(r.steps[i].want)));
      CHECK(h.consecutive_failures == r.steps[i].failures);
    }
  }
  // Grace 0: a restart is judged by failure_threshold alone, as before.
  HealthState h;
  h.health = Health::up;
  h = next_health(h, S::shutting_down, 1, 0, 0);
  CHECK(h.health == Health::down);
}

TEST_CASE("decide: a restarting primary is waited for, a paused standby is no candidate", "[policy][restart]") {
  ClusterView v;
  v.primary = "p";
  v.primary_health = Health::restarting;
  v.nodes = {node("p", 1, false, 100), node("s1", 2, true, 100)};
  v.nodes[0].restarting = true;
  auto d = decide(v);
  CHECK(d.kind == Decision::Kind::none);
  CHECK(d.state == FailoverState::degraded);
  CHECK(d.reason.find("restarting") != std::string::npos);

  // Down: a paused standby is passed over for another, and is no candidate alone.
  v.primary_health = Health::down;
  v.primary_failures = 3;
  v.nodes = {node("p", 1, false, 100), node("s1", 1, true, 200), node("s2", 2, true, 100)};
  v.nodes[1].replay_paused = true;
  d = decide(v);
  REQUIRE(d.kind == Decision::Kind::failover);
  CHECK(d.target == "s2");
  v.nodes.pop_back();
  d = decide(v);
  CHECK(d.kind == Decision::Kind::no_candidate);
  CHECK(d.reason.find("paused") != std::string::npos);
  // A manual failover to it is the operator's call.
  FailoverPolicy pol;
  auto c = choose_failover_target(v.nodes, "p", pol, false, std::string("s1"));
  CHECK(c.target == std::optional<std::string>("s1"));
}
