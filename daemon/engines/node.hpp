#pragma once
// Node: one database drd watches, whatever its engine.
//
// Threading: every method blocks and is called from the node's own worker
// thread, never two at once for one node. The monitor enforces deadlines from
// outside (a call that does not return in time is abandoned and counted as a
// failure), so an implementation should still honour `timeout` where its
// engine allows, to free the worker quickly.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/config.hpp"
#include "common/result.hpp"

namespace drd {

enum class Role { unknown, primary, standby };
const char* role_name(Role r);

// One row of pg_stat_replication as seen on a primary.
struct ReplicaStat {
  std::string application_name;
  std::string client_addr;
  std::string state;       // streaming, catchup, ...
  std::string sync_state;  // async, sync, potential, quorum
  std::uint64_t sent_lsn = 0, write_lsn = 0, flush_lsn = 0, replay_lsn = 0;
  bool has_replay_lsn = false;  // replay_lsn was not NULL
  double write_lag_ms = 0, flush_lag_ms = 0, replay_lag_ms = 0;
};

// What a server's answer (or silence) says about it, beyond "the probe query ran". A server
// that answers, even with an error, is up: only no_answer and crashed are evidence of an
// outage (see server_evidence in daemon/engines/postgres/postgres_util.hpp and next_health).
enum class ServerState {
  answering,      // the probe ran and a new session would be admitted
  saturated,      // it answers but has no free connection slot (PostgreSQL 53300): up, busy
  shutting_down,  // it refuses new sessions because it is shutting down (57P03)
  starting_up,    // it refuses new sessions because it is starting or recovering (57P03), or
                  // nothing listens yet while its postmaster (on this host) lives: restarting
  refuses_drd,    // it answered and refused drd itself (password, pg_hba.conf, role, TLS)
  no_answer,      // nothing came back in time, or nothing listens (cause unknown)
  crashed,        // proof of death: postmaster.pid names a process that is gone
};
const char* server_state_name(ServerState s);

struct ProbeResult {
  bool ok = false;
  // See ServerState. Engines that do not tell set answering (ok) or no_answer.
  ServerState server = ServerState::no_answer;
  std::string error;       // why it failed; never holds a secret
  // The failure is proof the server is down, not a maybe (PostgreSQL with a
  // local data_dir: connection refused and postmaster.pid names a dead
  // process). The node is then down at once, without failure_threshold.
  bool definitely_down = false;
  // The failure is a configuration problem with a named reason, not a down server:
  // the server answered and refused drd (password, pg_hba.conf) or drd refused the
  // server's certificate. No automatic failover on it (the primary is most likely
  // alive and serving its clients); status and the log show the error.
  std::optional<std::string> config_problem;
  double response_ms = 0;  // wall time of the probe's round trip
  Role role = Role::unknown;  // what the server itself reports
  bool writable = false;   // it accepts writes right now
  // A position that only grows within one timeline/generation, comparable across
  // the nodes of a cluster: PostgreSQL = LSN (received on a standby, current on a
  // primary); SQLite = bytes of WAL applied.
  std::optional<std::uint64_t> position;
  // PostgreSQL details.
  std::optional<std::uint32_t> timeline;
  std::optional<std::uint64_t> current_lsn, receive_lsn, replay_lsn;
  std::optional<double> replay_delay_ms;  // now() - pg_last_xact_replay_timestamp() on a standby
  // A standby's pg_get_wal_replay_pause_state() is not "not paused" (pg_wal_replay_pause()):
  // it receives and flushes WAL but applies none.
  bool replay_paused = false;
  std::vector<ReplicaStat> replicas;      // on a primary
  // pg_control_system().system_identifier (decimal, as PostgreSQL prints it): the same on
  // every member of one cluster, another one on a server re-created with initdb.
  std::optional<std::string> system_identifier;
  // A primary's timeline history file (pg_wal/<timeline>.history; "" on timeline 1);
  // nullopt on a standby or when drd may not read it.
  std::optional<std::string> timeline_history;
  // SQLite details.
  bool integrity_checked = false;  // this probe ran the slower quick_check
};

class Node {
 public:
  virtual ~Node() = default;
  virtual const NodeConfig& config() const = 0;
  const std::string& name() const { return config().name; }

  // Connect (reusing a connection where possible), ask the cheap questions, measure.
  // `deep` asks for the slower integrity checks an engine may have.
  virtual ProbeResult probe(Millis timeout, bool deep) = 0;

  // Make this node the writable primary. Returns once it accepts writes.
  virtual Status promote(Millis timeout) = 0;
  // Make this node refuse writes at once (best effort on an unreachable node:
  // the error says what could not be done).
  virtual Status fence(Millis timeout) = 0;
  // Undo fence() (used when a switchover is aborted before promotion).
  virtual Status unfence(Millis timeout) = 0;
  // Make this node a standby that follows `primary`.
  virtual Status follow(const NodeConfig& primary, Millis timeout) = 0;
};

}  // namespace drd
