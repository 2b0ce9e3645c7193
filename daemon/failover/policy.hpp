#pragma once
// Pure decision logic: no I/O, no clock reads. Everything it needs comes in as
// values, so every rule here is tested table-driven (tests/core/policy_test.cpp).
#include <cstdint>
#include <optional>
#include <utility>
#include <string>
#include <vector>

#include "daemon/engines/node.hpp"

namespace drd {

// ---- Health of one node, from consecutive probe results -------------------

// restarting: the server said it is shutting down or starting up (or nothing listens while
// its postmaster lives), within failover.restart_grace: neither up nor down.
enum class Health { unknown, up, down, restarting };
const char* health_name(Health h);

struct HealthState {
  Health health = Health::unknown;
  int consecutive_failures = 0;
  int consecutive_successes = 0;
  // Steady-clock milliseconds of the first "shutting down"/"starting up" answer of the
  // restart in progress; unset when the node is not restarting.
  std::optional<std::int64_t> restarting_since_ms;
};

// A node is down after `threshold` failed probes in a row and up again after
// one good probe (a standby that answers again is immediately usable; a former
// primary stays fenced by the daemon, not by this state). A failed probe that
// is proof of a crash (`definitely_down`: PostgreSQL's postmaster is gone) makes
// it down at once: waiting for more probes would only delay the failover.
HealthState next_health(HealthState s, bool probe_ok, int threshold, bool definitely_down = false);

// The same for an engine that says what the server answered (ServerState), at `now_ms`
// (steady clock), with failover.restart_grace = `restart_grace_ms` (0 = no grace):
// - answering, saturated: a good probe. A server that answers is up; a saturated one (no
//   free connection slot) is up and busy, which status and the alerts show.
// - refuses_drd: a failed probe (the failover decision knows it as a configuration problem
//   and does not fail over on it).
// - shutting_down, starting_up: restarting. Health::restarting, no failure counted, from the
//   first such answer for up to restart_grace; probes without an answer inside that window
//   (the gap of a restart where nothing listens) keep it restarting. Past the window every
//   probe that does not answer counts as a failure and the node is down at once.
// - crashed: down at once.
// - no_answer: one more failure; down after `threshold`.
HealthState next_health(HealthState s, ServerState state, int threshold, std::int64_t now_ms,
                        std::int64_t restart_grace_ms);
// Whether a probe with this ServerState counts as a good probe (answering, saturated).
bool server_up(ServerState s);

// ---- Choosing a primary ---------------------------------------------------

struct NodeView {
  std::string name;
  int priority = 100;
  bool healthy = false;
  bool restarting = false;             // Health::restarting (not healthy, not down)
  // PostgreSQL: a standby whose WAL replay is paused (pg_wal_replay_pause()): it would have to
  // be resumed and replay everything it holds before it is usable. Not an automatic candidate.
  bool replay_paused = false;
  bool fenced = false;
  bool no_failover = false;            // the operator excluded it from automatic promotion
  std::optional<std::uint64_t> position;  // higher = more advanced (LSN / WAL bytes)
  std::uint64_t lag_bytes = 0;         // behind the primary, as last known
  std::optional<std::uint32_t> timeline;  // PostgreSQL only
  bool sync_standby = false;           // PostgreSQL synchronous mode: holds every acknowledged commit
  bool type_primary = false;           // the config's starting role hint
  // Unhealthy only because of a configuration problem drd can name (the server
  // answered and refused drd, or drd refused its certificate): not a lost node.
  std::optional<std::string> config_problem;
  // SQLite: not a copy of the primary's history (another database, diverged, or holding
  // data without one): never a candidate. Says why.
  std::string history_problem;
  // SQLite: its last apply failed (disk full, read-only, corrupt): behind by an unknown amount.
  std::string apply_problem;
  // SQLite: the file's own history (term, epoch); a higher one holds more. Unset elsewhere.
  std::optional<std::pair<std::int64_t, std::uint64_t>> history_rank;
  // Set when the server belongs to another cluster (PostgreSQL: another system
  // identifier): why. Such a node is never promoted, whatever else it looks like.
  std::optional<std::string> not_member;
};

struct FailoverPolicy {
  std::uint64_t max_lag_bytes = 16ull << 20;
  bool synchronous = false;  // only a synchronous standby may be promoted automatically
};

struct Candidate {
  std::string name;
  std::string rejected;  // empty when eligible, else why not
};

struct Choice {
  std::optional<std::string> target;
  std::string reason;                 // one line: why this node, or why none
  std::vector<Candidate> considered;  // every other node, with the reason it was passed over
};

// Which standby to promote when `failed_primary` is lost. Eligible: healthy, not
// fenced, not the failed primary, within max_lag (unless force), not excluded
// (no_failover, unless manual), on the newest timeline seen, in synchronous
// mode a sync standby, holding the primary's history (SQLite) and applying without
// errors (unless force). Order (data before preference): in synchronous mode the
// sync standby first; then the most advanced history (SQLite: term, epoch); then
// the most advanced position; then the lowest
// priority number; then name. So priority picks among standbys that hold the
// same WAL and never costs data another candidate has. With `manual_target` set
// the question is only "is this one eligible?".
Choice choose_failover_target(const std::vector<NodeView>& nodes, const std::string& failed_primary,
                              const FailoverPolicy& policy, bool force = false,
                              const std::optional<std::string>& manual_target = std::nullopt);

// At start: keep the persisted primary while it is healthy (no flapping);
// on a first start (nothing persisted) the best healthy node by preference
// (lowest priority number, the configured primary first among equals, most
// advanced, name); when the persisted one is unhealthy (a failover) the most
// advanced healthy node first, then that preference. nullopt when nothing is healthy.
// A recorded primary (or, on a first start, the configured type: primary node) that
// is unhealthy only by a configuration problem is kept: promoting another node over
// a server that is most likely alive would make two primaries.
struct StartupChoice {
  std::optional<std::string> primary;
  bool changed = false;  // differs from the persisted one (needs a promotion)
  std::string reason;
};
StartupChoice choose_startup_primary(const std::vector<NodeView>& nodes, const std::string& persisted);

// ---- What the monitor should do after a round of probes ------------------

enum class FailoverState { normal, degraded, failing, failing_over, no_candidate, disabled, unknown };
const char* failover_state_name(FailoverState s);

struct ClusterView {
  std::string primary;
  Health primary_health = Health::unknown;
  int primary_failures = 0;
  bool auto_failover = true;
  bool monitoring = true;
  bool failover_running = false;
  // Non-empty while the primary is stopped on purpose (a backup being restored onto it):
  // says why, and automatic failover waits. Not the same as auto_failover = false, which
  // the operator set and which survives restarts.
  std::string primary_paused;
  // Non-empty when the engine knows the primary's copy is lost although its probes may
  // still pass (SQLite: another file at its path, a standby holding a longer history).
  std::string primary_lost;
  std::vector<NodeView> nodes;
  FailoverPolicy policy;
};

struct Decision {
  enum class Kind { none, failover, no_candidate } kind = Kind::none;
  std::string target;
  std::string reason;  // set for every state but normal: what is wrong (status shows it)
  FailoverState state = FailoverState::normal;
  // The primary is down, so a failover is needed, and something stops it (auto-failover
  // disabled, a restore pausing the primary, a configuration problem, the store). Only then
  // is `failover_blocked` logged: a stopped monitor or a down standby block nothing.
  bool blocked = false;
};

Decision decide(const ClusterView& view);

// Why the cluster is degraded: each standby that is down or fenced, "; "-joined
// ("secondary2 is down; primary is fenced (old primary: drctl rejoin primary)"). "" when none.
std::string degraded_reason(const ClusterView& view);

}  // namespace drd
