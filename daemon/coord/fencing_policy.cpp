#include "daemon/coord/fencing_policy.hpp"

namespace drd::coord {

Millis fence_after(Millis ttl) { return ttl * 2 / 3; }

SelfFenceDecision decide_self_fence(const SelfFenceInputs& in) {
  const Millis limit = fence_after(in.ttl);
  switch (in.role) {
    case LocalRole::fenced:
      if (!in.holding) return {FenceAction::fence, "the store no longer names this node the writable primary"};
      return {};
    case LocalRole::standby:
      // A standby is written by the leader's replication; holding it would block that.
      if (in.holding && in.listed_since_hold) return {FenceAction::unfence, "rejoined: the store names this node a standby"};
      return {};
    case LocalRole::primary:
      break;
  }
  const bool renewed = in.since_renewal < limit;
  const bool confirmed = in.failsafe && in.since_confirmed && *in.since_confirmed < limit;
  if (in.holding) {
    // Only a real renewal proves the view is current again; peers' confirmations keep a
    // writable primary writable but never reopen a fenced one.
    if (renewed && in.view_after_renewal)
      return {FenceAction::unfence, "lease renewed and the store still names this node primary"};
    return {};
  }
  if (renewed || confirmed) return {};
  std::string why = "cannot renew the lease for " + format_duration(in.since_renewal) + " (limit " +
                    format_duration(limit) + ")";
  if (!in.failsafe) why += "; failsafe is off";
  else if (!in.since_confirmed) why += "; the peers did not all confirm this primary";
  else why += "; the peers last all confirmed " + format_duration(*in.since_confirmed) + " ago";
  return {FenceAction::fence, why};
}

FailsafeAnswer answer_failsafe(const FailsafeAsk& ask, const FailsafeView& view) {
  if (view.etcd_reachable) return {false, "this drd still reaches etcd"};
  if (view.primary != ask.node) return {false, "this drd takes " + (view.primary.empty() ? std::string("(none)") : view.primary) + " as the primary"};
  if (view.term != ask.term)
    return {false, "this drd is at term " + std::to_string(view.term) + ", not " + std::to_string(ask.term)};
  return {true, "confirmed"};
}

HostGate failover_host_gate(const std::string& primary, const std::optional<HostView>& host) {
  if (!host) return {};  // no drd runs beside that database: nothing to wait for
  if (!host->member_present) return {};
  if (host->reports_local_up)
    return {false, "the drd beside " + primary + " still holds its lease and reports its database up; waiting for that drd's report or its lease to expire"};
  return {};
}

}  // namespace drd::coord
