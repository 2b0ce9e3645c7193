#pragma once
// PostgresNode: a PostgreSQL 15 server seen through libpq, plus the actions
// that need the server's files (pg_ctl, pg_rewind, pg_basebackup), which run
// as `os_user` through a ProcessRunner.
//
// Connection: one persistent session, (re)made on demand with the password
// from the URL or from password_file (read at every connect, passed as the
// `password` keyword; PGPASSFILE / ~/.pgpass work through libpq). Every call
// honours its timeout against a frozen server (see PgConn). Errors name the
// node and never contain a password.
//
// Fencing is "soft" while the server answers: default_transaction_read_only=on
// via ALTER SYSTEM + reload, then every other client session is terminated so
// no transaction that began read-write survives. A client that deliberately
// runs `SET default_transaction_read_only = off` could still write; the hard
// fallback (used when the server does not answer and data_dir + bin_dir are
// configured) stops it with pg_ctl. last_action() says which was done.
//
// Ownership: borrows the ProcessRunner (must outlive the node).
// Threading: like every Node, one caller at a time.
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/process.hpp"
#include "daemon/engines/postgres/postgres_conn.hpp"
#include "daemon/engines/postgres/postgres_util.hpp"
#include "daemon/engines/postgres/postgres_local.hpp"
#include "daemon/engines/node.hpp"

namespace drd {

class PostgresNode : public Node {
 public:
  PostgresNode(NodeConfig cfg, ProcessRunner& runner);
  ~PostgresNode() override;

  const NodeConfig& config() const override { return cfg_; }

  // One round trip: recovery state, timeline, LSNs, replay delay and pause state,
  // read-only settings and (on a primary) pg_stat_replication. On the kept session;
  // at most once a second a new session is also tried (admission_refusal): a server
  // that refuses new sessions because it is shutting down (57P03) makes drd close its
  // own session (it must not hold a smart shutdown open) and report shutting_down.
  // ProbeResult::server says what the evidence means (pg::server_state). `deep` adds nothing on
  // PostgreSQL (no cheap integrity check exists). Never blocks past `timeout`
  // (plus a few ms): a frozen server gives ok=false with a timeout error.
  ProbeResult probe(Millis timeout, bool deep) override { return probe(timeout, deep, nullptr); }
  // Same; gives up early (as a timeout) once *abort becomes true.
  ProbeResult probe(Millis timeout, bool deep, const std::atomic<bool>* abort);
  // pg_promote(wait => true), then waits until a new session is writable
  // (resetting a leftover default_transaction_read_only on the way).
  // Already a writable primary: ok at once.
  Status promote(Millis timeout) override;
  // Read-only and every client session ended; a local server with synchronous replication
  // on (or that does not answer) is stopped at once instead (pg::fence_method says why).
  Status fence(Millis timeout) override;
  // The switchover's fence: always the SQL one (stopping only when that fails), because the
  // switchover then reads the old primary's flushed WAL position and waits until the target
  // replayed it. A COMMIT that ending its session finished locally is in that WAL, so the
  // target has it before it is promoted: nothing acknowledged on top of it is lost.
  Status fence_keep_running(Millis timeout);
  // ALTER SYSTEM RESET default_transaction_read_only + reload; if fence()
  // stopped the server, starts it again with pg_ctl.
  Status unfence(Millis timeout) override;
  // What postmaster.pid and /proc say about the local server; nullopt when
  // drd has no data_dir for it or cannot read postmaster.pid.
  std::optional<pg::PostmasterState> local_state(SteadyTime deadline, pg::PostmasterPid* pid_file = nullptr);

  // A standby only: sets primary_conninfo (reload applies it in PG15), then
  // waits until pg_stat_wal_receiver streams from `primary`. A primary is
  // refused (it needs rejoin_with_rewind first).
  Status follow(const NodeConfig& primary, Millis timeout) override;

