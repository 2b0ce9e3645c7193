// drd-pg-writer: how an application follows a drd failover on PostgreSQL.
//
// It connects with a libpq multi-host URI and target_session_attrs=read-write
// (libpq tries each host and keeps the one that accepts writes), inserts one
// row per transaction, and appends every acknowledged id to --ack as
// "id unix_ms port" (port = the server that acknowledged it). On any error, or
// when a statement gets no answer within --op-timeout (a frozen server keeps
// the TCP connection open), it drops the connection, reconnects through the
// URI and retries the same id (INSERT ... ON CONFLICT DO NOTHING makes the
// retry of a commit whose answer was lost harmless).
//
//   drd-pg-writer --url "postgresql://app@10.0.0.1:5432,10.0.0.2:5432/app?target_session_attrs=read-write&connect_timeout=2"
//       --duration 30 --ack acks.txt
#include <libpq-fe.h>
#include <poll.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  std::string url;
  double rate = 0;        // transactions per second, 0 = as fast as possible
  double duration = 5;    // seconds
  std::string ack;        // file of acknowledged ids ("id unix_ms port")
  long long start_id = 1;
  int op_timeout_ms = 1000;
  std::string table = "drd_writer";
};

long long now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

int usage() {
  std::fprintf(stderr,
               "usage: drd-pg-writer --url CONNINFO [--rate N] [--duration S] [--ack FILE] [--start-id N]\n"
               "                     [--op-timeout MS] [--table NAME]\n");
  return 2;
}

// Runs `sql` with parameters and waits at most `timeout_ms` for its result.
// Returns true on success; on failure fills `err` (the caller drops the connection).
bool run(PGconn* c, const std::string& sql, const std::string* param, int timeout_ms, std::string& err) {
  const char* values[1] = {param ? param->c_str() : nullptr};
  if (!PQsendQueryParams(c, sql.c_str(), param ? 1 : 0, nullptr, param ? values : nullptr, nullptr, nullptr, 0)) {
    err = PQerrorMessage(c);
    return false;
  }
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  bool ok = true;
  for (;;) {
    while (!PQisBusy(c)) {
      PGresult* r = PQgetResult(c);
      if (!r) return ok;
      auto st = PQresultStatus(r);
      if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        ok = false;
        err = PQresultErrorMessage(r);
      }
      PQclear(r);
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      err = "no answer within " + std::to_string(timeout_ms) + " ms";
      return false;
    }
    pollfd p{PQsocket(c), POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left)) < 0 || !PQconsumeInput(c)) {
      err = PQerrorMessage(c);
      return false;
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    const char* v = i + 1 < argc ? argv[++i] : nullptr;
    if (!v) return usage();
    if (a == "--url") o.url = v;
    else if (a == "--rate") o.rate = std::atof(v);
    else if (a == "--duration") o.duration = std::atof(v);
    else if (a == "--ack") o.ack = v;
    else if (a == "--start-id") o.start_id = std::atoll(v);
    else if (a == "--op-timeout") o.op_timeout_ms = std::atoi(v);
    else if (a == "--table") o.table = v;
    else return usage();
  }
  if (o.url.empty()) return usage();
  FILE* ack = o.ack.empty() ? nullptr : std::fopen(o.ack.c_str(), "a");
  if (!o.ack.empty() && !ack) {
    std::fprintf(stderr, "drd-pg-writer: cannot open %s: %s\n", o.ack.c_str(), std::strerror(errno));
    return 1;
  }
  const std::string create = "CREATE TABLE IF NOT EXISTS " + o.table +
                             " (id bigint PRIMARY KEY, url text, size bigint, at timestamptz DEFAULT now())";
  const std::string insert = "INSERT INTO " + o.table +
                             " (id, url, size) VALUES ($1::bigint, 'http://crawler.test/img/' || $1 || '.jpg',"
                             " $1::bigint * 7) ON CONFLICT (id) DO NOTHING";
  const auto start = Clock::now();
  const auto end = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.duration));
  long long id = o.start_id, acked = 0, reconnects = 0, max_gap_ms = 0;
  auto last_ack = Clock::now();
  PGconn* c = nullptr;
  std::string port, err, last_error;
  while (Clock::now() < end) {
    if (!c) {
      c = PQconnectdb(o.url.c_str());  // libpq walks the hosts; connect_timeout bounds each one
      if (PQstatus(c) != CONNECTION_OK) {
        last_error = PQerrorMessage(c);
        PQfinish(c);
        c = nullptr;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
        continue;
      }
      port = PQport(c);
      if (!run(c, create, nullptr, o.op_timeout_ms, err)) {
        last_error = err;
        PQfinish(c);
        c = nullptr;
        continue;
      }
    }
    const std::string ids = std::to_string(id);
    if (run(c, insert, &ids, o.op_timeout_ms, err)) {
      auto t = Clock::now();
      max_gap_ms = std::max<long long>(max_gap_ms,
                                       std::chrono::duration_cast<std::chrono::milliseconds>(t - last_ack).count());
      last_ack = t;
      if (ack) {
        std::fprintf(ack, "%lld %lld %s\n", id, now_ms(), port.c_str());
        std::fflush(ack);
      }
      ++acked;
      ++id;
      if (o.rate > 0) {
        auto due = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(double(acked) / o.rate));
        std::this_thread::sleep_until(due);
      }
      continue;
    }
    // Read-only now (fenced), server gone, or frozen: find the primary again.
    last_error = err;
    PQfinish(c);
    c = nullptr;
    ++reconnects;
  }
  if (c) PQfinish(c);
  if (ack) std::fclose(ack);
  std::printf("{\"acked\": %lld, \"last_id\": %lld, \"reconnects\": %lld, \"max_gap_ms\": %lld}\n", acked, id - 1,
              reconnects, max_gap_ms);
  return 0;
}
