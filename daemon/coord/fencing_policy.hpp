#pragma once
// Pure decisions of the multi-host mode (docs/multi-host.md), table-tested in
// tests/unit/fencing_policy_test.cpp. No I/O, no clocks: callers pass ages.
#include <optional>
#include <string>

#include "common/units.hpp"

namespace drd::coord {

// How the shared store (as last read successfully) sees this drd's local node.
enum class LocalRole { primary, standby, fenced };  // fenced: listed fenced, or another node is primary

struct SelfFenceInputs {
  LocalRole role = LocalRole::standby;
  bool holding = false;          // this drd holds its local database fenced right now
  // While holding: the store listed this node fenced at some point. A standby that was
  // listed and no longer is has been rejoined; one never listed may be a demoted primary
  // whose fenced entry the new leader has not written yet, so it stays fenced.
  bool listed_since_hold = false;
  Millis since_renewal{0};       // since the *send* time of the last successful lease renewal
  std::optional<Millis> since_confirmed;  // since the send time of the last round every peer confirmed
  Millis ttl{3000};
  bool failsafe = true;
  // The shared state behind `role` was read after the last renewal was sent. Right after
  // a lost lease is replaced, the role may still come from before the outage.
  bool view_after_renewal = true;
};

enum class FenceAction { none, fence, unfence };
struct SelfFenceDecision {
  FenceAction action = FenceAction::none;
  std::string reason;
};

// Fence deadline: the lease was last renewed (or the peers last confirmed) at most this
// long ago. Two thirds of the TTL: etcd expires the lease no earlier than a TTL after
// the renewal was sent, so the database is unwritable a third of a TTL before anyone
// else could be handed the lead.
Millis fence_after(Millis ttl);

SelfFenceDecision decide_self_fence(const SelfFenceInputs& in);

// A peer's answer to "I cannot reach etcd; do you still take NODE at TERM as the primary?"
struct FailsafeAsk {
  std::string node;
  std::int64_t term = 0;
};
struct FailsafeView {
  bool etcd_reachable = false;  // this drd's own last etcd round succeeded
  std::string primary;          // as last read
  std::int64_t term = 0;
};
struct FailsafeAnswer {
  bool confirm = false;
  std::string reason;
};
// Confirms only when this drd cannot reach etcd either (its last good read is older than
// two etcd rounds) and it names the same primary at the same term. A drd that still
// reaches etcd refuses: the asker is the one cut off, and may lose the lead. A drd that
// confirmed also holds back any failover away from that primary for a TTL
// (Coordinator::failsafe_hold), so even a confirmation given in error cannot lead to two
// writable primaries: the asker fences two thirds of a TTL after its last full round.
FailsafeAnswer answer_failsafe(const FailsafeAsk& ask, const FailsafeView& view);

// The leader's extra condition before an automatic failover away from `primary` whose
// host drd is known (store members): while that drd still holds its lease and says its
// database is up, it has not fenced it, so promoting another node now could leave two
// writable primaries. Its lease expiring means it fenced (or its host is gone).
struct HostView {
  bool member_present = false;  // the primary's host drd still holds its lease
  bool reports_local_up = false;  // and its last report says its database answers
};
struct HostGate {
  bool allow = true;
  std::string reason;
};
HostGate failover_host_gate(const std::string& primary, const std::optional<HostView>& host);

}  // namespace drd::coord
