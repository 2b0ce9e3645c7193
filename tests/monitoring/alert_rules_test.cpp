// The alert state machine, table-driven with a manual time: each row is one
// evaluation (seconds since start, the metric value or "no data") and the
// notification + phase expected after it.
#include <catch2/catch.hpp>

#include <optional>

#include "daemon/observability/alert_rules.hpp"

using namespace drd;
using namespace drd::monitoring;
using namespace std::chrono_literals;

namespace {

const SysTime T0 = SysTime(std::chrono::seconds(1'700'000'000));

AlertRuleConfig rule(std::string name, std::string metric, std::string op, double threshold, Millis for_d,
                     Millis repeat = Millis(3'600'000)) {
  AlertRuleConfig r;
  r.name = std::move(name);
  r.metric = std::move(metric);
  r.op = std::move(op);
  r.threshold = threshold;
  r.for_duration = for_d;
  r.repeat_interval = repeat;
  r.severity = "warning";
  r.channels = {"ops"};
  return r;
}

struct Step {
  int at_s;
  std::optional<double> value;  // nullopt = no data this round
  const char* expect_notice;    // "" none, "firing", "repeat", "resolved"
  AlertPhase phase;
};

const char* notice_name(const AlertNotification& n) {
  switch (n.kind) {
    case NotificationKind::firing: return "firing";
    case NotificationKind::repeat: return "repeat";
    case NotificationKind::resolved: return "resolved";
  }
  return "?";
}

void run_table(const AlertRuleConfig& r, const std::string& node, const std::vector<Step>& steps) {
  AlertStates states;
  for (const auto& s : steps) {
    INFO("t=" << s.at_s << "s value=" << (s.value ? format_value(*s.value) : std::string("none")));
    MetricsSnapshot snap;
    snap.set("other", r.metric, 0);
    if (s.value) snap.set(node, r.metric, *s.value);
    auto ev = evaluate_alerts({r}, states, snap, T0 + std::chrono::seconds(s.at_s));
    states = ev.states;
    std::vector<AlertNotification> mine;
    for (auto& n : ev.notifications)
      if (n.node == node) mine.push_back(n);
    if (std::string(s.expect_notice).empty()) {
      CHECK(mine.empty());
    } else {
      REQUIRE(mine.size() == 1);
      CHECK(std::string(notice_name(mine[0])) == s.expect_notice);
      CHECK(mine[0].rule == r.name);
      CHECK(mine[0].channels == r.channels);
    }
    auto it = states.find(AlertKey{r.name, node});
    AlertPhase got = it == states.end() ? AlertPhase::inactive : it->second.phase;
    CHECK(alert_phase_name(got) == std::string(alert_phase_name(s.phase)));
  }
}

}  // namespace

TEST_CASE("pending -> firing after for:, repeat, resolved exactly once", "[alerts]") {
  auto r = rule("slow", "response_time_ms", ">", 200, 30s, 10min);
  run_table(r, "primary",
            {
                {0, 100, "", AlertPhase::inactive},
                {1, 300, "", AlertPhase::pending},
                {20, 300, "", AlertPhase::pending},
                {30, 250, "", AlertPhase::pending},     // 29 s since it started
                {31, 250, "firing", AlertPhase::firing},
                {32, 400, "", AlertPhase::firing},      // no duplicate
                {300, 400, "", AlertPhase::firing},
                {631, 400, "repeat", AlertPhase::firing},
                {632, 400, "", AlertPhase::firing},
                {1230, 400, "", AlertPhase::firing},
                {1231, 400, "repeat", AlertPhase::firing},
                {1240, 150, "resolved", AlertPhase::inactive},
                {1241, 150, "", AlertPhase::inactive},  // resolved only once
            });
}

TEST_CASE("a condition that clears while pending notifies nothing and restarts its for:", "[alerts]") {
  auto r = rule("slow", "response_time_ms", ">", 200, 30s);
  run_table(r, "primary",
            {
                {0, 300, "", AlertPhase::pending},
                {29, 300, "", AlertPhase::pending},
                {30, 100, "", AlertPhase::inactive},
                {31, 300, "", AlertPhase::pending},
                {60, 300, "", AlertPhase::pending},     // 29 s since the restart
                {61, 300, "firing", AlertPhase::firing},
            });
}

TEST_CASE("for: 0 fires on the first true evaluation", "[alerts]") {
  auto r = rule("down", "up", "==", 0, 0s);
  run_table(r, "secondary1",
            {
                {0, 1, "", AlertPhase::inactive},
                {1, 0, "firing", AlertPhase::firing},
                {2, 0, "", AlertPhase::firing},
                {3, 1, "resolved", AlertPhase::inactive},
                {4, 0, "firing", AlertPhase::firing},   // a new episode notifies again
            });
}

TEST_CASE("no data keeps the state: neither resolves nor advances", "[alerts]") {
  auto r = rule("lag", "lag_bytes", ">=", 1000, 10s);
  run_table(r, "secondary1",
            {
                {0, 5000, "", AlertPhase::pending},
                {5, std::nullopt, "", AlertPhase::pending},
                {10, 5000, "firing", AlertPhase::firing},
                {20, std::nullopt, "", AlertPhase::firing},
                {30, std::nullopt, "", AlertPhase::firing},
                {40, 10, "resolved", AlertPhase::inactive},
            });
}

TEST_CASE("repeat_interval 0 never repeats", "[alerts]") {
  auto r = rule("lag", "lag_ms", ">", 1, 0s, 0ms);
  run_table(r, "s", {{0, 5, "firing", AlertPhase::firing}, {100000, 5, "", AlertPhase::firing}});
}

TEST_CASE("every comparison operator", "[alerts]") {
  struct Row { const char* op; double v, t; bool expect; };
  for (auto row : {Row{">", 2, 1, true}, Row{">", 1, 1, false}, Row{">=", 1, 1, true}, Row{">=", 0, 1, false},
                   Row{"<", 0, 1, true}, Row{"<", 1, 1, false}, Row{"<=", 1, 1, true}, Row{"<=", 2, 1, false},
                   Row{"==", 1, 1, true}, Row{"==", 2, 1, false}, Row{"!=", 2, 1, true}, Row{"!=", 1, 1, false},
                   Row{"~", 1, 1, false}}) {
    INFO(row.v << " " << row.op << " " << row.t);
    CHECK(compare_op(row.op, row.v, row.t) == row.expect);
  }
}

TEST_CASE("the nodes filter and cluster-wide metrics", "[alerts]") {
  MetricsSnapshot snap;
  for (const char* n : {"primary", "secondary1", "secondary2"}) snap.set(n, "disk_free_pct", 5);
  snap.set("", "disk_free_pct", 5);  // the backup folder
  snap.set("", "failover", 1);
  snap.set("", "memory_rss_bytes", 1e9);

  struct Row {
    AlertRuleConfig r;
    std::vector<std::string> fired;
  };
  auto with_nodes = [](AlertRuleConfig r, std::vector<std::string> nodes) {
    r.nodes = std::move(nodes);
    return r;
  };
  std::vector<Row> rows = {
      {rule("disk", "disk_free_pct", "<", 10, 0s), {"", "primary", "secondary1", "secondary2"}},
      {with_nodes(rule("disk", "disk_free_pct", "<", 10, 0s), {"secondary2"}), {"secondary2"}},
      {with_nodes(rule("fo", "failover", ">", 0, 0s), {"primary"}), {}},  // an event rule: failover_notifications()
      {rule("mem", "memory_rss_bytes", ">", 5e8, 0s), {""}},
      {rule("mem", "memory_rss_bytes", ">", 5e9, 0s), {}},
  };
  for (const auto& row : rows) {
    INFO(row.r.name << " nodes=" << row.r.nodes.size());
    auto ev = evaluate_alerts({row.r}, {}, snap, T0);
    std::vector<std::string> got;
    for (const auto& n : ev.notifications) got.push_back(n.node);
    CHECK(got == row.fired);
  }
}

TEST_CASE("backup_age is an alias of backup_age_s", "[alerts]") {
  MetricsSnapshot snap;
  snap.set("", "backup_age_s", 90000);
  CHECK(snap.get("", "backup_age") == 90000);
  auto ev = evaluate_alerts({rule("old", "backup_age", ">", 86400, 0s)}, {}, snap, T0);
  REQUIRE(ev.notifications.size() == 1);
  CHECK(ev.notifications[0].metric == "backup_age_s");
  CHECK(ev.notifications[0].message == "backup_age_s on cluster is 90000 (> 86400)");
}

TEST_CASE("notifications carry value, threshold, since and a readable message", "[alerts]") {
  auto r = rule("slow", "response_time_ms", ">", 200, 30s);
  r.severity = "critical";
  MetricsSnapshot snap;
  snap.set("primary", "response_time_ms", 350.5);
  auto ev = evaluate_alerts({r}, {}, snap, T0);
  ev = evaluate_alerts({r}, ev.states, snap, T0 + 30s);
  REQUIRE(ev.notifications.size() == 1);
  const auto& n = ev.notifications[0];
  CHECK(n.severity == "critical");
  CHECK(n.value == 350.5);
  CHECK(n.threshold == 200);
  CHECK(n.since == T0 + 30s);
  CHECK(n.time == T0 + 30s);
  CHECK(n.message == "response_time_ms on primary is 350.50 (> 200 for 30s)");
  snap.set("primary", "response_time_ms", 20);
  ev = evaluate_alerts({r}, ev.states, snap, T0 + 40s);
  REQUIRE(ev.notifications.size() == 1);
  CHECK(ev.notifications[0].kind == NotificationKind::resolved);
  CHECK(ev.notifications[0].since == T0 + 30s);
  CHECK(ev.notifications[0].message == "response_time_ms on primary is 20 (resolved; rule was > 200)");
}

TEST_CASE("states of removed rules are dropped silently, a wall-clock step back does not fire", "[alerts]") {
  auto r = rule("slow", "response_time_ms", ">", 200, 30s);
  MetricsSnapshot snap;
  snap.set("primary", "response_time_ms", 500);
  auto ev = evaluate_alerts({r}, {}, snap, T0);
  ev = evaluate_alerts({r}, ev.states, snap, T0 + 40s);
  REQUIRE(ev.notifications.size() == 1);
  auto gone = evaluate_alerts({}, ev.states, snap, T0 + 50s);
  CHECK(gone.states.empty());
  CHECK(gone.notifications.empty());

  auto p = evaluate_alerts({r}, {}, snap, T0 + 100s);
  p = evaluate_alerts({r}, p.states, snap, T0);  // clock stepped back 100 s
  CHECK(p.notifications.empty());
  CHECK(p.states.begin()->second.phase == AlertPhase::pending);
}

TEST_CASE("two rules on the same node are independent", "[alerts]") {
  auto warn = rule("slow", "response_time_ms", ">", 200, 0s);
  auto crit = rule("very_slow", "response_time_ms", ">", 1000, 0s);
  MetricsSnapshot snap;
  snap.set("primary", "response_time_ms", 500);
  auto ev = evaluate_alerts({warn, crit}, {}, snap, T0);
  REQUIRE(ev.notifications.size() == 1);
  CHECK(ev.notifications[0].rule == "slow");
  snap.set("primary", "response_time_ms", 1500);
  ev = evaluate_alerts({warn, crit}, ev.states, snap, T0 + 1s);
  REQUIRE(ev.notifications.size() == 1);
  CHECK(ev.notifications[0].rule == "very_slow");
  CHECK(ev.states.size() == 2);
}

TEST_CASE("synchronous mode adds a built-in sync_degraded alert unless the operator has one", "[alerts]") {
  Config cfg;
  REQUIRE(effective_alerts(cfg).rules.size() == 2);  // asynchronous: only the always-on copy_at_risk, server_problem
  CHECK(effective_alerts(cfg).rules[0].name == "copy_at_risk");
  CHECK(effective_alerts(cfg).rules[1].name == "server_problem");
  cfg.failover.synchronous = true;
  auto a = effective_alerts(cfg);
  REQUIRE(a.rules.size() == 3);
  a.rules.erase(a.rules.begin(), a.rules.begin() + 2);  // copy_at_risk, server_problem
  CHECK(a.rules[0].name == "sync_degraded");
  CHECK(a.rules[0].metric == "sync_degraded");
  CHECK(a.rules[0].severity == "critical");
  CHECK(a.rules[0].channels.empty());  // the log
  CHECK(is_cluster_metric("sync_degraded"));

  // It fires while the cluster-wide value is 1 and resolves at 0.
  MetricsSnapshot on, off;
  on.set("", "sync_degraded", 1);
  off.set("", "sync_degraded", 0);
  auto fired = evaluate_alerts(a.rules, {}, on, T0);
  REQUIRE(fired.notifications.size() == 1);
  CHECK(fired.notifications[0].kind == NotificationKind::firing);
  CHECK(fired.notifications[0].node.empty());
  auto resolved = evaluate_alerts(a.rules, fired.states, off, T0 + 5s);
  REQUIRE(resolved.notifications.size() == 1);
  CHECK(resolved.notifications[0].kind == NotificationKind::resolved);

  // The operator's own rule on the metric (with its channels) replaces the built-in one.
  AlertRuleConfig mine = rule("sync_lost", "sync_degraded", ">", 0, 0ms);
  cfg.alerts.rules.push_back(mine);
  auto b = effective_alerts(cfg);
  REQUIRE(b.rules.size() == 3);  // the operator's, then copy_at_risk, server_problem
  CHECK(b.rules[0].name == "sync_lost");
  CHECK(b.rules[1].name == "copy_at_risk");
  // A rule that only takes the name is left alone too (no duplicate names).
  cfg.alerts.rules = {rule("sync_degraded", "up", "==", 0, 0ms)};
  auto c = effective_alerts(cfg);
  REQUIRE(c.rules.size() == 3);
  CHECK(c.rules[0].metric == "up");
  CHECK(c.rules[1].name == "copy_at_risk");
}

TEST_CASE("a copy at risk (not overwritten, cannot apply, primary lost) alerts by default, per node", "[alerts]") {
  Config cfg;
  auto a = effective_alerts(cfg);
  REQUIRE(a.rules.size() == 2);
  a.rules.pop_back();  // server_problem
  CHECK(a.rules[0].metric == "copy_problem");
  CHECK(a.rules[0].severity == "critical");
  CHECK_FALSE(is_cluster_metric("copy_problem"));
  MetricsSnapshot on, off;
  on.set("node1", "copy_problem", 1);
  on.set("node2", "copy_problem", 0);
  off.set("node1", "copy_problem", 0);
  off.set("node2", "copy_problem", 0);
  auto fired = evaluate_alerts(a.rules, {}, on, T0);
  REQUIRE(fired.notifications.size() == 1);
  CHECK(fired.notifications[0].node == "node1");
  auto resolved = evaluate_alerts(a.rules, fired.states, off, T0 + 5s);
  REQUIRE(resolved.notifications.size() == 1);
  CHECK(resolved.notifications[0].kind == NotificationKind::resolved);
  // The operator's own rule on the metric replaces it.
  cfg.alerts.rules = {rule("mine", "copy_problem", ">", 0, 0ms)};
  REQUIRE(effective_alerts(cfg).rules.size() == 2);  // and server_problem
  CHECK(effective_alerts(cfg).rules[0].name == "mine");
}

TEST_CASE("failover rules notify once per failover, on the rule's channels, whatever the last minute held",
          "[alerts][failover]") {
  auto happened = rule("failover_happened", "failover", ">", 0, 0s);
  happened.channels = {"hook", "mail"};
  auto flapping = rule("flapping", "failover", ">=", 2, 0s);
  auto other = rule("slow", "response_time_ms", ">", 10, 0s);
  const std::vector<AlertRuleConfig> rules = {happened, flapping, other};
  struct Row {
    const char* what;
    FailoverEvent e;
    std::vector<std::string> fired;
  };
  const std::vector<Row> rows = {
      {"an automatic failover", {"primary", "secondary1", "auto", 2, 1}, {"failover_happened"}},
      {"a manual failover", {"secondary1", "secondary2", "manual", 3, 1}, {"failover_happened"}},
      {"a switchover", {"primary", "secondary1", "switchover", 4, 1}, {"failover_happened"}},
      {"a second failover within the minute", {"secondary1", "primary", "auto", 5, 2}, {"failover_happened", "flapping"}},
      {"a third", {"primary", "secondary2", "manual", 6, 3}, {"failover_happened", "flapping"}},
  };
  for (const auto& r : rows) {
    INFO(r.what);
    auto sent = failover_notifications(rules, r.e, T0);
    std::vector<std::string> got;
    for (const auto& n : sent) {
      got.push_back(n.rule);
      CHECK(n.kind == NotificationKind::firing);
      CHECK(n.value == r.e.in_last_minute);
      CHECK_THAT(n.message, Catch::Contains(r.e.from + " -> " + r.e.to));
      CHECK_THAT(n.message, Catch::Contains(r.e.mode));
      if (n.rule == "failover_happened") CHECK(n.channels == std::vector<std::string>{"hook", "mail"});
    }
    CHECK(got == r.fired);
  }
  // Each failover is judged alone: the same event twice notifies twice (two failovers),
  // and there is never a "resolved" for an event.
  auto a = failover_notifications(rules, {"p", "s", "auto", 2, 1}, T0);
  auto b = failover_notifications(rules, {"s", "p", "auto", 3, 1}, T0 + 30s);
  CHECK(a.size() == 1);
  CHECK(b.size() == 1);
  // The state machine leaves failover rules alone (no duplicate, no resolved later).
  MetricsSnapshot snap;
  snap.set("", "failover", 1);
  CHECK(evaluate_alerts(rules, {}, snap, T0).notifications.empty());
  snap.set("", "failover", 0);
  CHECK(evaluate_alerts(rules, {}, snap, T0 + 90s).notifications.empty());
}

TEST_CASE("a gap in SQLite point-in-time coverage alerts by default once backups archive WAL", "[alerts]") {
  Config cfg;
  for (auto& r : effective_alerts(cfg).rules) CHECK(r.name != "pitr_gap");  // no backups: no rule
  cfg.backup.directory = "/var/backups/drd";
  auto a = effective_alerts(cfg);
  const auto builtins_without_backups = effective_alerts(Config{}).rules.size();
  REQUIRE(a.rules.size() == builtins_without_backups + 1);
  const auto& gap = a.rules.back();
  CHECK(gap.name == "pitr_gap");
  CHECK(gap.metric == "pitr_gap");
  CHECK(gap.severity == "critical");
  CHECK(is_cluster_metric("pitr_gap"));
  MetricsSnapshot open, closed;
  open.set("", "pitr_gap", 12.5);
  closed.set("", "pitr_gap", 0);
  auto fired = evaluate_alerts(a.rules, {}, open, T0);
  REQUIRE(fired.notifications.size() == 1);
  CHECK(fired.notifications[0].rule == "pitr_gap");
  CHECK(fired.notifications[0].node.empty());
  auto resolved = evaluate_alerts(a.rules, fired.states, closed, T0 + 5s);
  REQUIRE(resolved.notifications.size() == 1);
  CHECK(resolved.notifications[0].kind == NotificationKind::resolved);
  cfg.backup.incremental = false;  // no WAL archiving configured: no rule
  CHECK(effective_alerts(cfg).rules.size() == builtins_without_backups);
}
