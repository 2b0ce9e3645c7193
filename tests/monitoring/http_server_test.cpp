// The HTTP endpoint on a real loopback socket: routes, token, limits, a stalled
// control strand, and the Monitoring facade end to end.
#include <catch2/catch.hpp>

#include <boost/asio.hpp>

#include <sys/socket.h>

#include <atomic>
#include <mutex>
#include <thread>

#include "common/process.hpp"
#include "daemon/observability/http_client.hpp"
#include "daemon/observability/http_server.hpp"
#include "daemon/observability/monitoring.hpp"
#include "tests/monitoring/receiver.hpp"
#include "tests/support/temp_dir.hpp"

using namespace drd;
using namespace drd::monitoring;
using namespace std::chrono_literals;
namespace json = boost::json;
namespace asio = boost::asio;

namespace {

json::value cluster(const std::string& primary, double lag_b = 50) {
  json::object s{{"primary", primary}, {"term", 2}, {"monitoring", true}, {"auto_failover", true}};
  json::array nodes;
  for (const char* n : {"a", "b", "c"}) {
    const bool is_p = primary == n;
    const bool down = std::string(n) == "c";
    nodes.push_back(json::object{{"name", n},
                                 {"role", is_p ? "primary" : down ? "down" : "standby"},
                                 {"healthy", !down},
                                 {"connection", down ? "failed" : "ok"},
                                 {"engine", "sqlite"},
                                 {"response_time_ms", 1.5},
                                 {"lag_bytes", is_p ? 0 : lag_b},
                                 {"lag_ms", 0}});
  }
  s["nodes"] = std::move(nodes);
  return s;
}

// An io_context on two threads plus a strand standing in for the control strand.
struct Loop {
  asio::io_context io;
  asio::strand<asio::io_context::executor_type> control{asio::make_strand(io)};
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work{io.get_executor()};
  std::vector<std::thread> threads;
  Loop() {
    for (int i = 0; i < 2; ++i) threads.emplace_back([this] { io.run(); });
  }
  ~Loop() {
    work.reset();
    io.stop();
    for (auto& t : threads) t.join();
  }
};

struct Fixture {
  Loop loop;
  std::mutex mu;
  json::value status = cluster("a");
  bool alive = true;
  std::atomic<int> calls_off_strand{0};
  std::unique_ptr<HttpServer> server;
  MetricsRecorder rec;

  explicit Fixture(HttpServerOptions o = {}) {
    o.listen = "127.0.0.1:0";
    HttpProviders p;
    auto check = [this] {
      if (!loop.control.running_in_this_thread()) ++calls_off_strand;
    };
    p.alive = [this, check] { check(); std::lock_guard lk(mu); return alive; };
    p.status = [this, check] { check(); std::lock_guard lk(mu); return status; };
    p.alerts = [check] { check(); return json::value(json::object{{"firing", json::array{}}}); };
    p.metrics = [this, check] {
      check();
      PrometheusSnapshot s;
      s.primary = "a";
      s.nodes.push_back(NodeMetrics{"a", "primary", "sqlite", true, 1.5, std::nullopt, std::nullopt, {}});
      s.process = read_process_stats();
      return s;
    };
    p.chart = [this, check](SysTime now) { check(); return rec.chart(now, {"a", "b", "c"}); };
    server = std::make_unique<HttpServer>(loop.io, loop.control, o, p);
    REQUIRE(server->start().ok());
  }
  ~Fixture() { server->stop(); }

  HttpResponse get(const std::string& path, std::vector<std::pair<std::string, std::string>> headers = {},
                   const std::string& method = "GET") {
    HttpRequest r;
    r.method = method;
    r.headers = std::move(headers);
    r.timeout = 5s;
    auto res = http_request(parse_http_url("http://127.0.0.1:" + std::to_string(server->port()) + path).value(), r);
    REQUIRE(res.ok());
    return res.value();
  }
  void set_status(json::value v) {
    std::lock_guard lk(mu);
    status = std::move(v);
  }
};

int raw_connect(unsigned short port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  return fd;
}

}  // namespace

