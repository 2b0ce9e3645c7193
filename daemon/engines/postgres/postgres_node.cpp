// PostgresNode: probe and the SQL-level actions (promote, fence, follow).
// Server-file actions live in postgres_rejoin.cpp.
#include "daemon/engines/postgres/postgres_node.hpp"

#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <thread>

namespace drd {

using namespace std::chrono_literals;
using pg::ms_left;

namespace {

SteadyTime now() { return std::chrono::steady_clock::now(); }

const char* kProbeSql =
    "SELECT pg_is_in_recovery(),"
    " CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_walfile_name(pg_current_wal_lsn()) END,"
    " (SELECT received_tli FROM pg_stat_wal_receiver),"
    " (SELECT timeline_id FROM pg_control_checkpoint()),"
    " CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn() END,"
    " pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn(),"
    " round(extract(epoch FROM now() - pg_last_xact_replay_timestamp()) * 1000),"
    " current_setting('default_transaction_read_only'), current_setting('transaction_read_only'),"
    // Identity: which cluster this server belongs to, and (on a primary) the history of its
    // timeline, so that two primaries can be told apart at start. The history is read only
    // when drd's user may read server files (superuser), else NULL (unknown).
    " (SELECT system_identifier::text FROM pg_control_system()),"
    " CASE WHEN pg_is_in_recovery() THEN NULL"
    " WHEN substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8) = '00000001' THEN ''"
    " WHEN has_function_privilege('pg_read_file(text,bigint,bigint,boolean)', 'EXECUTE')"
    " THEN pg_read_file('pg_wal/' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8) || '.history',"
    " 0, 1048576, true) END,"
    " CASE WHEN pg_is_in_recovery() THEN pg_get_wal_replay_pause_state() END;"
    "SELECT coalesce(application_name, ''), coalesce(host(client_addr), ''), coalesce(state, ''),"
    " coalesce(sync_state, ''), sent_lsn, write_lsn, flush_lsn, replay_lsn,"
    " extract(epoch FROM write_lag) * 1000, extract(epoch FROM flush_lag) * 1000,"
    " extract(epoch FROM replay_lag) * 1000"
    " FROM pg_stat_replication ORDER BY application_name";

using Cell = std::optional<std::string>;

std::optional<std::uint64_t> lsn(const Cell& c) { return c ? pg::parse_lsn(*c) : std::nullopt; }
std::optional<double> num(const Cell& c) {
  if (!c) return std::nullopt;
  try {
    return std::stod(*c);
  } catch (...) {
    return std::nullopt;
  }
}
bool truthy(const Cell& c) { return c && (*c == "t" || *c == "on" || *c == "true"); }

// The scalar in the first row/column of the last result set.
Cell scalar(const std::vector<pg::ResultSet>& rs) {
  if (rs.empty() || rs.back().rows.empty() || rs.back().rows[0].empty()) return std::nullopt;
  return rs.back().rows[0][0];
}

}  // namespace

Result<std::string> read_password_file(const std::filesystem::path& file) {
  std::ifstream in(file);
  if (!in)
    return make_error(Errc::io, "cannot read password_file " + file.string() + ": " + std::strerror(errno),
                      "check that it exists and that drd may read it");
  std::string line;
  std::getline(in, line);
  while (!line.empty() && (line.back() == '\r' || line.back() == '\n')) line.pop_back();
  return line;
}

Result<std::string> node_password(const NodeConfig& node) {
  if (auto p = pg::url_password(node)) return *p;
  if (node.password_file) return read_password_file(*node.password_file);
  return std::string();
}

PostgresNode::PostgresNode(NodeConfig cfg, ProcessRunner& runner) : cfg_(std::move(cfg)), runner_(runner) {}

PostgresNode::~PostgresNode() = default;

std::vector<std::string> PostgresNode::secrets() const {
  std::vector<std::string> s;
  if (auto p = pg::url_password(cfg_)) s.push_back(*p);
  if (cfg_.password_file)
    if (auto p = read_password_file(*cfg_.password_file)) s.push_back(p.value());
  return s;
}

Result<pg::ConnParams> PostgresNode::conn_params() const {
  pg::ConnParams p{{"fallback_application_name", "drd"}, {"dbname", cfg_.pg_conninfo}};
  if (cfg_.password_file && !pg::url_password(cfg_)) {
    auto pw = read_password_file(*cfg_.password_file);
    if (!pw) return pw.error();
    p.emplace_back("password", pw.value());
  }
  return p;
}

Error PostgresNode::named(const Error& e, const std::string& doing) const {
  return make_error(e.code, doing + " " + cfg_.name + ": " + pg::scrub(e.message, secrets()), e.hint);
}

Result<PostgresNode::Rows> PostgresNode::sql(const std::string& text, SteadyTime deadline,
                                             const std::atomic<bool>* abort) {
  session_ended_by_.clear();
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (!conn_ || !conn_->connected()) {
      auto params = conn_params();
      if (!params) return params.error();
      conn_ = std::make_unique<pg::PgConn>(std::move(params.value()), secrets());
    }
    const bool reused = conn_->connected();
    conn_->set_abort(abort);
    auto r = conn_->query(text, deadline);
    if (conn_) conn_->set_abort(nullptr);
    // A session that died while idle (server restarted): one retry on a new one.
    if (!r && reused && r.error().code == Errc::unavailable && ms_left(deadline) > 0) {
      session_ended_by_ = conn_->sqlstate();  // 57P01: a shutdown (or pg_terminate_backend) ended it
      continue;
    }
    return r;
  }
  return make_error(Errc::unavailable, "connection lost");
}