  // Turns this (stopped, crashed or running) old primary into a standby of
  // `primary`: pg_ctl stop, pg_rewind --source-server, restore this node's own
  // config files (pg_rewind copies the source's), set primary_conninfo and
  // standby.signal, pg_ctl start, wait until streaming. Needs data_dir and
  // bin_dir. Refused with hint "use rejoin --reclone" when the cluster has
  // neither data checksums nor wal_log_hints.
  Status rejoin_with_rewind(const NodeConfig& primary, Millis timeout);
  // Before anything is stopped, pg_controldata tells whether pg_rewind can work
  // at all; a rewind that fails because the WAL it needs is gone (diverged too
  // long ago) is refused the same way, with the server started again if it ran.
  //
  // A fresh copy: stop, move the data folder aside to "<data_dir>.drd-old-<unix time>"
  // (kept for the operator), pg_basebackup -R -X stream, restore own config
  // files, start, wait until streaming. The old folder is moved back if the
  // copy fails. A data_dir that does not exist yet (or is empty) is a new
  // standby: pg_basebackup straight into it, the copied config files with this
  // node's port (from its URL) in postgresql.auto.conf. A folder that is
  // neither empty nor a cluster is refused untouched.
  Status reclone(const NodeConfig& primary, Millis timeout);
  // Re-seed from a restored base backup (drctl restore ID --node THIS): `prepared` is a data
  // folder beside data_dir (same filesystem, owned by os_user) holding the restored backup and
  // the archived WAL after it. Stops the server, keeps its own config files, moves data_dir
  // aside to "<data_dir>.drd-old-<unix time>", renames `prepared` into place and starts it as a
  // standby of `primary` (its own config back, standby.signal, primary_conninfo), then waits
  // until it streams from `primary` AND has received everything the primary had written when
  // streaming began (a receiver asking for WAL the primary removed shows "streaming" for a
  // moment; its log's "has already been removed" ends the wait at once). If that fails the new
  // copy is renamed to "<data_dir>.drd-discard-<unix time>", the old folder put back and started
  // again if it was running; the error says so and carries the server log's tail. Folders to
  // delete are appended to `discard` rather than deleted here (a data folder can take minutes,
  // and the cluster worker must stay free): the old folder on success (a standby's data is a
  // copy of the primary's), the failed copy, or `prepared` when it was never renamed in.
  Status reseed_from(const NodeConfig& primary, const std::filesystem::path& prepared, Millis timeout,
                     std::vector<std::string>& discard);
  // The primary rolled back to a backup (drctl restore ID --node PRIMARY --force): `prepared`
  // was recovered and promoted onto `timeline` beside data_dir and stopped cleanly. Stops the
  // server, swaps the folders as reseed_from does, writes this node's configuration files into
  // the copy (no standby.signal), starts it and waits until it is writable on `timeline`. On
  // failure the old folder is put back and started again. The old folder goes to `discard` on
  // success (the safety backup holds it).
  Status replace_primary_data(const std::filesystem::path& prepared, std::uint32_t timeline, Millis timeout,
                              std::vector<std::string>& discard);

  // ALTER SYSTEM SET synchronous_standby_names (empty = RESET) + reload.
  Status set_synchronous_standby_names(std::string value, Millis timeout = Millis(5000));

  // What the last fence()/unfence()/rejoin did, for logs and the RPC answer,
  // e.g. "read-only set, 2 client sessions terminated" or "server stopped with pg_ctl -m fast".
  const std::string& last_action() const { return last_action_; }
  // Output of the server-file tools run by the last action (scrubbed).
  const std::string& last_tool_output() const { return tool_log_; }

 private:
  using Rows = std::vector<pg::ResultSet>;
  // On the persistent session; a broken reused session is retried once on a new one.
  Result<Rows> sql(const std::string& text, SteadyTime deadline, const std::atomic<bool>* abort = nullptr);
  // On a new session closed afterwards (sees the server's current defaults).
  Result<Rows> fresh_sql(const std::string& text, SteadyTime deadline);
  // On a new session to another node (the primary we follow / rewind from).
  Result<Rows> remote_sql(const NodeConfig& other, const std::string& text, SteadyTime deadline);
  Result<pg::ConnParams> conn_params() const;
  std::vector<std::string> secrets() const;
  Error named(const Error& e, const std::string& doing) const;

