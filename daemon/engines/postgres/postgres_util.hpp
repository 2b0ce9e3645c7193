#pragma once
// Pure helpers of the PostgreSQL engine: LSN text, conninfo building and
// quoting, postgresql.auto.conf editing, secret scrubbing and classification of
// tool output. No I/O here (libpq is used only to parse conninfo strings), so
// everything is unit-tested table-driven.
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/config.hpp"
#include "common/result.hpp"
#include "daemon/engines/postgres/postgres_local.hpp"
#include "daemon/engines/node.hpp"

namespace drd::pg {

// "16/B374D848" -> 0x16B374D848. nullopt on anything else.
std::optional<std::uint64_t> parse_lsn(const std::string& text);
std::string format_lsn(std::uint64_t lsn);

// Ordered libpq keyword/value pairs.
using ConnParams = std::vector<std::pair<std::string, std::string>>;

// Splits a libpq URI or key=value string into its set parameters (expanded,
// as PQconninfoParse sees them). Error (invalid_argument, message without
// secrets) when libpq refuses it.
Result<ConnParams> parse_conninfo(const std::string& conninfo);
std::optional<std::string> param(const ConnParams& p, const std::string& key);

// Quotes a value for a key=value conninfo string: single quotes, with quote and backslash
// escaped by a backslash (libpq's rule, unlike SQL's doubled quotes).
std::string quote_conninfo_value(const std::string& v);
std::string to_conninfo(const ConnParams& p);
// A SQL string literal ('...' with quotes doubled; standard_conforming_strings on).
std::string sql_literal(const std::string& v);

// The primary_conninfo a standby should use to stream from `primary`:
// its connection parameters minus dbname, with application_name = standby_name.
// The password is kept only when the primary's URL itself holds one; with a
// password_file the server's own ~/.pgpass (or passfile=) has to supply it.
Result<std::string> primary_conninfo_for(const NodeConfig& primary, const std::string& standby_name);

// Same parameters for a client tool (pg_rewind --source-server, pg_basebackup -d):
// never with a password (that goes in PGPASSWORD, see tool_password()).
Result<std::string> tool_conninfo_for(const NodeConfig& primary, const std::string& application_name);

// The password for `node`: from its URL, else the first line of password_file
// (read by the caller and passed in). nullopt when neither has one.
std::optional<std::string> url_password(const NodeConfig& node);

// Sets (or with nullopt removes) `key` in postgresql.auto.conf text, keeping
// every other line; the result ends with a newline.
std::string set_auto_conf(const std::string& text, const std::string& key,
                          const std::optional<std::string>& value);

// Replaces every occurrence of each non-empty secret with "***", then any
// URL password or password=... parameter (redact_url).
std::string scrub(std::string text, const std::vector<std::string>& secrets);

// Whether a libpq connection error is a configuration problem drd can name rather
// than a server failure: the server answered and refused drd (password, pg_hba.conf,
// unknown role, drd's client certificate), drd refused the server's certificate
// (sslmode=verify-ca/verify-full: wrong CA, host name not in the certificate), or
// drd's own TLS files are missing. Returns the short reason, nullopt otherwise
// (refused/timed-out connections, a server starting up or shutting down...).
std::optional<std::string> config_refusal(const std::string& libpq_message);

// A libpq connection error printed with PQERRORS_VERBOSE ("connection to server ... failed:
// FATAL:  53300: sorry, too many clients already" plus a "LOCATION:" line) split into the
// server's SQLSTATE (the last one in the text; "" when the server sent none, e.g. a refused
// or timed-out connection) and the message as the default verbosity prints it (the code
// after the severity and the LOCATION lines removed).
struct ServerError {
  std::string sqlstate;
  std::string message;
};
ServerError split_verbose_error(const std::string& verbose);

// What one probe of a PostgreSQL server saw, for server_state().
struct ServerEvidence {
  bool query_ok = false;       // drd's session ran the probe query
  std::string sqlstate;        // the server's code when the session or its query failed ("" none)
  std::string message;         // that error's text
  bool config_problem = false; // config_refusal() named the failure
  bool refused = false;        // nothing listens (connection refused)
  // The code that ended drd's kept session just before (57P01 admin_shutdown: a fast or
  // immediate shutdown, or pg_terminate_backend), "" when none.
  std::string session_ended_sqlstate;
  // On this host only (data_dir): postmaster.pid against /proc, and the pid file's status line.
  std::optional<PostmasterState> postmaster;
  std::string pm_status;
  // A new session, tried beside a probe that ran: the server's refusal ("" = admitted or not tried).
  std::string admission_sqlstate;
  std::string admission_message;
};
// The rule "which evidence says the server is up, saturated, restarting or dead":
// - a crashed postmaster (postmaster.pid names a process that is gone) with nothing listening: crashed;
// - SQLSTATE class 53 (insufficient resources: 53300 too many clients, also the reserved-slot
//   refusal) from the session or a new one: saturated (it answers, so it is up);
// - 57P03 (cannot connect now): "shutting down" in the text -> shutting_down, otherwise
//   (starting up, in recovery, not yet accepting) -> starting_up;
// - authentication / configuration refusals (class 28, 3D000, config_refusal): refuses_drd;
// - nothing listens while postmaster.pid names a live postmaster: its status line "stopping"
//   -> shutting_down, otherwise starting_up (a restart between closing and opening sockets);
// - nothing listens right after the server ended drd's session with 57P01 (administrator
//   command: a fast shutdown): shutting_down (a stop seen coming, maybe a restart);
// - the probe ran and a new session is admitted (or was not tried): answering;
// - anything else (timeouts, connection refused without local evidence, other errors): no_answer.
ServerState server_state(const ServerEvidence& e);

// pg_rewind refused because the target lacks wal_log_hints / data checksums.
bool rewind_impossible(const std::string& pg_rewind_output);

// Why a pg_rewind run failed, from its output.
enum class RewindFailure {
  no_hints,     // the target has neither data checksums nor wal_log_hints=on
  wal_missing,  // the target's WAL back to the last common checkpoint is gone (diverged too long ago)
  other,        // connection, permissions, a timeout...
};
RewindFailure classify_rewind_failure(const std::string& pg_rewind_output);

// The facts of `pg_controldata` output that decide whether pg_rewind can work.
// Fields the output does not have stay unset.
struct ControlData {
  std::optional<int> checksum_version;  // "Data page checksum version:" (0 = off)
  std::optional<bool> wal_log_hints;    // "wal_log_hints setting:"
  std::optional<std::string> state;     // "Database cluster state:"
  // "Database system identifier:": the same on every copy of one cluster (primary, standbys,
  // base backups), different for every initdb. Decimal text, as pg_control_system() gives it.
  std::optional<std::string> system_identifier;
  // "Latest checkpoint's TimeLineID:": the timeline a cleanly stopped copy starts on.
  std::optional<std::uint32_t> timeline;
};
ControlData parse_controldata(const std::string& pg_controldata_output);
// The reason pg_rewind cannot rewind a cluster with this control data, or
// nullopt when it can (or when the output did not say: pg_rewind decides then).
std::optional<std::string> rewind_blocker(const ControlData& c);

// What is in a data folder before a clone writes into it.
enum class DataDirState { missing, empty, cluster, other };

// Seconds for pg_ctl -t / pg_promote wait_seconds: ceil(ms / 1000), at least 1.
int whole_seconds(long long ms);

// How fence() makes a reachable primary stop taking writes.
//  - sql: default_transaction_read_only=on, reload, pg_terminate_backend of every client session.
//  - stop_immediate: default_transaction_read_only=on written first (best effort), then
//    `pg_ctl stop -m immediate`.
// pg_terminate_backend (SIGTERM, also what `pg_ctl stop -m fast` sends) ends a COMMIT that waits
// for a synchronous standby by finishing it locally ("canceling the wait for synchronous
// replication ... already committed locally"): its row becomes visible, and a session that was
// blocked behind its lock (a client's retry of the same key, ON CONFLICT DO NOTHING) finds it,
// writes nothing, has no WAL to wait for and reports success before its own SIGTERM lands: an
// acknowledgement of a row only the fenced server holds. The sessions are signalled one by one,
// so no order of terminations closes that window. An immediate stop does: the postmaster sends
// SIGQUIT to every backend, and a backend quits on SIGQUIT with _exit() without finishing its
// statement or releasing its locks, so neither the waiting COMMIT nor anyone blocked behind it
// returns success. (Clearing synchronous_standby_names is no better: it releases the waiters.)
// So: stop_immediate whenever the server may hold such waiters (synchronous_standby_names is set,
// or it could not be asked) and the data folder is on this host (pg_ctl); sql otherwise: in
// asynchronous mode nothing waits for a standby, and a remote server cannot be stopped by drd.
enum class FenceMethod { sql, stop_immediate };
// local: data_dir and bin_dir are configured; sync_names_set: whether synchronous_standby_names
// is non-empty on the server (nullopt: the server did not answer the question).
FenceMethod fence_method(bool local, std::optional<bool> sync_names_set);

}  // namespace drd::pg