TEST_CASE("/primary/NODE flips with the provider, /replica honours ?lag", "[http]") {
  Fixture f;
  CHECK(f.get("/primary/a").status == 200);
  CHECK(f.get("/primary/b").status == 503);
  CHECK(f.get("/primary/c").status == 503);
  CHECK(f.get("/primary/nope").status == 404);
  auto any = f.get("/primary");
  CHECK(any.status == 200);
  CHECK(any.body == "a\n");

  f.set_status(cluster("b"));
  CHECK(f.get("/primary/a").status == 503);
  CHECK(f.get("/primary/b").status == 200);
  CHECK(f.get("/primary").body == "b\n");

  CHECK(f.get("/replica/a").status == 200);
  CHECK(f.get("/replica/b").status == 503);  // the primary is not a replica
  CHECK(f.get("/replica/c").status == 503);  // down
  CHECK(f.get("/replica/a?lag=100").status == 200);
  CHECK(f.get("/replica/a?lag=10").status == 503);
  CHECK(f.get("/replica/a?lag=1KB").status == 200);
  CHECK(f.get("/replica/a?lag=abc").status == 400);
  CHECK(f.calls_off_strand == 0);
}

TEST_CASE("/health follows the callback, /metrics, /status.json and HEAD", "[http]") {
  Fixture f;
  CHECK(f.get("/health").status == 200);
  {
    std::lock_guard lk(f.mu);
    f.alive = false;
  }
  CHECK(f.get("/health").status == 503);
  auto m = f.get("/metrics");
  CHECK(m.status == 200);
  CHECK(m.header("Content-Type") == "text/plain; version=0.0.4; charset=utf-8");
  CHECK(m.body.find("drd_node_up{node=\"a\",engine=\"sqlite\"} 1\n") != std::string::npos);
  CHECK(m.body.find("process_open_fds ") != std::string::npos);
  auto s = f.get("/status.json");
  CHECK(json::parse(s.body).as_object().at("primary").as_string() == "a");
  CHECK(f.get("/nothing-here").status == 404);
  auto head = f.get("/primary/a", {}, "HEAD");
  CHECK(head.status == 200);
  CHECK(head.body.empty());
  CHECK(f.get("/metrics", {}, "POST").status == 405);
  CHECK(f.calls_off_strand == 0);
}

TEST_CASE("the status page has an svg polyline per node", "[http]") {
  Fixture f;
  const SysTime now = std::chrono::system_clock::now();
  for (int i = 0; i < 30; ++i) f.rec.on_probe("a", now - std::chrono::seconds(60 * i), true, i);
  auto r = f.get("/");
  CHECK(r.status == 200);
  CHECK(r.header("Content-Type") == "text/html; charset=utf-8");
  std::size_t polylines = 0, svgs = 0;
  for (auto p = r.body.find("<polyline"); p != std::string::npos; p = r.body.find("<polyline", p + 1)) ++polylines;
  // One chart per node (the primary's crown is a small svg of its own, without xmlns).
  for (auto p = r.body.find("<svg xmlns"); p != std::string::npos; p = r.body.find("<svg xmlns", p + 1)) ++svgs;
  CHECK(svgs == 3);
  CHECK(polylines == 3);
  CHECK(r.body.find("http-equiv=\"refresh\" content=\"5\"") != std::string::npos);
}

TEST_CASE("a bearer token guards everything but /health", "[http]") {
  HttpServerOptions o;
  o.token = "s3cret-token";
  Fixture f(o);
  CHECK(f.get("/health").status == 200);
  auto denied = f.get("/metrics");
  CHECK(denied.status == 401);
  CHECK(denied.header("WWW-Authenticate").find("Bearer") == 0);
  CHECK(denied.body.find("s3cret") == std::string::npos);
  CHECK(f.get("/primary/a", {{"Authorization", "Bearer wrong"}}).status == 401);
  CHECK(f.get("/primary/a", {{"Authorization", "Bearer s3cret-token-and-more"}}).status == 401);
  CHECK(f.get("/primary/a", {{"Authorization", "s3cret-token"}}).status == 401);
  CHECK(f.get("/primary/a", {{"Authorization", "Bearer s3cret-token"}}).status == 200);
  CHECK(f.get("/", {{"Authorization", "Bearer s3cret-token"}}).status == 200);
}

