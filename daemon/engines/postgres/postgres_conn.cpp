#include "daemon/engines/postgres/postgres_conn.hpp"

#include <libpq-fe.h>
#include <poll.h>

#include <algorithm>
#include <cerrno>

namespace drd::pg {
namespace {
void quiet_notices(void*, const PGresult*) {}  // server NOTICEs must not reach stderr

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r')) s.pop_back();
  return s;
}
}  // namespace

long long ms_left(SteadyTime deadline) {
  auto d = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
  return d.count() > 0 ? d.count() : 0;
}

PgConn::PgConn(ConnParams params, std::vector<std::string> secrets)
    : params_(std::move(params)), secrets_(std::move(secrets)) {}

PgConn::~PgConn() { close(); }

void PgConn::close() {
  if (conn_) PQfinish(conn_);  // non-blocking mode: the Terminate message is best effort
  conn_ = nullptr;
  pending_ = false;
}

bool PgConn::connected() const { return conn_ && PQstatus(conn_) == CONNECTION_OK; }

int PgConn::backend_pid() const { return connected() ? PQbackendPID(conn_) : 0; }

Error PgConn::fail(Errc code, const std::string& what) {
  std::string msg = what;
  if (conn_) {
    // Connection errors are printed verbosely (see connect()): the server's code is kept
    // apart, the text is what the default verbosity prints.
    auto split = split_verbose_error(trim(PQerrorMessage(conn_)));
    if (!split.sqlstate.empty()) sqlstate_ = split.sqlstate;
    if (!split.message.empty()) msg += ": " + split.message;
  }
  close();
  return make_error(code, scrub(msg, secrets_));
}

bool PgConn::wait_socket(bool for_write, SteadyTime deadline) {
  for (;;) {
    int fd = PQsocket(conn_);
    if (fd < 0) return true;  // let libpq report the problem
    pollfd p{fd, static_cast<short>(for_write ? POLLOUT : POLLIN), 0};
    long long left = ms_left(deadline);
    if (left <= 0) return false;
    if (abort_) {
      if (abort_->load()) return false;
      left = std::min(left, 10LL);  // look at the flag again soon
    }
    int rc = ::poll(&p, 1, static_cast<int>(left > 60'000 ? 60'000 : left));
    if (rc > 0) return true;
    if (rc < 0 && errno != EINTR) return true;
  }
}

Status PgConn::connect(SteadyTime deadline) {
  fresh_ = false;
  if (connected()) return ok_status();
  close();
  std::vector<const char*> keys, vals;
  for (const auto& [k, v] : params_) {
    keys.push_back(k.c_str());
    vals.push_back(v.c_str());
  }
  keys.push_back(nullptr);
  vals.push_back(nullptr);
  sqlstate_.clear();
  conn_ = PQconnectStartParams(keys.data(), vals.data(), 1);
  if (!conn_) return make_error(Errc::internal, "libpq could not allocate a connection");
  // The server's refusal ("too many clients", "shutting down") carries a SQLSTATE that libpq
  // prints only verbosely; fail() takes it out of the text again.
  PQsetErrorVerbosity(conn_, PQERRORS_VERBOSE);
  if (PQstatus(conn_) == CONNECTION_BAD) return fail(Errc::unavailable, "connection failed");
  PostgresPollingStatusType st = PGRES_POLLING_WRITING;
  for (;;) {
    if (st == PGRES_POLLING_OK) break;
    if (st == PGRES_POLLING_FAILED) return fail(Errc::unavailable, "connection failed");
    if (!wait_socket(st == PGRES_POLLING_WRITING, deadline))
      return fail(Errc::timeout, "connection timed out (no answer from the server in time)");
    st = PQconnectPoll(conn_);
  }
  PQsetErrorVerbosity(conn_, PQERRORS_DEFAULT);
  PQsetnonblocking(conn_, 1);
  PQsetNoticeReceiver(conn_, quiet_notices, nullptr);
  fresh_ = true;
  return ok_status();
}

bool PgConn::drain(SteadyTime deadline) {
  for (;;) {
    while (PQisBusy(conn_)) {
      if (!wait_socket(false, deadline)) return false;
      if (!PQconsumeInput(conn_)) {
        close();  // lost meanwhile: the caller reconnects
        return true;
      }
    }
    PGresult* r = PQgetResult(conn_);
    if (!r) break;
    PQclear(r);
  }
  pending_ = false;
  return true;
}

Result<std::vector<ResultSet>> PgConn::query(const std::string& sql, SteadyTime deadline) {
  sqlstate_.clear();
  if (pending_ && conn_) {
    // The answer to a query that timed out earlier comes first on this session.
    if (!drain(deadline)) return make_error(Errc::timeout, "query timed out (the server has not answered an earlier query on this session)");
  }
  if (auto c = connect(deadline); !c) return c.error();
  if (!PQsendQuery(conn_, sql.c_str())) return fail(Errc::unavailable, "could not send the query");
  for (;;) {  // flush the query out
    int f = PQflush(conn_);
    if (f == 0) break;
    if (f < 0) return fail(Errc::unavailable, "could not send the query");
    if (!wait_socket(true, deadline)) return fail(Errc::timeout, "query timed out while sending");
  }
  std::vector<ResultSet> out;
  std::optional<Error> first_error;
  for (;;) {
    while (PQisBusy(conn_)) {
      if (!wait_socket(false, deadline)) {
        // Keep the session: its answer is read (and discarded) by the next query.
        pending_ = true;
        return make_error(Errc::timeout, "query timed out (no answer from the server in time)");
      }
      if (!PQconsumeInput(conn_)) return fail(Errc::unavailable, "connection lost");
    }
    PGresult* r = PQgetResult(conn_);
    if (!r) break;
    auto st = PQresultStatus(r);
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
      ResultSet rs;
      rs.command_status = PQcmdStatus(r);
      int nf = PQnfields(r), nt = PQntuples(r);
      for (int c = 0; c < nf; ++c) rs.columns.emplace_back(PQfname(r, c));
      for (int t = 0; t < nt; ++t) {
        std::vector<std::optional<std::string>> row;
        for (int c = 0; c < nf; ++c)
          row.push_back(PQgetisnull(r, t, c) ? std::nullopt : std::optional<std::string>(PQgetvalue(r, t, c)));
        rs.rows.push_back(std::move(row));
      }
      out.push_back(std::move(rs));
    } else if (!first_error) {
      const char* state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
      sqlstate_ = state ? state : "";
      std::string msg = trim(PQresultErrorMessage(r));
      if (msg.empty()) msg = PQresStatus(st);
      first_error = make_error(Errc::refused, scrub(msg, secrets_));
    }
    PQclear(r);
  }
  if (PQstatus(conn_) != CONNECTION_OK) {
    std::string msg = first_error ? first_error->message : std::string("connection lost");
    close();
    return make_error(Errc::unavailable, msg);
  }
  if (first_error) return *first_error;
  return out;
}

}  // namespace drd::pg
