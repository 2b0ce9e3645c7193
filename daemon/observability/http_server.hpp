#pragma once
// The HTTP endpoint (`http.listen`): /metrics, /health, /primary[/NODE],
// /replica/NODE[?lag=BYTES], /status.json, /alerts.json and the status page "/".
//
// Threading: Boost.Beast async on the daemon's io_context; each connection has
// its own strand. The providers are ALWAYS invoked on `callback_executor` (the
// daemon's control strand), never concurrently, and only to copy data out;
// rendering happens back on the connection's strand. If the callback strand
// does not answer within `callback_timeout` the request gets 503 — so a stalled
// control loop makes /health fail instead of hanging.
//
// Limits: request header at most 8 KiB (else 431), body never read, 5 s to
// send the request, at most 64 connections at once (extra ones are closed at
// once), one request per connection (Connection: close).
//
// Auth: with a token, every path but /health needs "Authorization: Bearer TOKEN"
// (compared in constant time); otherwise 401.
//
// Lifetime: stop() closes the listener and every open connection, and from
// then on the providers are never called again (requests in flight get 503).
// Call stop() on the callback executor (or once the io_context has stopped) so
// that no provider call is running at that moment; pending handlers keep the
// shared state alive, so destroying the server after stop() is safe even while
// the io_context still runs.
#include <boost/asio.hpp>
#include <boost/json.hpp>

#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/clock.hpp"
#include "common/result.hpp"
#include "common/units.hpp"
#include "daemon/observability/prometheus.hpp"
#include "daemon/observability/recorder.hpp"

namespace drd::monitoring {

struct HttpProviders {
  std::function<bool()> alive;                            // /health: the control loop is alive
  std::function<boost::json::value()> status;             // the `status` RPC's result
  std::function<boost::json::value()> alerts;             // the `alerts` RPC's result
  std::function<PrometheusSnapshot()> metrics;            // /metrics
  std::function<std::vector<ChartSeries>(SysTime)> chart; // the status page's charts
  std::function<SysTime()> now;                           // wall clock (default: system clock)
};

struct HttpServerOptions {
  std::string listen = "127.0.0.1:8008";  // HOST:PORT; port 0 picks a free one (tests)
  std::string token;                      // empty = no authentication
  std::size_t max_connections = 64;
  Millis read_timeout{5000};
  std::size_t header_limit = 8192;
  Millis callback_timeout{2000};
};

// Reads a bearer token file: the first line, surrounding whitespace trimmed. Refuses an empty
// or unreadable file; warns (log) when others may read it. The token is never logged. `key`,
// the configuration key that named the file, starts every message.
Result<std::string> read_token_file(const std::filesystem::path& file, const std::string& key = "http.token_file");

// "a == b" in time that depends only on the lengths.
bool constant_time_equal(const std::string& a, const std::string& b);

class HttpServer {
 public:
  HttpServer(boost::asio::io_context& io, boost::asio::any_io_executor callback_executor, HttpServerOptions options,
             HttpProviders providers);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds and starts accepting. Errors name the address (bad HOST:PORT, address in use, ...).
  Status start();
  void stop();  // idempotent; thread-safe
  unsigned short port() const;  // the bound port (after start)

  struct Shared;  // state shared with the connections (defined in the .cpp)

 private:
  boost::asio::io_context& io_;
  std::shared_ptr<Shared> shared_;
};

}  // namespace drd::monitoring
