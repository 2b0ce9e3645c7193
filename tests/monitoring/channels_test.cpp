// Channels against real receivers: a local HTTP server for webhooks, real
// scripts for exec and a fake sendmail that records what it was given.
#include <catch2/catch.hpp>

#include <sys/socket.h>
#include <sys/stat.h>

#include "common/process.hpp"
#include "daemon/observability/alert_manager.hpp"
#include "daemon/observability/channels.hpp"
#include "tests/monitoring/receiver.hpp"
#include "tests/support/temp_dir.hpp"

using namespace drd;
using namespace drd::monitoring;
using namespace std::chrono_literals;
namespace json = boost::json;

namespace {

const SysTime T0 = SysTime(std::chrono::seconds(1'700'000'000));

AlertRuleConfig down_rule() {
  AlertRuleConfig r;
  r.name = "node_down";
  r.metric = "up";
  r.op = "==";
  r.threshold = 0;
  r.severity = "critical";
  r.channels = {"hook"};
  return r;
}

AlertNotification sample(NotificationKind k = NotificationKind::firing) {
  AlertNotification n;
  n.kind = k;
  n.rule = "slow";
  n.node = "primary";
  n.metric = "response_time_ms";
  n.op = ">";
  n.severity = "warning";
  n.value = 350;
  n.threshold = 200;
  n.time = T0;
  n.since = T0;
  n.message = "response_time_ms on primary is 350 (> 200 for 30s)";
  return n;
}

WebhookOptions fast_options(int retries = 3) {
  WebhookOptions o;
  o.timeout = 2s;
  o.retries = retries;
  o.backoff = 10ms;
  return o;
}

std::string script(const test::TempDir& dir, const std::string& name, const std::string& body) {
  auto p = dir / name;
  test::write_file(p, "#!/bin/sh\n" + body + "\n");
  chmod(p.c_str(), 0755);
  return p.string();
}

}  // namespace

TEST_CASE("webhook: firing and resolved arrive exactly once, with the documented JSON", "[channels]") {
  test::HttpReceiver rx;
  auto hook = std::make_shared<WebhookChannel>("hook", parse_http_url(rx.url()).value(), fast_options());
  AlertManager am({down_rule()}, {{"hook", hook}});

  MetricsSnapshot down, up;
  down.set("secondary1", "up", 0);
  up.set("secondary1", "up", 1);
  CHECK(am.evaluate(up, T0).empty());
  CHECK(am.evaluate(down, T0 + 1s).size() == 1);
  CHECK(am.evaluate(down, T0 + 2s).empty());
  CHECK(am.evaluate(down, T0 + 3s).empty());
  CHECK(am.evaluate(up, T0 + 4s).size() == 1);
  CHECK(am.evaluate(up, T0 + 5s).empty());
  REQUIRE(am.flush(5s));
  REQUIRE(rx.wait_for(2, 2s));
  std::this_thread::sleep_for(50ms);
  auto bodies = rx.bodies();
  REQUIRE(bodies.size() == 2);
  auto first = json::parse(bodies[0]).as_object();
  auto second = json::parse(bodies[1]).as_object();
  CHECK(first.at("rule").as_string() == "node_down");
  CHECK(first.at("node").as_string() == "secondary1");
  CHECK(first.at("severity").as_string() == "critical");
  CHECK(first.at("state").as_string() == "firing");
  CHECK(first.at("value").to_number<double>() == 0);
  CHECK(first.at("threshold").to_number<double>() == 0);
  CHECK(first.at("message").as_string() == "up on secondary1 is 0 (== 0)");
  CHECK(first.at("time").as_string() == "2023-11-14T22:13:21.000Z");
  CHECK(second.at("state").as_string() == "resolved");
  CHECK(second.at("value").to_number<double>() == 1);
  CHECK(hook->stats().delivered == 2);

  // The alerts RPC shape.
  auto a = am.alerts_json().as_object();
  CHECK(a.at("firing").as_array().empty());
  REQUIRE(a.at("recent").as_array().size() == 2);
  auto newest = a.at("recent").as_array()[0].as_object();
  CHECK(newest.at("state").as_string() == "resolved");
  for (const char* k : {"rule", "node", "severity", "state", "since", "value", "message"}) CHECK(newest.contains(k));
}

TEST_CASE("webhook: a 500 is retried with backoff until it is accepted", "[channels]") {
  test::HttpReceiver rx({500, 503});
  WebhookChannel hook("hook", parse_http_url(rx.url()).value(), fast_options(3));
  hook.send(sample());
  REQUIRE(hook.flush(5s));
  CHECK(rx.bodies().size() == 3);
  CHECK(hook.stats().attempts == 3);
  CHECK(hook.stats().delivered == 1);
  CHECK(hook.stats().failed == 0);
}

TEST_CASE("webhook: gives up after its retries, a 4xx is not retried", "[channels]") {
  SECTION("always 500") {
    test::HttpReceiver rx({500, 500, 500, 500, 500});
    WebhookChannel hook("hook", parse_http_url(rx.url()).value(), fast_options(2));
    hook.send(sample());
    REQUIRE(hook.flush(5s));
    CHECK(rx.bodies().size() == 3);
    CHECK(hook.stats().failed == 1);
  }
  SECTION("400") {
    test::HttpReceiver rx({400});
    WebhookChannel hook("hook", parse_http_url(rx.url()).value(), fast_options(3));
    hook.send(sample());
    REQUIRE(hook.flush(5s));
    CHECK(rx.bodies().size() == 1);
    CHECK(hook.stats().failed == 1);
  }
  SECTION("nobody listening") {
    boost::asio::io_context io;
    boost::asio::ip::tcp::acceptor a(io, {boost::asio::ip::make_address("127.0.0.1"), 0});
    const auto port = a.local_endpoint().port();
    a.close();  // the port is now (very likely) closed
    WebhookChannel hook("hook", parse_http_url("http://127.0.0.1:" + std::to_string(port) + "/x").value(),
                        fast_options(1));
    hook.send(sample());
    REQUIRE(hook.flush(5s));
    CHECK(hook.stats().attempts == 2);
    CHECK(hook.stats().failed == 1);
  }
}

TEST_CASE("webhook: a receiver that never answers cannot block send(), the queue drops the oldest", "[channels]") {
  // Accepts connections (backlog) but never reads or answers.
  boost::asio::io_context io;
  boost::asio::ip::tcp::acceptor a(io, {boost::asio::ip::make_address("127.0.0.1"), 0});
  WebhookOptions o = fast_options(0);
  o.timeout = 300ms;
  o.capacity = 2;
  WebhookChannel hook("hook", parse_http_url("http://127.0.0.1:" + std::to_string(a.local_endpoint().port()) + "/x").value(), o);
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 6; ++i) hook.send(sample());
  CHECK(std::chrono::steady_clock::now() - start < 100ms);
  REQUIRE(hook.flush(5s));
  auto st = hook.stats();
  CHECK(st.dropped >= 3);  // 6 sent, at most 1 in flight + 2 queued
  CHECK(st.failed + st.dropped == 6);
  CHECK(st.delivered == 0);
}

TEST_CASE("webhook URLs: parsed, and credentials refused", "[channels]") {
  auto u = parse_http_url("http://127.0.0.1:9000/hook?x=1");
  REQUIRE(u);
  CHECK(u->host == "127.0.0.1");
  CHECK(u->port == "9000");
  CHECK(u->target == "/hook?x=1");
  CHECK(parse_http_url("http://example.org")->port == "80");
  CHECK(parse_http_url("http://[::1]:81/a")->host == "::1");
  CHECK_FALSE(parse_http_url("https://example.org/"));
  auto cred = parse_http_url("http://user:secret@example.org/");
  REQUIRE_FALSE(cred);
  CHECK(cred.error().message.find("secret") == std::string::npos);
  CHECK_FALSE(parse_http_url("http://host:abc/"));
}

TEST_CASE("exec: the command gets the alert in its environment", "[channels]") {
  test::TempDir dir;
  const auto out = dir / "env.txt";
  const std::string cmd = script(dir, "hook.sh", "env | grep '^DRD_ALERT_' | sort > '" + out.string() + "'");
  RealProcessRunner runner;
  ExecChannel ch("run", {cmd}, 5s, runner);
  ch.send(sample(NotificationKind::resolved));
  REQUIRE(ch.flush(10s));
  CHECK(ch.stats().delivered == 1);
  const std::string env = test::read_file(out);
  CHECK(env.find("DRD_ALERT_RULE=slow\n") != std::string::npos);
  CHECK(env.find("DRD_ALERT_NODE=primary\n") != std::string::npos);
  CHECK(env.find("DRD_ALERT_SEVERITY=warning\n") != std::string::npos);
  CHECK(env.find("DRD_ALERT_STATE=resolved\n") != std::string::npos);
  CHECK(env.find("DRD_ALERT_VALUE=350\n") != std::string::npos);
  CHECK(env.find("DRD_ALERT_MESSAGE=response_time_ms on primary is 350 (> 200 for 30s)\n") != std::string::npos);
}

TEST_CASE("exec: failure and timeout are counted, not thrown", "[channels]") {
  test::TempDir dir;
  RealProcessRunner runner;
  ExecChannel fails("f", {script(dir, "fail.sh", "echo boom >&2; exit 3")}, 5s, runner);
  ExecChannel slow("s", {script(dir, "slow.sh", "sleep 30")}, 200ms, runner);
  ExecChannel missing("m", {(dir / "does-not-exist").string()}, 5s, runner);
  fails.send(sample());
  slow.send(sample());
  missing.send(sample());
  REQUIRE(fails.flush(10s));
  REQUIRE(slow.flush(10s));
  REQUIRE(missing.flush(10s));
  CHECK(fails.stats().failed == 1);
  CHECK(slow.stats().failed == 1);
  CHECK(missing.stats().failed == 1);
}

TEST_CASE("email: an RFC 5322 message is piped to sendmail -t", "[channels]") {
  test::TempDir dir;
  const auto args = dir / "args.txt", msg = dir / "msg.txt";
  const std::string fake = script(dir, "sendmail", "echo \"$@\" > '" + args.string() + "'; cat > '" + msg.string() + "'");
  RealProcessRunner runner;
  EmailChannel ch("mail", "ops@example.org", 5s, runner, fake);
  ch.send(sample());
  REQUIRE(ch.flush(10s));
  CHECK(ch.stats().delivered == 1);
  CHECK(test::read_file(args) == "-t\n");
  const std::string m = test::read_file(msg);
  CHECK(m.find("To: ops@example.org\r\n") != std::string::npos);
  CHECK(m.find("Subject: [drd] FIRING [warning] slow on primary\r\n") != std::string::npos);
  CHECK(m.find("Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n") != std::string::npos);
  CHECK(m.find("From: drd@") == 0);
  auto blank = m.find("\r\n\r\n");
  REQUIRE(blank != std::string::npos);
  CHECK(m.find("response_time_ms on primary is 350", blank) != std::string::npos);

  SECTION("sendmail missing: a clear failure") {
    EmailChannel none("mail", "ops@example.org", 5s, runner, dir / "no-sendmail");
    none.send(sample());
    REQUIRE(none.flush(5s));
    CHECK(none.stats().failed == 1);
  }
}

TEST_CASE("email headers cannot be injected through alert fields", "[channels]") {
  auto n = sample();
  n.node = "x\r\nBcc: victim@example.org";
  auto m = email_message(n, "drd@h", "ops@example.org");
  auto headers = m.substr(0, m.find("\r\n\r\n"));
  CHECK(headers.find("\r\nBcc:") == std::string::npos);
}

TEST_CASE("make_channel builds each type and names the channel in errors", "[channels]") {
  RealProcessRunner runner;
  AlertChannelConfig c;
  c.name = "ops";
  c.type = "webhook";
  c.url = "http://user:pw@127.0.0.1/";
  auto bad = make_channel(c, runner);
  REQUIRE_FALSE(bad);
  CHECK(bad.error().message.find("alerts.channels.ops") != std::string::npos);
  c.url = "http://127.0.0.1:1/";
  CHECK(make_channel(c, runner));
  c.type = "log";
  CHECK(make_channel(c, runner));
  c.type = "exec";
  CHECK_FALSE(make_channel(c, runner));
  c.command = {"/bin/true"};
  CHECK(make_channel(c, runner));
  c.type = "email";
  c.to = "a@b";
  CHECK(make_channel(c, runner));
}

TEST_CASE("reconfigure keeps the state of kept rules: no second firing", "[channels]") {
  test::HttpReceiver rx;
  AlertsConfig cfg;
  AlertChannelConfig ch;
  ch.name = "hook";
  ch.type = "webhook";
  ch.url = rx.url();
  cfg.channels = {ch};
  cfg.rules = {down_rule()};
  RealProcessRunner runner;
  AlertManager am(cfg, runner);
  MetricsSnapshot down;
  down.set("s", "up", 0);
  CHECK(am.evaluate(down, T0).size() == 1);
  am.reconfigure(cfg, runner);
  CHECK(am.evaluate(down, T0 + 1s).empty());
  CHECK(am.alerts_json().as_object().at("firing").as_array().size() == 1);
  cfg.rules.clear();
  am.reconfigure(cfg, runner);
  CHECK(am.alerts_json().as_object().at("firing").as_array().empty());
  REQUIRE(am.flush(5s));
  CHECK(rx.wait_for(1, 2s));
  CHECK(rx.bodies().size() == 1);
}
