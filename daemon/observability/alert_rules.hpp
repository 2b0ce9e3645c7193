#pragma once
// Alert rule evaluation: pure. No clock reads, no I/O, no logging — the rules,
// the previous state and a snapshot of metric values come in, the new state and
// the notifications to send come out (tests/monitoring/alert_rules_test.cpp
// drives it with a manual time).
//
// Per (rule, subject) the state machine is
//   inactive --cond--> pending --for elapsed--> firing (notify "firing" once)
//   firing --cond, repeat_interval since last notice--> firing (notify "repeat")
//   firing --!cond--> inactive (notify "resolved" once);  pending --!cond--> inactive (silent)
// A rule with for: 0 goes from inactive straight to firing. A subject without a value
// for the rule's metric in this snapshot ("no data") keeps its state unchanged, so a
// node that cannot be probed neither resolves nor fires a response-time alert.
#include <compare>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.hpp"
#include "common/config.hpp"

namespace drd::monitoring {

// Metric values at one instant. Subject = a node name, or "" for cluster-wide values
// (failover, memory_rss_bytes, backup_age_s, backup_failed, disk_free_pct of the
// backup folder). Metric names as in the config (backup_age is stored as backup_age_s).
struct MetricsSnapshot {
  std::map<std::string, std::map<std::string, double>> values;  // subject -> metric -> value

  void set(const std::string& subject, const std::string& metric, double value);
  std::optional<double> get(const std::string& subject, const std::string& metric) const;
};

// "backup_age" -> "backup_age_s"; others unchanged.
std::string canonical_metric(const std::string& metric);
// Metrics that only exist cluster-wide: a rule's nodes: filter does not apply to them.
bool is_cluster_metric(const std::string& metric);

// The configured alert rules plus the built-in ones: with failover.synchronous a
// critical "sync_degraded" rule (metric sync_degraded > 0, log channel only)
// unless a rule already watches that metric or uses that name. Without it a
// synchronous cluster that silently stopped waiting for standbys would alert no one.
AlertsConfig effective_alerts(const Config& cfg);
// `value op threshold` for op in > >= < <= == != ; an unknown op is false.
bool compare_op(const std::string& op, double value, double threshold);

enum class AlertPhase { inactive, pending, firing };
const char* alert_phase_name(AlertPhase p);

struct AlertKey {
  std::string rule;
  std::string node;  // "" = cluster-wide
  auto operator<=>(const AlertKey&) const = default;
};

struct AlertState {
  AlertPhase phase = AlertPhase::inactive;
  SysTime pending_since{};  // condition first seen true
  SysTime firing_since{};
  SysTime last_notified{};
  double value = 0;         // the last value seen
};
// Only pending and firing states are kept; absence means inactive.
using AlertStates = std::map<AlertKey, AlertState>;

enum class NotificationKind { firing, repeat, resolved };
const char* notification_kind_name(NotificationKind k);  // "firing" | "firing" | "resolved"

struct AlertNotification {
  NotificationKind kind = NotificationKind::firing;
  std::string rule, node, metric, op, severity;
  double value = 0, threshold = 0;
  SysTime time{};   // when it was decided (= now)
  SysTime since{};  // when the alert started firing
  std::string message;  // one line for humans
  std::vector<std::string> channels;  // the rule's channels (empty = log only)
  bool repeat() const { return kind == NotificationKind::repeat; }
};

struct AlertEvaluation {
  AlertStates states;
  std::vector<AlertNotification> notifications;  // in rule order, then subject order
};

// States of rules that are not in `rules` any more are dropped without notifications.
// Event rules (is_event_rule) are skipped here: they notify per event, failover_notifications().
AlertEvaluation evaluate_alerts(const std::vector<AlertRuleConfig>& rules, const AlertStates& previous,
                                const MetricsSnapshot& snapshot, SysTime now);

// Rules on `failover` are about events, not states: each failover is checked against them
// once, when it happens, rather than a "failovers in the last minute" level sampled after
// probe rounds (which missed failovers between samples and merged a second failover within
// the minute into an alert already firing, so it notified no one).
bool is_event_rule(const AlertRuleConfig& r);

struct FailoverEvent {
  std::string from, to, mode;  // mode: auto | manual | switchover
  std::int64_t term = 0;
  int in_last_minute = 1;      // failovers in the last 60 s, this one included: the rule's value
};

// One "firing" notification for each failover rule whose condition holds for the event's
// value (`failover > 0` always does), on that rule's channels; for: and repeat: do not
// apply. Nothing is kept: the next failover is judged on its own.
std::vector<AlertNotification> failover_notifications(const std::vector<AlertRuleConfig>& rules,
                                                      const FailoverEvent& e, SysTime now);

// "response_time_ms on primary is 350 (> 200 for 30s)"; node "" is called "cluster".
std::string alert_message(const AlertRuleConfig& r, const std::string& node, double value, bool resolved);
// Integers without decimals, others with two: stable for tests and messages.
std::string format_value(double v);

}  // namespace drd::monitoring