  Status fence_impl(Millis timeout, bool may_stop_at_once);
  Status fence_sql(SteadyTime deadline, int& terminated);
  // Whether a new session would be admitted now: "" when it is (or the server did not say),
  // else the SQLSTATE the server refused it with (`message` gets the text). The attempt sends
  // no password, so it ends at the server's authentication request without a full login.
  std::string admission_refusal(SteadyTime deadline, std::string& message);
  // postmaster.pid's text: read directly, else with cat as os_user. nullopt = no such file.
  Result<std::optional<std::string>> read_pid_file(SteadyTime deadline);
  // Stops the local server at once (pg_ctl stop -m immediate); `why` goes into last_action().
  Status fence_local(SteadyTime deadline, const std::string& why = "");
  Status wait_writable(SteadyTime deadline);
  Status wait_streaming_from(const NodeConfig& primary, SteadyTime deadline);

  // Server-file actions (postgres_rejoin.cpp).
  Status need_local(const std::string& action) const;
  Result<ProcessOutcome> tool(std::vector<std::string> argv, SteadyTime deadline,
                              std::map<std::string, std::string> env = {},
                              std::string stdin_data = {});
  Result<bool> server_running(SteadyTime deadline);
  // Stops the server if it runs (fast, then immediate, then SIGKILL); *was_running tells which.
  // immediate: skip the fast mode (a fence: fast ends sessions with SIGTERM, pg::fence_method).
  Status stop_server(SteadyTime deadline, bool* was_running = nullptr, bool immediate = false);
  Status start_server(SteadyTime deadline);
  Result<std::map<std::string, std::string>> save_config(SteadyTime deadline);
  Status write_config(const std::map<std::string, std::string>& files, SteadyTime deadline);
  Status restore_config(const std::map<std::string, std::string>& saved, const std::string& primary_conninfo,
                        SteadyTime deadline);
  // Swapping data_dir for a prepared copy (postgres_reseed.cpp). swap_in: checks the copy,
  // stops the server, saves its configuration, moves data_dir aside and renames the copy in; on
  // error nothing was changed (the server started again if it ran) and the copy is in `discard`.
  struct DataSwap {
    std::string aside;  // "<data_dir>.drd-old-<unix time>"
    bool was_running = false;
    std::map<std::string, std::string> saved;
  };
  Result<DataSwap> swap_in(const std::string& what, const std::filesystem::path& prepared, SteadyTime deadline,
                           std::vector<std::string>& discard);
  // After a failure past swap_in: the copy moved to "<data_dir>.drd-discard-*" (into `discard`),
  // the old folder back and started if it ran; the error says all of it (`hint` unless the
  // failure has its own).
  Error swap_back(const std::string& what, const DataSwap& swap, const Error& failed, const std::string& tail,
                  std::vector<std::string>& discard, const std::string& hint);
  std::string start_again(bool was_running);
  std::string server_log_tail();
  Status become_standby_of(const NodeConfig& primary, const std::map<std::string, std::string>& saved,
                           SteadyTime deadline);
  Result<pg::DataDirState> data_dir_state(SteadyTime deadline);
  // Why pg_rewind cannot work on this data folder (pg_controldata), nullopt if it can or if unknown.
  std::optional<std::string> rewind_blocker(SteadyTime deadline);
  std::vector<std::string> basebackup_argv(const std::string& source) const;
  Status clone_fresh(const NodeConfig& primary, const std::string& source,
                     const std::map<std::string, std::string>& env, SteadyTime deadline, const std::string& password);
  std::string rewind_hint() const;

  NodeConfig cfg_;
  ProcessRunner& runner_;
  std::unique_ptr<pg::PgConn> conn_;
  SteadyTime next_admission_check_{};
  std::string admission_sqlstate_, admission_message_;  // the last check's answer
  std::string session_ended_by_;  // the SQLSTATE that ended the kept session in the last sql() call
  bool stopped_by_fence_ = false;
  std::string last_action_;
  std::string tool_log_;
};

// The password in `password_file`'s first line (trailing newline removed).
Result<std::string> read_password_file(const std::filesystem::path& file);
// The password libpq should get for `node`: URL first, then password_file; empty if none.
Result<std::string> node_password(const NodeConfig& node);

}  // namespace drd
