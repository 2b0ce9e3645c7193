#include "daemon/observability/alert_rules.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <set>

namespace drd::monitoring {

void MetricsSnapshot::set(const std::string& subject, const std::string& metric, double value) {
  values[subject][canonical_metric(metric)] = value;
}

std::optional<double> MetricsSnapshot::get(const std::string& subject, const std::string& metric) const {
  auto s = values.find(subject);
  if (s == values.end()) return std::nullopt;
  auto m = s->second.find(canonical_metric(metric));
  if (m == s->second.end()) return std::nullopt;
  return m->second;
}

std::string canonical_metric(const std::string& metric) {
  return metric == "backup_age" ? std::string("backup_age_s") : metric;
}

bool is_cluster_metric(const std::string& metric) {
  const std::string m = canonical_metric(metric);
  return m == "failover" || m == "memory_rss_bytes" || m == "backup_age_s" || m == "backup_failed" ||
         m == "sync_degraded" || m == "pitr_gap";
}

namespace {

// A built-in rule `name` on `metric` (> 0, critical, log channel), unless the operator's
// own rules already use that metric or that name.
void add_builtin(AlertsConfig& out, const std::string& name, const std::string& metric) {
  for (const auto& r : out.rules)
    if (canonical_metric(r.metric) == metric || r.name == name) return;
  AlertRuleConfig r;
  r.name = name;
  r.metric = metric;
  r.op = ">";
  r.threshold = 0;
  r.severity = "critical";
  out.rules.push_back(std::move(r));
}

}  // namespace

AlertsConfig effective_alerts(const Config& cfg) {
  AlertsConfig out = cfg.alerts;
  // Always: a copy at risk (never overwritten, cannot apply, primary lost) needs an operator.
  add_builtin(out, "copy_at_risk", "copy_problem");
  // Always: a server that is saturated, restarting or refusing drd, or a paused standby.
  add_builtin(out, "server_problem", "server_problem");
  // With SQLite backups archiving WAL: point-in-time coverage stopped (no chain archived,
  // no new base backup under way), so nothing after some time can be restored to.
  if (cfg.backup.incremental && !cfg.backup.directory.empty())
    add_builtin(out, "pitr_gap", "pitr_gap");
  if (!cfg.failover.synchronous) return out;
  for (const auto& r : out.rules)
    if (canonical_metric(r.metric) == "sync_degraded") return out;  // the operator's own rule wins
  for (const auto& r : out.rules)
    if (r.name == "sync_degraded") return out;  // the name is taken: do not shadow it
  AlertRuleConfig r;
  r.name = "sync_degraded";
  r.metric = "sync_degraded";
  r.op = ">";
  r.threshold = 0;
  r.severity = "critical";
  out.rules.push_back(std::move(r));
  return out;
}

bool compare_op(const std::string& op, double v, double t) {
  if (op == ">") return v > t;
  if (op == ">=") return v >= t;
  if (op == "<") return v < t;
  if (op == "<=") return v <= t;
  if (op == "==") return v == t;
  if (op == "!=") return v != t;
  return false;
}

const char* alert_phase_name(AlertPhase p) {
  switch (p) {
    case AlertPhase::inactive: return "inactive";
    case AlertPhase::pending: return "pending";
    case AlertPhase::firing: return "firing";
  }
  return "?";
}

const char* notification_kind_name(NotificationKind k) {
  return k == NotificationKind::resolved ? "resolved" : "firing";
}

std::string format_value(double v) {
  if (std::isfinite(v) && v == std::floor(v) && std::fabs(v) < 1e15) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.0f", v);
    return buf;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", v);
  return buf;
}

namespace {

std::string subject_name(const std::string& node) { return node.empty() ? "cluster" : node; }

}  // namespace

std::string alert_message(const AlertRuleConfig& r, const std::string& node, double value, bool resolved) {
  std::string m = canonical_metric(r.metric) + " on " + subject_name(node) + " is " + format_value(value);
  if (resolved) return m + " (resolved; rule was " + r.op + " " + format_value(r.threshold) + ")";
  m += " (" + r.op + " " + format_value(r.threshold);
  if (r.for_duration.count() > 0) m += " for " + format_duration(r.for_duration);
  return m + ")";
}

bool is_event_rule(const AlertRuleConfig& r) { return canonical_metric(r.metric) == "failover"; }

std::vector<AlertNotification> failover_notifications(const std::vector<AlertRuleConfig>& rules,
                                                      const FailoverEvent& e, SysTime now) {
  std::vector<AlertNotification> out;
  const double value = e.in_last_minute;
  for (const auto& r : rules) {
    if (!is_event_rule(r) || !compare_op(r.op, value, r.threshold)) continue;
    AlertNotification n;
    n.kind = NotificationKind::firing;
    n.rule = r.name;
    n.metric = "failover";
    n.op = r.op;
    n.severity = r.severity;
    n.value = value;
    n.threshold = r.threshold;
    n.time = now;
    n.since = now;
    n.message = "failover " + (e.from.empty() ? std::string("(none)") : e.from) + " -> " + e.to + " (" + e.mode +
                ", term " + std::to_string(e.term) + "); " + std::to_string(e.in_last_minute) +
                (e.in_last_minute == 1 ? " failover" : " failovers") + " in the last minute (rule: failover " + r.op +
                " " + format_value(r.threshold) + ")";
    n.channels = r.channels;
    out.push_back(std::move(n));
  }
  return out;
}

namespace {

// Which subjects of the snapshot this rule looks at.
std::vector<std::string> subjects_for(const AlertRuleConfig& r, const MetricsSnapshot& snap) {
  const std::string metric = canonical_metric(r.metric);
  std::vector<std::string> out;
  for (const auto& [subject, metrics] : snap.values) {
    if (!metrics.count(metric)) continue;
    if (is_cluster_metric(metric)) {
      if (subject.empty()) out.push_back(subject);
      continue;
    }
    if (subject.empty()) {
      if (r.nodes.empty()) out.push_back(subject);
      continue;
    }
    if (r.nodes.empty() || std::find(r.nodes.begin(), r.nodes.end(), subject) != r.nodes.end())
      out.push_back(subject);
  }
  return out;
}

}  // namespace

AlertEvaluation evaluate_alerts(const std::vector<AlertRuleConfig>& rules, const AlertStates& previous,
                                const MetricsSnapshot& snapshot, SysTime now) {
  AlertEvaluation out;
  std::set<std::string> names;
  for (const auto& r : rules)
    if (!is_event_rule(r)) names.insert(r.name);
  for (const auto& [key, st] : previous)
    if (names.count(key.rule)) out.states.emplace(key, st);  // kept as is unless re-evaluated below

  for (const auto& r : rules) {
    if (is_event_rule(r)) continue;
    for (const auto& subject : subjects_for(r, snapshot)) {
      const double value = *snapshot.get(subject, r.metric);
      const bool cond = compare_op(r.op, value, r.threshold);
      const AlertKey key{r.name, subject};
      auto it = out.states.find(key);
      AlertState st = it == out.states.end() ? AlertState{} : it->second;
      st.value = value;

      auto notify = [&](NotificationKind kind) {
        AlertNotification n;
        n.kind = kind;
        n.rule = r.name;
        n.node = subject;
        n.metric = canonical_metric(r.metric);
        n.op = r.op;
        n.severity = r.severity;
        n.value = value;
        n.threshold = r.threshold;
        n.time = now;
        n.since = st.firing_since;
        n.message = alert_message(r, subject, value, kind == NotificationKind::resolved);
        n.channels = r.channels;
        out.notifications.push_back(std::move(n));
      };

      if (!cond) {
        if (st.phase == AlertPhase::firing) notify(NotificationKind::resolved);
        if (it != out.states.end()) out.states.erase(it);
        continue;
      }
      switch (st.phase) {
        case AlertPhase::inactive:
          st.pending_since = now;
          st.phase = AlertPhase::pending;
          [[fallthrough]];
        case AlertPhase::pending:
          if (now - st.pending_since >= r.for_duration) {
            st.phase = AlertPhase::firing;
            st.firing_since = now;
            st.last_notified = now;
            notify(NotificationKind::firing);
          }
          break;
        case AlertPhase::firing:
          if (r.repeat_interval.count() > 0 && now - st.last_notified >= r.repeat_interval) {
            st.last_notified = now;
            notify(NotificationKind::repeat);
          }
          break;
      }
      out.states[key] = st;
    }
  }
  return out;
}

}  // namespace drd::monitoring
