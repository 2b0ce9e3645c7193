// The pure decisions of the multi-host mode, table by table (daemon/coord/fencing_policy.hpp).
#include <catch2/catch.hpp>

#include "daemon/coord/fencing_policy.hpp"

using namespace drd;
using namespace drd::coord;

namespace {

struct FenceRow {
  const char* what;
  LocalRole role;
  bool holding;
  bool listed_since_hold;
  long since_renewal_ms;
  long since_confirmed_ms;  // -1 = never
  bool failsafe;
  FenceAction expect;
};

// TTL 3 s throughout: the fence deadline is 2 s.
const FenceRow kFence[] = {
    {"primary renewing normally", LocalRole::primary, false, false, 900, -1, true, FenceAction::none},
    {"primary just under the deadline", LocalRole::primary, false, false, 1999, -1, true, FenceAction::none},
    {"primary at the deadline, no peers confirmed", LocalRole::primary, false, false, 2000, -1, true, FenceAction::fence},
    {"primary past the deadline, failsafe off", LocalRole::primary, false, false, 2500, 100, false, FenceAction::fence},
    {"primary past the deadline, every peer confirmed lately", LocalRole::primary, false, false, 9000, 300, true, FenceAction::none},
    {"primary past the deadline, confirmations stale", LocalRole::primary, false, false, 9000, 2000, true, FenceAction::fence},
    {"fenced primary, lease renewed again", LocalRole::primary, true, false, 100, -1, true, FenceAction::unfence},
    {"fenced primary, peers confirm again but no renewal", LocalRole::primary, true, false, 5000, 100, true, FenceAction::none},
    {"fenced primary, still no renewal", LocalRole::primary, true, false, 5000, -1, true, FenceAction::none},
    {"standby never fences itself on lease loss", LocalRole::standby, false, false, 60000, -1, true, FenceAction::none},
    {"listed fenced in the store", LocalRole::fenced, false, false, 100, -1, true, FenceAction::fence},
    {"listed fenced, already holding", LocalRole::fenced, true, true, 100, -1, true, FenceAction::none},
    {"demoted, fenced entry not written yet", LocalRole::standby, true, false, 100, -1, true, FenceAction::none},
    {"rejoined: was listed, now a standby", LocalRole::standby, true, true, 100, -1, true, FenceAction::unfence},
};

}  // namespace

TEST_CASE("self-fencing decision table", "[coord][policy]") {
  for (const auto& r : kFence) {
    SelfFenceInputs in;
    in.role = r.role;
    in.holding = r.holding;
    in.listed_since_hold = r.listed_since_hold;
    in.since_renewal = Millis(r.since_renewal_ms);
    if (r.since_confirmed_ms >= 0) in.since_confirmed = Millis(r.since_confirmed_ms);
    in.ttl = Millis(3000);
    in.failsafe = r.failsafe;
    auto d = decide_self_fence(in);
    INFO(r.what << ": " << d.reason);
    CHECK(d.action == r.expect);
    if (d.action != FenceAction::none) CHECK_FALSE(d.reason.empty());
  }
}

TEST_CASE("a fenced primary stays fenced until the state was read after the renewal", "[coord][policy]") {
  SelfFenceInputs in;
  in.role = LocalRole::primary;  // possibly from before the outage
  in.holding = true;
  in.since_renewal = Millis(10);
  in.view_after_renewal = false;
  CHECK(decide_self_fence(in).action == FenceAction::none);
  in.view_after_renewal = true;
  CHECK(decide_self_fence(in).action == FenceAction::unfence);
}

TEST_CASE("the fence deadline leaves a third of the TTL before the lease can expire", "[coord][policy]") {
  CHECK(fence_after(Millis(3000)) == Millis(2000));
  CHECK(fence_after(Millis(10000)) < Millis(10000));
}

TEST_CASE("failsafe answers", "[coord][policy]") {
  struct Row {
    const char* what;
    bool reachable;
    const char* primary;
    std::int64_t term;
    bool confirm;
  } rows[] = {
      {"same view, etcd down here too", false, "a", 4, true},
      {"this peer still reaches etcd", true, "a", 4, false},
      {"another primary here", false, "b", 4, false},
      {"another term here", false, "a", 5, false},
      {"no primary known here", false, "", 4, false},
  };
  for (auto& r : rows) {
    auto a = answer_failsafe(FailsafeAsk{"a", 4}, FailsafeView{r.reachable, r.primary, r.term});
    INFO(r.what << ": " << a.reason);
    CHECK(a.confirm == r.confirm);
  }
}

TEST_CASE("failover host gate", "[coord][policy]") {
  CHECK(failover_host_gate("a", std::nullopt).allow);                     // no drd beside it
  CHECK(failover_host_gate("a", HostView{false, false}).allow);           // its lease expired
  CHECK(failover_host_gate("a", HostView{true, false}).allow);            // its drd says it is down
  auto g = failover_host_gate("a", HostView{true, true});                 // its drd vouches for it
  CHECK_FALSE(g.allow);
  CHECK(g.reason.find("lease") != std::string::npos);
}
