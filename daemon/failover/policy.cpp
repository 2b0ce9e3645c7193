#include "daemon/failover/policy.hpp"

#include <algorithm>
#include <tuple>

namespace drd {

const char* health_name(Health h) {
  switch (h) {
    case Health::up: return "up";
    case Health::down: return "down";
    case Health::unknown: return "unknown";
    case Health::restarting: return "restarting";
  }
  return "unknown";
}

const char* failover_state_name(FailoverState s) {
  switch (s) {
    case FailoverState::normal: return "normal";
    case FailoverState::degraded: return "degraded";
    case FailoverState::failing: return "failing";
    case FailoverState::failing_over: return "failing_over";
    case FailoverState::no_candidate: return "no_candidate";
    case FailoverState::disabled: return "disabled";
    case FailoverState::unknown: return "unknown";
  }
  return "unknown";
}

HealthState next_health(HealthState s, bool probe_ok, int threshold, bool definitely_down) {
  if (probe_ok) {
    s.consecutive_failures = 0;
    s.consecutive_successes++;
    s.health = Health::up;
    return s;
  }
  s.consecutive_successes = 0;
  s.consecutive_failures++;
  if (definitely_down || s.consecutive_failures >= std::max(1, threshold)) s.health = Health::down;
  return s;
}

bool server_up(ServerState s) { return s == ServerState::answering || s == ServerState::saturated; }

HealthState next_health(HealthState s, ServerState state, int threshold, std::int64_t now_ms,
                        std::int64_t restart_grace_ms) {
  if (server_up(state)) {
    s.restarting_since_ms.reset();
    return next_health(s, true, threshold);
  }
  if (state == ServerState::crashed) {
    s.restarting_since_ms.reset();
    return next_health(s, false, threshold, true);
  }
  if (state == ServerState::refuses_drd) {  // it answered: a restart is over
    s.restarting_since_ms.reset();
    if (s.health == Health::restarting) s.health = Health::up;  // failing from here, by the threshold
    return next_health(s, false, threshold);
  }
  const bool says_restarting = state == ServerState::shutting_down || state == ServerState::starting_up;
  if (says_restarting && restart_grace_ms > 0 && !s.restarting_since_ms) s.restarting_since_ms = now_ms;
  if (s.restarting_since_ms && restart_grace_ms > 0) {
    if (now_ms - *s.restarting_since_ms <= restart_grace_ms) {
      s.consecutive_successes = 0;
      s.health = Health::restarting;
      return s;
    }
    // Not back within the grace: every failure from here on counts, and it is down now.
    s = next_health(s, false, threshold, true);
    return s;
  }
  return next_health(s, false, threshold);
}

namespace {

std::string describe_lag(std::uint64_t lag, std::uint64_t max) {
  return "lag " + std::to_string(lag) + " bytes exceeds max_lag " + std::to_string(max);
}

// The reason a node may not be promoted, or "" when it may.
std::string rejection(const NodeView& n, const std::string& failed_primary, const FailoverPolicy& policy,
                      bool force, bool manual, std::optional<std::uint32_t> newest_timeline) {
  if (n.name == failed_primary) return "it is the failed primary";
  if (n.not_member) return *n.not_member;
  if (n.fenced) return "fenced (rejoin it first)";
  if (!n.healthy) return n.restarting ? "restarting" : "not healthy";
  if (n.replay_paused && !manual) return "WAL replay is paused on it (pg_wal_replay_resume() first)";
  if (!n.history_problem.empty()) return "not a copy of the primary's history: " + n.history_problem;
  if (n.no_failover && !manual) return "excluded from automatic failover (no_failover)";
  if (!force && !n.apply_problem.empty()) return "cannot apply the primary's changes: " + n.apply_problem;
  if (!force && n.lag_bytes > policy.max_lag_bytes) return describe_lag(n.lag_bytes, policy.max_lag_bytes);
  if (!force && newest_timeline && n.timeline && *n.timeline < *newest_timeline)
    return "on timeline " + std::to_string(*n.timeline) + ", older than " + std::to_string(*newest_timeline);
  if (!force && policy.synchronous && !n.sync_standby) return "not a synchronous standby (synchronous mode)";
  return "";
}

}  // namespace

Choice choose_failover_target(const std::vector<NodeView>& nodes, const std::string& failed_primary,
                              const FailoverPolicy& policy, bool force,
                              const std::optional<std::string>& manual_target) {
  std::optional<std::uint32_t> newest_timeline;
  for (auto& n : nodes)
    if (n.healthy && n.timeline && n.name != failed_primary && !n.not_member)  // another cluster's timelines say nothing
      newest_timeline = std::max(newest_timeline.value_or(0), *n.timeline);

  Choice c;
  std::vector<const NodeView*> eligible;
  for (auto& n : nodes) {
    if (manual_target && n.name != *manual_target) continue;
    std::string why = rejection(n, failed_primary, policy, force, manual_target.has_value(), newest_timeline);
    if (why.empty()) eligible.push_back(&n);
    else if (n.name != failed_primary || manual_target) c.considered.push_back({n.name, why});
  }
  if (manual_target && eligible.empty() && c.considered.empty()) {
    c.reason = "no node named '" + *manual_target + "'";
    return c;
  }
  if (eligible.empty()) {
    if (manual_target) {
      c.reason = *manual_target + " cannot be promoted: " + c.considered.front().rejected;
      return c;
    }
    c.reason = "no standby can be promoted";
    for (size_t i = 0; i < c.considered.size(); ++i)
      c.reason += (i == 0 ? ": " : "; ") + c.considered[i].name + " " + c.considered[i].rejected;
    return c;
  }
  // Lower sorts first. Data before preference: a standby that holds less WAL
  // than another eligible one would lose what only the other has (and the
  // other could no longer follow it), so the most advanced position wins and
  // priority only chooses among standbys that hold the same WAL. In
  // synchronous mode a synchronous standby (it has every acknowledged commit)
  // comes first whatever the positions say. Unknown positions count as 0.
  const bool sync_first = policy.synchronous;
  auto key = [sync_first](const NodeView* n) {
    std::uint64_t pos = n->position.value_or(0);
    auto rank = n->history_rank.value_or(std::pair<std::int64_t, std::uint64_t>{0, 0});
    return std::make_tuple(sync_first && !n->sync_standby, -rank.first, ~rank.second, ~pos, n->priority, n->name);
  };
  std::sort(eligible.begin(), eligible.end(), [&](auto* a, auto* b) { return key(a) < key(b); });
  const NodeView* best = eligible.front();
  c.target = best->name;
  std::string why;
  if (eligible.size() > 1) {
    const NodeView* next = eligible[1];
    if (sync_first && best->sync_standby && !next->sync_standby) why = " (the synchronous standby)";
    else if (best->history_rank && next->history_rank && *best->history_rank > *next->history_rank)
      why = " (most advanced history: term " + std::to_string(best->history_rank->first) + ", epoch " +
            std::to_string(best->history_rank->second) + "; " + next->name + " has term " +
            std::to_string(next->history_rank->first) + ", epoch " + std::to_string(next->history_rank->second) + ")";
    else if (best->position.value_or(0) > next->position.value_or(0))
      why = " (most advanced; " + next->name + " has " +
            std::to_string(best->position.value_or(0) - next->position.value_or(0)) + " bytes less)";
    else if (best->priority < next->priority) why = " (as advanced as " + next->name + ", better priority)";
    else why = " (as advanced as " + next->name + ", same priority, first by name)";
  }
  c.reason = manual_target ? best->name + " requested by the operator"
                           : best->name + " chosen" + why + ": priority " + std::to_string(best->priority) +
                                 (best->position ? ", position " + std::to_string(*best->position) : "") +
                                 ", lag " + std::to_string(best->lag_bytes) + " bytes";
  // Standbys passed over for a reason (too far behind, not synchronous...) are
  // named, so the history says why the preferred one was not promoted.
  std::string skipped;
  for (auto& k : c.considered)
    if (!k.rejected.empty() && k.name != failed_primary) skipped += (skipped.empty() ? "" : ", ") + k.name + " " + k.rejected;
  if (!skipped.empty() && !manual_target) c.reason += "; skipped: " + skipped;
  for (size_t i = 1; i < eligible.size(); ++i)
    c.considered.push_back({eligible[i]->name, ""});
  return c;
}

StartupChoice choose_startup_primary(const std::vector<NodeView>& nodes, const std::string& persisted) {
  StartupChoice out;
  for (auto& n : nodes) {
    if (n.name == persisted && n.healthy && !n.fenced) {
      out.primary = persisted;
      out.reason = "keeping the recorded primary " + persisted + ": it is healthy";
      return out;
    }
  }
  for (auto& n : nodes) {
    const bool recorded = persisted.empty() ? n.type_primary : n.name == persisted;
    if (recorded && !n.healthy && !n.fenced && n.config_problem) {
      out.primary = n.name;
      out.changed = persisted.empty();
      out.reason = "keeping " + n.name + " as primary: drd cannot use it because of a configuration problem (" +
                   *n.config_problem + "), which is no reason to promote another node";
      return out;
    }
  }
  std::vector<const NodeView*> healthy;
  for (auto& n : nodes)
    if (n.healthy && !n.fenced) healthy.push_back(&n);
  if (healthy.empty()) {
    out.primary = persisted.empty() ? std::nullopt : std::optional<std::string>(persisted);
    out.reason = "no node is healthy; waiting";
    return out;
  }
  // First start: the configured preference (nothing can be lost, there is no
  // primary to lose). A recorded primary that is unhealthy: a failover, so the
  // same data-first order as choose_failover_target.
  const bool failover = !persisted.empty();
  std::sort(healthy.begin(), healthy.end(), [failover](auto* a, auto* b) {
    const std::pair<std::int64_t, std::uint64_t> none{0, 0};
    const auto ra = a->history_rank.value_or(none), rb = b->history_rank.value_or(none);
    if (failover)
      return std::make_tuple(-ra.first, ~ra.second, ~a->position.value_or(0), a->priority, !a->type_primary, a->name) <
             std::make_tuple(-rb.first, ~rb.second, ~b->position.value_or(0), b->priority, !b->type_primary, b->name);
    return std::make_tuple(a->priority, !a->type_primary, ~a->position.value_or(0), a->name) <
           std::make_tuple(b->priority, !b->type_primary, ~b->position.value_or(0), b->name);
  });
  out.primary = healthy.front()->name;
  out.changed = out.primary != persisted;
  const bool removed = failover && std::none_of(nodes.begin(), nodes.end(), [&](auto& n) { return n.name == persisted; });
  out.reason = persisted.empty()
                   ? *out.primary + " chosen as first primary: healthy, priority " + std::to_string(healthy.front()->priority)
               : removed ? "recorded primary " + persisted + " is no longer in the configuration; it is fenced and " +
                               *out.primary + ", the best healthy node, is promoted"
                         : "recorded primary " + persisted + " is not healthy at start; " + *out.primary +
                               " is the best healthy node";
  return out;
}

namespace {

// The engine says the primary's copy is lost (its probes may still pass): a failover
// if allowed, with the engine's reason.
Decision decide_lost_primary(const ClusterView& v) {
  Decision d;
  const std::string lost = "primary " + v.primary + " is lost: " + v.primary_lost;
  if (!v.primary_paused.empty()) {
    d.state = FailoverState::disabled;
    d.reason = lost + "; automatic failover waits (" + v.primary_paused + ")";
    return d;
  }
  if (!v.auto_failover) {
    d.state = FailoverState::disabled;
    d.reason = lost + "; automatic failover is disabled";
    return d;
  }
  Choice c = choose_failover_target(v.nodes, v.primary, v.policy);
  if (!c.target) {
    d.kind = Decision::Kind::no_candidate;
    d.state = FailoverState::no_candidate;
    d.reason = lost + "; " + c.reason;
    return d;
  }
  d.kind = Decision::Kind::failover;
  d.target = *c.target;
  d.state = FailoverState::failing_over;
  d.reason = lost + "; " + c.reason;
  return d;
}

}  // namespace

std::string degraded_reason(const ClusterView& v) {
  std::string out;
  for (auto& n : v.nodes) {
    if (n.name == v.primary || (n.healthy && !n.fenced)) continue;
    std::string what;
    if (n.fenced)
      what = n.name + (n.healthy ? " is fenced" : " is down and fenced") + " (old primary: drctl rejoin " + n.name + ")";
    else if (n.restarting)
      what = n.name + " is restarting";
    else if (n.config_problem)
      what = n.name + " is unreachable for drd because of a configuration problem (" + *n.config_problem + ")";
    else
      what = n.name + " is down";
    out += (out.empty() ? "" : "; ") + what;
  }
  return out;
}

Decision decide(const ClusterView& v) {
  Decision d;
  const std::string standbys_down = degraded_reason(v);

  if (v.failover_running) {
    d.state = FailoverState::failing_over;
    d.reason = "a failover away from " + v.primary + " is running";
    return d;
  }
  if (!v.monitoring) {
    d.state = FailoverState::unknown;
    d.reason = "monitoring is stopped (drctl start-monitoring)";
    return d;
  }
  if (!v.primary_lost.empty()) return decide_lost_primary(v);
  switch (v.primary_health) {
    case Health::unknown:
      d.state = FailoverState::unknown;
      d.reason = "primary " + v.primary + " has not been probed yet";
      return d;
    case Health::up:
      if (v.primary_failures > 0) {
        d.state = FailoverState::failing;
        d.reason = "primary " + v.primary + " failed its last " +
                   (v.primary_failures == 1 ? std::string("probe") : std::to_string(v.primary_failures) + " probes");
      } else if (!standbys_down.empty()) {
        d.state = FailoverState::degraded;
        d.reason = standbys_down;
      } else {
        d.state = FailoverState::normal;
      }
      return d;
    case Health::restarting:
      d.state = FailoverState::degraded;
      d.reason = "primary " + v.primary + " is restarting (it said it is shutting down or starting up); " +
                 "drd waits for it (failover.restart_grace) before failing over";
      if (!standbys_down.empty()) d.reason += "; " + standbys_down;
      return d;
    case Health::down:
      break;
  }
  for (auto& n : v.nodes)
    if (n.name == v.primary && n.config_problem) {
      // The server answered (or drd refused its certificate): it is most likely up and
      // serving clients, so a failover would make two primaries. Say what to fix.
      d.state = FailoverState::degraded;
      d.blocked = true;
      d.reason = "primary " + v.primary + " is unreachable for drd because of a configuration problem (" +
                 *n.config_problem + "); no automatic failover: fix the configuration, or run drctl failover";
      return d;
    }
  if (!v.primary_paused.empty()) {
    d.state = FailoverState::disabled;
    d.blocked = true;
    d.reason = "primary " + v.primary + " is down on purpose (" + v.primary_paused +
               "); automatic failover waits until that is done";
    return d;
  }
  if (!v.auto_failover) {
    d.state = FailoverState::disabled;
    d.blocked = true;
    d.reason = "primary " + v.primary + " is down and automatic failover is disabled";
    return d;
  }
  Choice c = choose_failover_target(v.nodes, v.primary, v.policy);
  if (!c.target) {
    d.kind = Decision::Kind::no_candidate;
    d.state = FailoverState::no_candidate;
    d.reason = "primary " + v.primary + " is down; " + c.reason;
    return d;
  }
  d.kind = Decision::Kind::failover;
  d.target = *c.target;
  d.state = FailoverState::failing_over;
  d.reason = "primary " + v.primary + " down after " + std::to_string(v.primary_failures) +
             (v.primary_failures == 1 ? " failed probe; " : " failed probes; ") + c.reason;
  return d;
}

}  // namespace drd
