#pragma once
// Which PostgreSQL servers belong to the cluster, and which primary to keep at a start
// where more than one server says it is a primary. Pure (no I/O): tested table-driven in
// tests/core/pg_identity_test.cpp.
//
// A server's identity is (system identifier, timeline, timeline history, LSN). The system
// identifier is written by initdb and copied by pg_basebackup: every member of a cluster
// has the same one, and a server re-created with initdb has another. drd learns the
// cluster's from the first primary it manages and keeps it in its state store.
//
// The rule at start (drd's state lost, or the config's `type: primary` disagreeing with
// the servers): among the reachable members that are primaries (not in recovery), the one
// on the newer timeline wins if its timeline history passes through the other's timeline
// (it continues it; the other's WAL past the fork point stays on that server, fenced).
// Two primaries on the same timeline: the further LSN wins only when both histories are
// the same. Otherwise (diverged histories, an unknown history) drd elects neither and
// waits for an operator. The configuration's `type: primary` plays no part here.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace drd::pgid {

// One line of a timeline history file: the server left `parent_timeline` at `switch_lsn`.
struct Fork {
  std::uint32_t parent_timeline = 0;
  std::uint64_t switch_lsn = 0;
  bool operator==(const Fork& o) const {
    return parent_timeline == o.parent_timeline && switch_lsn == o.switch_lsn;
  }
};
using History = std::vector<Fork>;

// "1\t0/3000160\tno recovery target specified\n..." (pg_wal/0000000N.history); nullopt when
// a line cannot be read. The empty text is timeline 1's (empty) history.
std::optional<History> parse_timeline_history(const std::string& text);

// Why a server with `node_system_id` is not a member of a cluster with `cluster_system_id`,
// e.g. "system identifier 7312... differs from the cluster's 7298...: not a member; not a
// candidate"; nullopt when it is a member or when either is unknown (nothing to say yet).
std::optional<std::string> not_member_reason(const std::optional<std::string>& cluster_system_id,
                                             const std::optional<std::string>& node_system_id);

// What drd knows about one node when it starts (from one probe).
struct StartNode {
  std::string name;
  bool reachable = false;
  bool in_recovery = false;
  std::optional<std::string> system_id;
  std::optional<std::uint32_t> timeline;
  std::optional<std::uint64_t> lsn;  // a primary's current WAL position
  std::optional<History> history;    // a primary's timeline history (nullopt: could not be read)
};

// The cluster's system identifier: the stored one when there is one; else the one every
// reachable node reports, or the one a strict majority of them reports. Otherwise `hold`
// says why drd cannot tell which servers are its own (nodes and identifiers named).
struct ClusterIdentity {
  std::optional<std::string> system_id;
  bool learned = false;  // not stored yet: drd should store it once it settled a primary
  std::string hold;      // non-empty: wait for an operator
};
ClusterIdentity cluster_identity(const std::optional<std::string>& stored, const std::vector<StartNode>& nodes);

// Which primary to keep, given the reachable members (nodes whose system identifier is not
// `system_id` are ignored, as are unreachable ones).
struct PrimaryVerdict {
  enum class Kind {
    none,            // no member is a primary: the ordinary start rule decides
    one,             // exactly one member is a primary: `primary`
    winner,          // several: `primary` continues every other one; `fence` lists them
    needs_operator,  // several, and no one of them can be kept without losing another's commits
  } kind = Kind::none;
  std::string primary;
  std::vector<std::string> fence;
  std::string reason;  // one line for the log and status: nodes, timelines, LSNs
};
PrimaryVerdict settle_primaries(const std::vector<StartNode>& nodes, const std::optional<std::string>& system_id);

}  // namespace drd::pgid