Result<PostgresNode::Rows> PostgresNode::fresh_sql(const std::string& text, SteadyTime deadline) {
  auto params = conn_params();
  if (!params) return params.error();
  pg::PgConn c(std::move(params.value()), secrets());
  return c.query(text, deadline);
}

Result<PostgresNode::Rows> PostgresNode::remote_sql(const NodeConfig& other, const std::string& text,
                                                    SteadyTime deadline) {
  pg::ConnParams p{{"fallback_application_name", "drd"}, {"dbname", other.pg_conninfo}};
  std::vector<std::string> hidden = secrets();
  auto pw = node_password(other);
  if (!pw) return pw.error();
  if (!pw->empty()) {
    if (!pg::url_password(other)) p.emplace_back("password", pw.value());
    hidden.push_back(pw.value());
  }
  pg::PgConn c(std::move(p), hidden);
  return c.query(text, deadline);
}

std::string PostgresNode::admission_refusal(SteadyTime deadline, std::string& message) {
  auto params = conn_params();
  if (!params) return "";
  // No password (a later keyword overrides the URL's, and no passfile is found): a server that
  // admits the session asks for one and the attempt ends there, unlogged.
  params->emplace_back("password", "");
  params->emplace_back("passfile", "/nonexistent/drd-admission-check");
  params->emplace_back("application_name", "drd-admission-check");
  pg::PgConn c(std::move(params.value()), secrets());
  auto st = c.connect(deadline);
  if (st) return "";
  message = st.error().message;
  return c.sqlstate();
}

