// drd under a fake systemd: the sd_notify conversation (READY, STATUS,
// WATCHDOG, STOPPING) and socket activation (LISTEN_FDS), with real drd
// processes on real SQLite files.
#include <catch2/catch.hpp>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "common/rpc.hpp"
#include "tests/service/service_helpers.hpp"

using namespace drd::test;
using namespace std::chrono_literals;
namespace json = boost::json;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

bool starts_with(const std::string& s, const std::string& p) { return s.rfind(p, 0) == 0; }

std::vector<Clock::time_point> watchdog_times(const std::vector<NotifyListener::Message>& msgs) {
  std::vector<Clock::time_point> out;
  for (auto& m : msgs)
    if (m.line == "WATCHDOG=1") out.push_back(m.at);
  return out;
}

long long ms_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(b - a).count();
}

// Starts drd through `exec` in bash so that $$ (used for WATCHDOG_PID /
// LISTEN_PID, as systemd sets them) is drd's own pid. `redirect` is appended
// to the exec line (e.g. "3<&20 20<&-").
std::unique_ptr<Background> start_drd(const ServiceCluster& c, const std::string& exports,
                                      const std::map<std::string, std::string>& env,
                                      const std::string& redirect = "") {
  std::string script = exports + "exec \"$0\" \"$@\" " + redirect;
  return std::make_unique<Background>(
      std::vector<std::string>{"bash", "-c", script, bin("drd"), "--config", c.config().string(), "--log-level", "debug"},
      c.dir / "drd.log", env);
}

std::string log_of(const ServiceCluster& c) { return read_file(c.dir / "drd.log"); }

}  // namespace

TEST_CASE("sd_notify: READY once the control socket answers, STATUS, WATCHDOG at a third of WATCHDOG_USEC, STOPPING on SIGTERM",
          "[service][notify]") {
  clear_systemd_environment();
  ServiceCluster c("100ms");
  NotifyListener notify(c.dir / "notify.sock");
  const long long watchdog_usec = 300'000;
  auto drd = start_drd(c, "export WATCHDOG_PID=$$; ",
                       {{"NOTIFY_SOCKET", notify.path().string()}, {"WATCHDOG_USEC", std::to_string(watchdog_usec)}});

  auto before_ready = notify.until("READY=1", 15s);
  INFO(log_of(c));
  REQUIRE(!before_ready.empty());
  REQUIRE(before_ready.back().line == "READY=1");
  const auto ready_at = before_ready.back().at;

  // Right when READY arrives, drctl must get an answer, and every node has been probed.
  drd::rpc::Client client(c.socket().string(), 2s);
  auto st = client.call("status");
  REQUIRE(std::holds_alternative<json::value>(st));
  auto& nodes = std::get<json::value>(st).at("nodes").as_array();
  REQUIRE(nodes.size() == 2);
  for (auto& n : nodes) {
    INFO(json::serialize(n));
    CHECK(n.at("healthy").as_bool());
  }
  // (WATCHDOG=1 may precede READY=1 while the cluster driver attaches, e.g. seeds a standby;
  // systemd arms the watchdog only once start-up is complete, so that is harmless.)

  SECTION("STATUS= summarises the cluster") {
    auto msgs = notify.until("STATUS=", 5s);
    REQUIRE(!msgs.empty());
    const std::string status = msgs.back().line;
    REQUIRE(starts_with(status, "STATUS="));
    CHECK(status.find("primary primary") != std::string::npos);
    CHECK(status.find("2/2 nodes healthy") != std::string::npos);
  }

  SECTION("WATCHDOG=1 keeps coming every WATCHDOG_USEC/3 while drd runs, and stops with it") {
    auto msgs = notify.collect(1500ms);
    auto pings = watchdog_times(msgs);
    INFO(pings.size() << " watchdog pings in 1.5 s");
    CHECK(pings.size() >= 8);   // expected ~15 (every 100 ms)
    CHECK(pings.size() <= 25);  // not a busy loop
    REQUIRE(!pings.empty());
    // systemd kills a service that stays silent for WATCHDOG_USEC: no gap may reach it.
    long long worst = ms_between(ready_at, pings.front());
    for (std::size_t i = 1; i < pings.size(); ++i) worst = std::max(worst, ms_between(pings[i - 1], pings[i]));
    INFO("largest gap " << worst << " ms");
    CHECK(worst < watchdog_usec / 1000);

    // A frozen process sends nothing; once thawed it pings again.
    drd->signal(SIGSTOP);
    notify.collect(50ms);  // a datagram already in flight
    auto frozen = notify.collect(700ms);
    CHECK(watchdog_times(frozen).empty());
    drd->signal(SIGCONT);
    auto thawed = notify.until("WATCHDOG=1", 2s);
    REQUIRE(!thawed.empty());
    CHECK(thawed.back().line == "WATCHDOG=1");
  }

  drd->signal(SIGTERM);
  auto to_stop = notify.until("STOPPING=1", 10s);
  REQUIRE(!to_stop.empty());
  CHECK(to_stop.back().line == "STOPPING=1");
  auto code = drd->wait(10s);
  REQUIRE(code.has_value());
  CHECK(*code == 0);
  auto after = notify.collect(300ms);
  CHECK(watchdog_times(after).empty());  // nothing claims liveness after STOPPING
}

