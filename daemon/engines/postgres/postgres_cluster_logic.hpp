#pragma once
// Pure decisions of the PostgreSQL cluster driver (no I/O), so they are
// tested table-driven: turning one round of probes into the replicas()
// snapshot, spotting a second primary, the synchronous_standby_names value,
// and when synchronous mode degrades to asynchronous and back.
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/clock.hpp"
#include "daemon/failover/cluster_driver.hpp"
#include "daemon/engines/node.hpp"

namespace drd::pgha {

// One round of probes, by node name (a node missing from the map was not probed).
using Probes = std::map<std::string, ProbeResult>;

// The replicas() snapshot for every node in `names` except `primary`.
// - Primary answered: each standby's row in its pg_stat_replication (matched by
//   application_name == node name) gives streaming, sync, lag_ms (replay_lag)
//   and lag_bytes = primary current LSN - standby flush LSN. A standby without
//   a row is "not streaming"; its lag is computed from its own receive LSN.
// - Primary did not answer: the previous lag and sync flags are kept (they are
//   what the standby had when the primary was last seen: what a failover would
//   lose), streaming is false.
// - position is the standby's own receive LSN when it answered, else the
//   flush LSN from the row.
// - replay_lag_bytes = primary current LSN - the standby's replay LSN (row, else its own
//   probe); replay_paused from the standby's own probe.
// - Fenced nodes get note "fenced" (or the note in `fence_notes`).
std::map<std::string, ReplicaInfo> replica_snapshot(const std::vector<std::string>& names, const std::string& primary,
                                                    const Probes& probes, const std::set<std::string>& fenced,
                                                    const std::map<std::string, std::string>& fence_notes,
                                                    const std::map<std::string, ReplicaInfo>& previous);

// Nodes other than `primary` that answered as writable primaries.
std::vector<std::string> second_primaries(const std::string& primary, const Probes& probes);

// Nodes (other than `primary`) that answered, are in recovery and have no
// streaming row on the primary; empty when the primary did not answer.
std::vector<std::string> standbys_not_streaming(const std::vector<std::string>& names, const std::string& primary,
                                                const Probes& probes, const std::set<std::string>& fenced);

// Why a switchover to `target` must be refused before anything is fenced, or nullopt:
// its WAL replay is paused, or it has more than `max_lag_bytes` of received WAL left to replay
// (the old primary would stay read-only that long). The text names the node and its state.
std::optional<std::string> switchover_refusal(const std::string& target, bool replay_paused,
                                              std::optional<std::uint64_t> replay_lag_bytes,
                                              std::uint64_t max_lag_bytes);

// 'FIRST 1 ("a", "b")' for the given standby names (identifiers double-quoted,
// quotes doubled); "" for none.
std::string synchronous_standby_names(const std::vector<std::string>& names);

// Synchronous mode: degrade to asynchronous when no listed standby has
// streamed for `degrade_after`, restore as soon as one streams again.
struct SyncState {
  bool degraded = false;
  std::optional<SteadyTime> none_streaming_since;
};
enum class SyncAction { none, degrade, restore };
SyncAction next_sync_action(SyncState& s, bool any_streaming, SteadyTime now, Millis degrade_after);

// Whether `name` streams from the primary according to its probe rows.
bool streams(const ProbeResult& primary_probe, const std::string& name);

}  // namespace drd::pgha