ProbeResult PostgresNode::probe(Millis timeout, bool /*deep*/, const std::atomic<bool>* abort) {
  ProbeResult r;
  const auto t0 = now();
  auto res = sql(kProbeSql, t0 + timeout, abort);
  r.response_ms = std::chrono::duration<double, std::milli>(now() - t0).count();
  pg::ServerEvidence ev;
  if (!res) {
    r.error = named(res.error(), "probe").message;
    ev.sqlstate = conn_ ? conn_->sqlstate() : "";
    ev.message = r.error;
    if (auto why = pg::config_refusal(r.error)) {
      r.config_problem = *why;
      r.error += " [configuration: " + *why + "]";
      ev.config_problem = true;
      r.server = pg::server_state(ev);
      return r;
    }
    // Nothing listens: with the data folder at hand, tell a crash (proof of
    // down) from a stop (maybe an operator; the threshold decides) and from a
    // restart (the postmaster lives: restarting, failover.restart_grace decides).
    ev.refused = pg::connection_refused(r.error);
    ev.session_ended_sqlstate = session_ended_by_;
    if (cfg_.data_dir && ev.refused) {
      pg::PostmasterPid file;
      auto st = local_state(t0 + timeout, &file);
      ev.postmaster = st;
      ev.pm_status = file.status;
      if (st == pg::PostmasterState::gone) {
        r.definitely_down = true;
        r.error += "; its postmaster (pid " + std::to_string(file.pid) + " in postmaster.pid) is gone: crashed";
      } else if (st == pg::PostmasterState::no_pid_file) {
        r.error += "; the server is stopped (no postmaster.pid)";
      } else if (st == pg::PostmasterState::running) {
        r.error += "; its postmaster (pid " + std::to_string(file.pid) + ") is alive" +
                   (file.status.empty() ? std::string() : " (" + file.status + ")") + ": restarting";
      }
    }
    r.server = pg::server_state(ev);
    if (r.server == ServerState::saturated)
      r.error += " [saturated: the server answers but has no free connection slot for drd]";
    return r;
  }
  ev.query_ok = true;
  // Our session says nothing about new ones: a server in smart shutdown (or out of slots)
  // refuses them while every open session goes on working.
  // Between two checks the last answer stands; a new session of our own is proof enough.
  if (conn_ && conn_->fresh()) {
    admission_sqlstate_.clear();
    admission_message_.clear();
  } else if (now() >= next_admission_check_ && ms_left(t0 + timeout) > 20) {
    next_admission_check_ = now() + std::chrono::seconds(1);
    admission_message_.clear();
    admission_sqlstate_ = admission_refusal(t0 + timeout, admission_message_);
  }
  ev.admission_sqlstate = admission_sqlstate_;
  ev.admission_message = admission_message_;
  r.server = pg::server_state(ev);
  if (r.server == ServerState::shutting_down || r.server == ServerState::starting_up) {
    // Our own sessions must not keep a smart shutdown waiting: close them; reconnecting
    // fails with the same answer until the server is back.
    if (conn_) conn_->close();
    admission_sqlstate_.clear();
    r.error = "probe " + cfg_.name + ": the server refuses new sessions (" + ev.admission_message + "); drd closed its own";
    return r;
  }
  const auto& sets = res.value();
  if (sets.size() != 2 || sets[0].rows.size() != 1 || sets[0].rows[0].size() != 13) {
    r.error = "probe " + cfg_.name + ": unexpected answer shape from the server";
    r.server = ServerState::no_answer;
    return r;
  }
  const auto& row = sets[0].rows[0];
  const bool in_recovery = truthy(row[0]);
  r.role = in_recovery ? Role::standby : Role::primary;
  if (!in_recovery && row[1] && row[1]->size() >= 8) {
    try {
      r.timeline = static_cast<std::uint32_t>(std::stoul(row[1]->substr(0, 8), nullptr, 16));
    } catch (...) {
    }
  } else if (auto tli = num(row[2] ? row[2] : row[3])) {
    r.timeline = static_cast<std::uint32_t>(*tli);
  }
  r.current_lsn = lsn(row[4]);
  r.receive_lsn = lsn(row[5]);
  r.replay_lsn = lsn(row[6]);
  r.replay_delay_ms = num(row[7]);
  const bool read_only = truthy(row[8]) || truthy(row[9]);
  r.writable = !in_recovery && !read_only;
  r.position = in_recovery ? (r.receive_lsn ? r.receive_lsn : r.replay_lsn) : r.current_lsn;
  r.system_identifier = row[10];
  r.timeline_history = row[11];
  r.replay_paused = in_recovery && row[12] && *row[12] != "not paused";
  for (const auto& rep : sets[1].rows) {
    if (rep.size() != 11) continue;
    ReplicaStat s;
    s.application_name = rep[0].value_or("");
    s.client_addr = rep[1].value_or("");
    s.state = rep[2].value_or("");
    s.sync_state = rep[3].value_or("");
    s.sent_lsn = lsn(rep[4]).value_or(0);
    s.write_lsn = lsn(rep[5]).value_or(0);
    s.flush_lsn = lsn(rep[6]).value_or(0);
    s.replay_lsn = lsn(rep[7]).value_or(0);
    s.has_replay_lsn = rep[7].has_value();
    s.write_lag_ms = num(rep[8]).value_or(0);
    s.flush_lag_ms = num(rep[9]).value_or(0);
    s.replay_lag_ms = num(rep[10]).value_or(0);
    r.replicas.push_back(std::move(s));
  }
  if (r.server == ServerState::saturated)
    r.error = "the server refuses new sessions for lack of connection slots (" + ev.admission_message +
              "); drd keeps its own session";
  r.ok = true;
  return r;
}