TEST_CASE("sd_notify: without WATCHDOG_USEC drd sends READY and STOPPING but no watchdog pings", "[service][notify]") {
  clear_systemd_environment();
  ServiceCluster c("100ms");
  NotifyListener notify(c.dir / "notify.sock");
  auto drd = start_drd(c, "", {{"NOTIFY_SOCKET", notify.path().string()}});
  auto before_ready = notify.until("READY=1", 15s);
  INFO(log_of(c));
  REQUIRE(!before_ready.empty());
  REQUIRE(before_ready.back().line == "READY=1");
  auto msgs = notify.collect(700ms);
  CHECK(watchdog_times(msgs).empty());
  drd->signal(SIGTERM);
  auto to_stop = notify.until("STOPPING=1", 10s);
  REQUIRE(!to_stop.empty());
  CHECK(to_stop.back().line == "STOPPING=1");
  CHECK(drd->wait(10s) == std::optional<int>(0));
}

TEST_CASE("socket activation: drd serves the socket it is handed, leaves it in place, and a queued client is answered after a restart",
          "[service][socket-activation]") {
  clear_systemd_environment();
  ServiceCluster c("100ms");
  NotifyListener notify(c.dir / "notify.sock");
  const fs::path activated = c.dir / "activated.sock";

  // systemd's side: a listening socket drd inherits as fd 3 (LISTEN_FDS=1).
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strcpy(addr.sun_path, activated.c_str());
  int made = ::socket(AF_UNIX, SOCK_STREAM, 0);
  REQUIRE(made >= 0);
  REQUIRE(::bind(made, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(::listen(made, 16) == 0);
  ::chmod(activated.c_str(), 0660);
  const int lfd = ::fcntl(made, F_DUPFD, 20);  // never 3 itself, so the redirect below is a real dup
  REQUIRE(lfd >= 20);
  ::close(made);
  const std::string redirect = "3<&" + std::to_string(lfd) + " " + std::to_string(lfd) + "<&-";
  const std::map<std::string, std::string> env{{"NOTIFY_SOCKET", notify.path().string()}};

  for (int round = 1; round <= 2; ++round) {
    INFO("round " << round);
    int queued = -1;
    if (round == 2) {
      // While drd is down the socket still accepts: connect and send before drd exists.
      queued = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      REQUIRE(::connect(queued, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
      std::string req = "{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"ping\"}\n";
      REQUIRE(::write(queued, req.data(), req.size()) == static_cast<ssize_t>(req.size()));
    }
    auto drd = start_drd(c, "export LISTEN_PID=$$ LISTEN_FDS=1; ", env, redirect);
    auto ready = notify.until("READY=1", 15s);
    INFO(log_of(c));
    REQUIRE(!ready.empty());
    REQUIRE(ready.back().line == "READY=1");

    if (queued >= 0) {
      std::string answer;
      auto deadline = Clock::now() + 10s;
      while (answer.find('\n') == std::string::npos && Clock::now() < deadline) {
        pollfd p{queued, POLLIN, 0};
        if (::poll(&p, 1, 200) <= 0) continue;
        char buf[4096];
        ssize_t n = ::read(queued, buf, sizeof buf);
        if (n <= 0) break;
        answer.append(buf, static_cast<std::size_t>(n));
      }
      ::close(queued);
      INFO("answer to the queued request: " << answer);
      CHECK(answer.find("\"id\":7") != std::string::npos);
      CHECK(answer.find("\"result\"") != std::string::npos);
    }

    drd::rpc::Client client(activated.string(), 2s);
    auto st = client.call("status");
    REQUIRE(std::holds_alternative<json::value>(st));
    CHECK(std::get<json::value>(st).at("primary").as_string() == "primary");
    CHECK_FALSE(fs::exists(c.socket()));  // the configured path is not bound when a socket is handed over

    drd->signal(SIGTERM);
    CHECK(drd->wait(10s) == std::optional<int>(0));
    CHECK(fs::exists(activated));  // the socket belongs to systemd: drd must not unlink it
  }
  ::close(lfd);
}
