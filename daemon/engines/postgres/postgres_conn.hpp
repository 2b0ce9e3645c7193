#pragma once
// PgConn: one libpq connection driven non-blocking against a hard deadline.
//
// Why: a SIGSTOPped or network-partitioned server accepts the TCP connection
// (or keeps an established one) and then never answers; blocking libpq calls
// would hang the node's worker. Connecting uses PQconnectStartParams +
// PQconnectPoll, queries PQsendQuery + PQconsumeInput, all waiting in poll()
// only until the caller's deadline. A broken connection is dropped and the next
// call reconnects. A query that times out keeps its session (never cancelled:
// PQcancel blocks): the next call first waits (within its own deadline) for the
// late answer, discards it and goes on with the same session. A session is worth
// keeping: a server whose connection slots are all taken would refuse a new one.
//
// Limits: host names are resolved synchronously inside libpq (use addresses or
// a local resolver). Ownership: owns the PGconn. Threading: one thread at a time.
// Failure: every error message is scrubbed of the password it was given.
#include <atomic>
#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.hpp"
#include "common/result.hpp"
#include "daemon/engines/postgres/postgres_util.hpp"

struct pg_conn;

namespace drd::pg {

struct ResultSet {
  std::vector<std::string> columns;
  std::vector<std::vector<std::optional<std::string>>> rows;  // nullopt = SQL NULL
  std::string command_status;                                 // "INSERT 0 1", "SELECT 1", ...
};

class PgConn {
 public:
  // `params` are passed to PQconnectStartParams with expand_dbname (so a
  // "dbname" holding a URI is expanded). `secrets` are scrubbed from errors.
  PgConn(ConnParams params, std::vector<std::string> secrets);
  ~PgConn();
  PgConn(const PgConn&) = delete;
  PgConn& operator=(const PgConn&) = delete;

  // Connects unless already connected. Errc::timeout past the deadline,
  // Errc::unavailable when the server refuses; sqlstate() then holds the code the
  // server refused with ("" when it sent none: nothing listens, no answer).
  Status connect(SteadyTime deadline);
  // Sends `sql` (one or more statements) and returns one ResultSet per
  // statement. Connects first when needed. A failed statement returns an Error
  // carrying the server's message; sqlstate() then holds its code.
  Result<std::vector<ResultSet>> query(const std::string& sql, SteadyTime deadline);
  void close();
  bool connected() const;
  // A query of this session timed out and its answer has not been read yet.
  bool pending() const { return pending_; }
  // Whether the last connect() made a new connection (rather than reusing one).
  bool fresh() const { return fresh_; }
  const std::string& sqlstate() const { return sqlstate_; }
  // Server process id of this session (0 when not connected).
  int backend_pid() const;
  // While *abort is true every wait gives up within ~10 ms as if its deadline
  // had passed (a tick's probe makes way for a failover). nullptr = never.
  void set_abort(const std::atomic<bool>* abort) { abort_ = abort; }

 private:
  Error fail(Errc code, const std::string& what);
  bool wait_socket(bool for_write, SteadyTime deadline);
  // Reads and discards the answer of a query that timed out earlier. false: not in time.
  bool drain(SteadyTime deadline);

  ConnParams params_;
  std::vector<std::string> secrets_;
  pg_conn* conn_ = nullptr;
  bool fresh_ = false;
  bool pending_ = false;
  std::string sqlstate_;
  const std::atomic<bool>* abort_ = nullptr;
};

// Milliseconds left until `deadline` (0 when past).
long long ms_left(SteadyTime deadline);

}  // namespace drd::pg