Status PostgresNode::wait_writable(SteadyTime deadline) {
  bool reset_sent = false;
  std::string last = "no answer";
  for (;;) {
    auto r = fresh_sql("SELECT pg_is_in_recovery(), current_setting('default_transaction_read_only')", deadline);
    if (r && !r->empty() && !r->back().rows.empty()) {
      const auto& row = r->back().rows[0];
      if (!truthy(row[0]) && !truthy(row[1])) return ok_status();
      last = truthy(row[0]) ? "still in recovery" : "default_transaction_read_only is on";
      if (!truthy(row[0]) && truthy(row[1]) && !reset_sent) {
        // A fence left behind (or copied from a fenced primary): promotion means writable.
        auto a = sql("ALTER SYSTEM RESET default_transaction_read_only", deadline);
        auto b = a ? sql("SELECT pg_reload_conf()", deadline) : Result<Rows>(a.error());
        if (!b) return named(b.error(), "promote");
        reset_sent = true;
      }
    } else if (!r) {
      last = r.error().message;
    }
    if (ms_left(deadline) <= 20)
      return make_error(Errc::timeout, "promote " + cfg_.name + ": not writable in time (" +
                                           pg::scrub(last, secrets()) + ")");
    std::this_thread::sleep_for(20ms);
  }
}

Status PostgresNode::promote(Millis timeout) {
  const auto deadline = now() + timeout;
  auto st = sql("SELECT pg_is_in_recovery()", deadline);
  if (!st) return named(st.error(), "promote");
  if (truthy(scalar(st.value()))) {
    // pg_promote(wait => true) checks for the end of recovery only every 100 ms;
    // asking every 5 ms on our own session makes the new primary usable sooner.
    // The request is repeated every 100 ms while recovery goes on: PostgreSQL 15
    // can miss one that lands while its startup process is between giving up on a
    // dead upstream and sleeping wal_retrieve_retry_interval (seen in the
    // benchmark: a 5 s promotion right after the old primary was killed).
    SteadyTime next_request{};
    for (;;) {
      if (now() >= next_request) {
        auto p = sql("SELECT pg_promote(wait => false)", deadline);
        if (!p) {
          // Recovery ended between our check and the request: that is success.
          if (p.error().message.find("recovery is not in progress") == std::string::npos)
            return named(p.error(), "promote");
        } else if (!truthy(scalar(p.value()))) {
          return make_error(Errc::refused, "promote " + cfg_.name + ": pg_promote refused to signal the promotion");
        }
        next_request = now() + 100ms;
      }
      auto r = sql("SELECT pg_is_in_recovery()", deadline);
      if (!r) return named(r.error(), "promote");
      if (!truthy(scalar(r.value()))) break;
      if (ms_left(deadline) <= 5)
        return make_error(Errc::timeout, "promote " + cfg_.name + ": still in recovery when the time ran out");
      std::this_thread::sleep_for(5ms);
    }
  }
  auto w = wait_writable(deadline);
  if (w) stopped_by_fence_ = false;
  return w;
}

Status PostgresNode::fence_sql(SteadyTime deadline, int& terminated) {
  for (const char* step : {"ALTER SYSTEM SET default_transaction_read_only = on", "SELECT pg_reload_conf()"}) {
    auto r = sql(step, deadline);
    if (!r) return r.error();
  }
  // New sessions fork from the postmaster: once one sees "on", it has reloaded.
  for (;;) {
    auto r = fresh_sql("SELECT current_setting('default_transaction_read_only')", deadline);
    if (r && truthy(scalar(r.value()))) break;
    if (ms_left(deadline) <= 10)
      return make_error(Errc::timeout, "the server did not apply default_transaction_read_only in time");
    std::this_thread::sleep_for(10ms);
  }
  // Transactions that began read-write keep their mode: end every other client session.
  auto t = sql(
      "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
      " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()",
      deadline);
  if (!t) return t.error();
  terminated = static_cast<int>(num(scalar(t.value())).value_or(0));
  // Proof: a new session cannot write.
  auto params = conn_params();
  if (!params) return params.error();
  pg::PgConn check(std::move(params.value()), secrets());
  auto w = check.query("CREATE TEMP TABLE drd_fence_check (x int)", deadline);
  if (w) return make_error(Errc::conflict, "a new session can still write after setting read-only");
  if (check.sqlstate() != "25006") return w.error();  // not the read-only refusal we expect
  return ok_status();
}

Status PostgresNode::fence_local(SteadyTime deadline, const std::string& why) {
  if (auto n = need_local("fence"); !n) return n;
  bool was_running = false;
  auto s = stop_server(deadline, &was_running, /*immediate=*/true);
  if (!s) return s;
  stopped_by_fence_ = true;
  last_action_ = was_running ? "server stopped at once with pg_ctl (-m immediate)" + why : "server already stopped";
  return ok_status();
}

Status PostgresNode::fence(Millis timeout) { return fence_impl(timeout, true); }

Status PostgresNode::fence_keep_running(Millis timeout) { return fence_impl(timeout, false); }

