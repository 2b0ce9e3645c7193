#pragma once
// probe_with_deadline: one probe of one node with a hard deadline, the one way drd probes.
// The probe loop, `drctl test` and the refresh of standbys before an automatic failover all
// go through it.
//
// The probe runs on the node's BlockingWorker (it may block in the kernel: a dead network
// mount, a stopped server). `done` runs exactly once on `ex` (a strand): with the answer;
// or, when `timeout` plus a small slack passes first, with a "timed out" failure (the late
// answer is then dropped); or with "drd is stopping" when the worker takes no more work.
// Calls only the node's probe(); owns nothing past the call.
#include <boost/asio.hpp>

#include <functional>

#include "common/clock.hpp"
#include "daemon/engines/node.hpp"
#include "daemon/monitor/blocking_worker.hpp"

namespace drd {

// Grace past the probe timeout before a probe counts as hung (the probe enforces the
// timeout itself where it can; this is for the calls that cannot be interrupted).
inline constexpr Millis kProbeSlack{50};

using ProbeDone = std::function<void(ProbeResult result, bool timed_out)>;

void probe_with_deadline(const boost::asio::any_io_executor& ex, BlockingWorker& worker, Node& node, Millis timeout,
                         bool deep, ProbeDone done);

}  // namespace drd