TEST_CASE("token files and constant-time comparison", "[http]") {
  test::TempDir dir;
  test::write_file(dir / "t", "  abc123 \n");
  CHECK(read_token_file(dir / "t").value() == "abc123");
  test::write_file(dir / "empty", "\n");
  CHECK_FALSE(read_token_file(dir / "empty"));
  CHECK_FALSE(read_token_file(dir / "missing"));
  // Messages name the key that pointed at the file (a password file is read the same way).
  CHECK(read_token_file(dir / "missing").error().message.rfind("http.token_file: cannot read ", 0) == 0);
  CHECK(read_token_file(dir / "empty", "store.password_file").error().message ==
        "store.password_file: " + (dir / "empty").string() + " is empty");
  CHECK(constant_time_equal("abc", "abc"));
  CHECK_FALSE(constant_time_equal("abc", "abd"));
  CHECK_FALSE(constant_time_equal("abc", "abcd"));
  CHECK_FALSE(constant_time_equal("", "a"));
}

TEST_CASE("limits: oversized header refused, idle connections timed out, connection cap", "[http]") {
  HttpServerOptions o;
  o.read_timeout = 300ms;
  o.max_connections = 2;
  Fixture f(o);
  CHECK(f.get("/health", {{"X-Big", std::string(10 * 1024, 'x')}}).status == 431);
  CHECK(f.get("/health", {{"X-Small", std::string(4 * 1024, 'x')}}).status == 200);

  // An idle connection is closed after the read timeout.
  // (Bounds generous for a loaded, sanitized run: without the timeout the connection stays
  // open and recv gives up after 6 s with -1.)
  int idle = raw_connect(f.server->port());
  timeval tv{6, 0};
  setsockopt(idle, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  const auto start = std::chrono::steady_clock::now();
  char buf[16];
  CHECK(recv(idle, buf, sizeof buf, 0) == 0);  // orderly close by the server
  CHECK(std::chrono::steady_clock::now() - start < 5s);
  close(idle);

  // Two slow clients hold both slots: a third connection gets no answer. On a server of its
  // own whose read timeout outlasts the third request: with 300 ms the two could be timed out
  // (freeing the slots) before the third was accepted, which happened once in a loaded run.
  HttpServerOptions held = o;
  held.read_timeout = 30s;
  Fixture g(held);
  int s1 = raw_connect(g.server->port()), s2 = raw_connect(g.server->port());
  std::this_thread::sleep_for(50ms);
  HttpRequest r;
  r.timeout = 1s;
  auto third = http_request(parse_http_url("http://127.0.0.1:" + std::to_string(g.server->port()) + "/health").value(), r);
  CHECK_FALSE(third.ok());
  close(s1);
  close(s2);
  // The server notices the closes (or times them out) and takes connections again; a fixed
  // 400 ms sleep here failed once under load.
  int status = 0;
  for (auto until = std::chrono::steady_clock::now() + 5s; std::chrono::steady_clock::now() < until;) {
    status = g.get("/health").status;
    if (status == 200) break;
    std::this_thread::sleep_for(100ms);
  }
  CHECK(status == 200);
}

TEST_CASE("a stalled control strand makes /health fail fast instead of hanging", "[http]") {
  HttpServerOptions o;
  o.callback_timeout = 300ms;
  Fixture f(o);
  std::atomic<bool> release{false};
  asio::post(f.loop.control, [&] {
    while (!release) std::this_thread::sleep_for(5ms);
  });
  const auto start = std::chrono::steady_clock::now();
  auto r = f.get("/health");
  CHECK(r.status == 503);
  CHECK(std::chrono::steady_clock::now() - start < 2s);
  release = true;
  std::this_thread::sleep_for(50ms);
  CHECK(f.get("/health").status == 200);
}

TEST_CASE("HttpServer::start names the address it cannot use", "[http]") {
  Loop loop;
  asio::ip::tcp::acceptor busy(loop.io, {asio::ip::make_address("127.0.0.1"), 0});
  HttpServerOptions o;
  o.listen = "127.0.0.1:" + std::to_string(busy.local_endpoint().port());
  HttpServer s(loop.io, loop.control, o, {});
  auto st = s.start();
  REQUIRE_FALSE(st.ok());
  CHECK(st.error().message.find(o.listen) != std::string::npos);
  o.listen = "no-port-here";
  HttpServer s2(loop.io, loop.control, o, {});
  CHECK_FALSE(s2.start().ok());
}

TEST_CASE("Monitoring: probes, alert rules to a webhook, the alerts RPC and HTTP together", "[http][monitoring]") {
  Loop loop;
  test::HttpReceiver rx;
  test::TempDir dir;
  test::write_file(dir / "token", "tok\n");
  Config cfg;
  NodeConfig a;
  a.name = "a";
  a.sqlite_path = dir / "a.db";
  cfg.nodes = {a};
  cfg.http.listen = "127.0.0.1:0";
  cfg.http.token_file = dir / "token";
  AlertChannelConfig ch;
  ch.name = "hook";
  ch.type = "webhook";
  ch.url = rx.url();
  AlertRuleConfig slow;
  slow.name = "slow";
  slow.metric = "response_time_ms";
  slow.op = ">";
  slow.threshold = 100;
  slow.channels = {"hook"};
  AlertRuleConfig disk;
  disk.name = "disk";
  disk.metric = "disk_free_pct";
  disk.op = "<";
  disk.threshold = 101;  // always true: proves disk_free_pct is measured for a's folder
  disk.channels = {"hook"};
  cfg.alerts.channels = {ch};
  cfg.alerts.rules = {slow, disk};

  std::mutex mu;
  double rt = 5;
  RealProcessRunner runner;
  Monitoring::Hooks hooks;
  hooks.status = [&] {
    std::lock_guard lk(mu);
    return json::value(json::object{
        {"primary", "a"},
        {"term", 1},
        {"nodes", json::array{json::object{{"name", "a"}, {"role", "primary"}, {"healthy", true},
                                           {"connection", "ok"}, {"engine", "sqlite"}, {"response_time_ms", rt}}}}});
  };
  hooks.alive = [] { return true; };
  Monitoring mon(loop.io, loop.control, cfg, runner, hooks, "test");
  REQUIRE(mon.start().ok());
  REQUIRE(mon.http_port() != 0);

  const SysTime t0 = std::chrono::system_clock::now();
  mon.on_probe("a", t0, true, 5);
  auto sent = mon.evaluate(t0);
  REQUIRE(sent.size() == 1);
  CHECK(sent[0].rule == "disk");
  {
    std::lock_guard lk(mu);
    rt = 250;
  }
  mon.on_probe("a", t0 + 1s, true, 250);
  sent = mon.evaluate(t0 + 1s);
  REQUIRE(sent.size() == 1);
  CHECK(sent[0].rule == "slow");
  CHECK(mon.alerts_json().as_object().at("firing").as_array().size() == 2);
  REQUIRE(mon.alert_manager().flush(5s));
  CHECK(rx.wait_for(2, 2s));

  auto base = "http://127.0.0.1:" + std::to_string(mon.http_port());
  HttpRequest r;
  r.headers = {{"Authorization", "Bearer tok"}};
  auto metrics = http_request(parse_http_url(base + "/metrics").value(), r);
  REQUIRE(metrics.ok());
  CHECK(metrics->status == 200);
  CHECK(metrics->body.find("drd_alert_firing{rule=\"slow\",node=\"a\",severity=\"warning\"} 1") != std::string::npos);
  CHECK(metrics->body.find("drd_probe_duration_seconds_count{node=\"a\"} 2") != std::string::npos);
  auto alerts = http_request(parse_http_url(base + "/alerts.json").value(), r);
  REQUIRE(alerts.ok());
  CHECK(json::parse(alerts->body).as_object().at("firing").as_array().size() == 2);
  HttpRequest anon;
  CHECK(http_request(parse_http_url(base + "/metrics").value(), anon)->status == 401);
  mon.stop();
}