Status PostgresNode::fence_impl(Millis timeout, bool may_stop_at_once) {
  const auto t0 = now();
  const bool local = cfg_.data_dir && cfg_.bin_dir;
  tool_log_.clear();
  // Keep time for the local fallback when there is one.
  const auto sql_deadline = local ? t0 + timeout / 2 : t0 + timeout;
  // Synchronous replication on: COMMITs may be waiting for a standby, and ending their sessions
  // would finish them locally for others to see and acknowledge on top of. A local server is
  // stopped at once instead (pg::fence_method says why); read-only is written first so that it
  // starts fenced whoever starts it (LocalFence also writes it to the file afterwards).
  std::optional<bool> sync_names;
  if (may_stop_at_once) {
    auto q = sql("SELECT current_setting('synchronous_standby_names') <> ''",
                 std::min(sql_deadline, t0 + std::max(timeout / 8, Millis(500))));
    if (q) sync_names = truthy(scalar(q.value()));
  }
  if (may_stop_at_once && pg::fence_method(local, sync_names) == pg::FenceMethod::stop_immediate) {
    const auto ro_deadline = std::min(sql_deadline, t0 + std::max(timeout / 8, Millis(500)));
    auto ro = sync_names ? sql("ALTER SYSTEM SET default_transaction_read_only = on", ro_deadline)
                         : Result<Rows>(make_error(Errc::unavailable, "the server did not answer"));
    if (!ro)
      spdlog::warn("fence {}: could not set default_transaction_read_only before stopping it ({})", cfg_.name,
                   pg::scrub(ro.error().message, secrets()));
    conn_.reset();  // dies with the server
    auto l = fence_local(t0 + timeout, sync_names ? ": synchronous replication is on, so no session was "
                                                    "ended one by one"
                                                  : ": it did not answer SQL");
    if (!l) return make_error(l.error().code, "fence " + cfg_.name + ": could not stop it: " + l.error().message);
    spdlog::info("fence {}: {}", cfg_.name, last_action_);
    return l;
  }
  if (sync_names.value_or(false))
    spdlog::warn("fence {}: synchronous replication is on but the server is not on this host (no data_dir/bin_dir): "
                 "ending its sessions may let a COMMIT waiting for the standby finish locally",
                 cfg_.name);
  int terminated = 0;
  auto s = fence_sql(sql_deadline, terminated);
  if (s) {
    last_action_ = "read-only set (default_transaction_read_only=on), " + std::to_string(terminated) +
                   " client session(s) terminated";
    spdlog::info("fence {}: {}", cfg_.name, last_action_);
    return s;
  }
  const std::string why = pg::scrub(s.error().message, secrets());
  if (!local)
    return make_error(s.error().code,
                      "fence " + cfg_.name + ": could not make it read-only (" + why +
                          ") and no data_dir/bin_dir is configured to stop it locally",
                      "stop the server by hand, or configure data_dir and bin_dir for this node");
  spdlog::warn("fence {}: SQL fencing failed ({}); stopping the server with pg_ctl", cfg_.name, why);
  conn_.reset();
  auto l = fence_local(t0 + timeout);
  if (!l)
    return make_error(l.error().code, "fence " + cfg_.name + ": could not make it read-only (" + why +
                                          ") nor stop it: " + l.error().message);
  spdlog::info("fence {}: {}", cfg_.name, last_action_);
  return l;
}

Status PostgresNode::unfence(Millis timeout) {
  const auto deadline = now() + timeout;
  tool_log_.clear();
  if (stopped_by_fence_ && cfg_.data_dir && cfg_.bin_dir) {
    auto running = server_running(deadline);
    if (running && !running.value()) {
      auto st = start_server(deadline);
      if (!st) return st;
      last_action_ = "server started again with pg_ctl";
    }
  }
  for (const char* step : {"ALTER SYSTEM RESET default_transaction_read_only", "SELECT pg_reload_conf()"}) {
    auto r = sql(step, deadline);
    if (!r) return named(r.error(), "unfence");
  }
  for (;;) {
    auto r = fresh_sql("SELECT current_setting('default_transaction_read_only')", deadline);
    if (r && !truthy(scalar(r.value()))) break;
    if (ms_left(deadline) <= 10)
      return make_error(Errc::timeout, "unfence " + cfg_.name + ": the server still has default_transaction_read_only on");
    std::this_thread::sleep_for(10ms);
  }
  stopped_by_fence_ = false;
  last_action_ = last_action_ == "server started again with pg_ctl" ? "server started again, read-write"
                                                                     : "read-write again";
  return ok_status();
}

Status PostgresNode::wait_streaming_from(const NodeConfig& primary, SteadyTime deadline) {
  auto params = pg::parse_conninfo(primary.pg_conninfo);
  if (!params) return params.error();
  const std::string want_port = pg::param(params.value(), "port").value_or("5432");
  std::string last = "no wal receiver";
  for (;;) {
    auto r = sql("SELECT status, coalesce(sender_host, ''), coalesce(sender_port::text, '')"
                 " FROM pg_stat_wal_receiver",
                 deadline);
    if (r && !r->empty() && !r->back().rows.empty()) {
      const auto& row = r->back().rows[0];
      const std::string status = row[0].value_or(""), port = row[2].value_or("");
      last = "wal receiver " + status + " from " + row[1].value_or("") + ":" + port;
      // Matched by port: sender_host may spell the same host differently (name/address).
      if (status == "streaming" && port == want_port) {
        // Streaming alone is not proof: a standby ahead of the fork point
        // reconnects on the old timeline in a loop. Require the primary's timeline.
        auto rt = sql("SELECT received_tli FROM pg_stat_wal_receiver", deadline);
        auto pt = remote_sql(primary,
                             "SELECT CASE WHEN pg_is_in_recovery() THEN NULL"
                             " ELSE substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8) END",
                             deadline);
        std::optional<long> mine, theirs;
        if (rt) if (auto v = num(scalar(rt.value()))) mine = static_cast<long>(*v);
        if (pt) if (auto v = scalar(pt.value())) theirs = std::stol(*v, nullptr, 16);
        if (!theirs || (mine && *mine >= *theirs)) return ok_status();
        last += " on timeline " + (mine ? std::to_string(*mine) : std::string("?")) + ", primary on " +
                std::to_string(*theirs);
      }
    } else if (!r) {
      last = r.error().message;
    } else {
      last = "no wal receiver running";
    }
    if (ms_left(deadline) <= 50)
      return make_error(Errc::timeout,
                        cfg_.name + " is not streaming from " + primary.name + " in time (" +
                            pg::scrub(last, secrets()) + ")",
                        "check the standby's log; if its timeline diverged, rejoin it with pg_rewind");
    std::this_thread::sleep_for(50ms);
  }
}

Status PostgresNode::follow(const NodeConfig& primary, Millis timeout) {
  const auto deadline = now() + timeout;
  auto st = sql("SELECT pg_is_in_recovery()", deadline);
  if (!st) return named(st.error(), "follow");
  if (!truthy(scalar(st.value())))
    return make_error(Errc::refused,
                      "follow: " + cfg_.name + " is a primary (not in recovery) and cannot follow " +
                          primary.name + " without a rewind",
                      "run `drctl rejoin " + cfg_.name + "` (pg_rewind) instead");
  auto conninfo = pg::primary_conninfo_for(primary, cfg_.name);
  if (!conninfo) return named(conninfo.error(), "follow");
  auto a = sql("ALTER SYSTEM SET primary_conninfo = " + pg::sql_literal(conninfo.value()), deadline);
  if (!a) return named(a.error(), "follow");
  auto b = sql("SELECT pg_reload_conf()", deadline);
  if (!b) return named(b.error(), "follow");
  // A paused replay cannot reach the new primary's timeline: waiting would only hold up the
  // caller (a failover) until its timeout. It follows once an operator resumes it.
  if (auto p = sql("SELECT pg_get_wal_replay_pause_state()", deadline); p && scalar(p.value()) &&
                                                                       *scalar(p.value()) != "not paused")
    return make_error(Errc::refused, "follow " + primary.name + ": WAL replay is paused on " + cfg_.name +
                                         " (primary_conninfo is set; it follows once replay is resumed)",
                      "SELECT pg_wal_replay_resume() on " + cfg_.name);
  return wait_streaming_from(primary, deadline);
}

Status PostgresNode::set_synchronous_standby_names(std::string value, Millis timeout) {
  const auto deadline = now() + timeout;
  const std::string stmt = value.empty() ? "ALTER SYSTEM RESET synchronous_standby_names"
                                         : "ALTER SYSTEM SET synchronous_standby_names = " + pg::sql_literal(value);
  for (const std::string& step : {stmt, std::string("SELECT pg_reload_conf()")}) {
    auto r = sql(step, deadline);
    if (!r) return named(r.error(), "set synchronous_standby_names on");
  }
  return ok_status();
}

}  // namespace drd
