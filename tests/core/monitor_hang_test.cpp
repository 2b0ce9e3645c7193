// The monitor's deadline with a scripted Node: a probe that never returns (a
// dead network mount, a stopped server) is cut off at monitoring.timeout, counted
// as a failure, and the node goes down after failure_threshold of them, while
// the daemon keeps answering.
#include <catch2/catch.hpp>

#include <atomic>
#include <condition_variable>
#include <thread>

#include "daemon/daemon.hpp"
#include "tests/support/stub_node.hpp"
#include "tests/support/temp_dir.hpp"

using namespace drd;

namespace {

struct Gate {
  std::mutex mu;
  std::condition_variable cv;
  bool open = false;
  void release() {
    std::lock_guard g(mu);
    open = true;
    cv.notify_all();
  }
};

// Answers instantly while `hang` is false; otherwise blocks until the gate opens.
class ScriptedNode : public test::StubNode {
 public:
  ScriptedNode(NodeConfig c, std::atomic<bool>& hang, Gate& gate) : StubNode(std::move(c)), hang_(hang), gate_(gate) {}
  ProbeResult probe(Millis, bool) override {
    if (hang_) {
      std::unique_lock lk(gate_.mu);
      gate_.cv.wait(lk, [&] { return gate_.open; });
    }
    ProbeResult r;
    r.ok = true;
    r.response_ms = 0.1;
    return r;
  }

 private:
  std::atomic<bool>& hang_;
  Gate& gate_;
};

json::value call(asio::io_context& io, Daemon& d, const std::string& method) {
  std::promise<json::value> p;
  asio::post(d.control(), [&] {
    d.dispatch(method, {}, Caller{0, 0, 0, true}, [&](Result<json::value> r) {
      p.set_value(r.ok() ? r.value() : json::value(r.error().message));
    });
  });
  (void)io;
  return p.get_future().get();
}

}  // namespace

TEST_CASE("a probe that never returns is cut off by the timeout and the node goes down", "[monitor]") {
  test::TempDir dir;
  auto loaded = load_config_text(
      "disaster_recovery:\n"
      "  state_dir: ./state\n"
      "  databases:\n"
      "    a: { type: primary, priority: 0, url: 'sqlite:///a.db' }\n"
      "    b: { type: secondary, priority: 1, url: 'sqlite:///b.db' }\n"
      "  monitoring: { interval: 50ms, timeout: 100ms, failure_threshold: 3 }\n"
      "  failover: { auto: false }\n",
      "test.yaml", dir.path());
  REQUIRE(loaded.config);
  auto store = SqliteStateStore::open(dir / "state/state.db");
  REQUIRE(store.ok());
  asio::io_context io(1);
  SystemClock clock;
  test::SilentNotifier notifier;
  RealProcessRunner runner;
  std::atomic<bool> hang_b{false};
  Gate gate;
  Daemon d(io, *loaded.config, std::move(store.value()), clock, notifier, runner);
  std::atomic<bool> never{false};
  d.set_node_factory([&](const NodeConfig& c) -> std::unique_ptr<Node> {
    return std::make_unique<ScriptedNode>(c, c.name == "b" ? hang_b : never, gate);
  });
  std::atomic<bool> ready{false};
  d.start([&] { ready = true; });
  std::thread loop([&] { io.run(); });

  auto node_b = [&] {
    json::value st = call(io, d, "status");  // kept alive for the loop
    if (!st.is_object()) return json::object{{"healthy", false}, {"role", "unknown"}, {"last_error", ""}};
    for (auto& n : st.at("nodes").as_array())
      if (n.at("name").as_string() == "b") return n.as_object();
    return json::object{{"healthy", false}, {"role", "unknown"}, {"last_error", ""}};
  };
  auto wait_for = [&](auto pred, int ms) {
    for (int i = 0; i < ms / 10; ++i) {
      if (pred()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return pred();
  };
  REQUIRE(wait_for([&] { return ready.load(); }, 5000));
  REQUIRE(wait_for([&] { return node_b().at("healthy").as_bool(); }, 2000));

  hang_b = true;
  auto started = std::chrono::steady_clock::now();
  REQUIRE(wait_for([&] { return node_b().at("role").as_string() == "down"; }, 3000));
  auto took = std::chrono::steady_clock::now() - started;
  // threshold x (interval + timeout) plus slack, never the probe's own (infinite) time.
  CHECK(took < std::chrono::milliseconds(1500));
  auto err = std::string(node_b().at("last_error").as_string());
  CHECK((err.find("timed out") != std::string::npos || err.find("hanging") != std::string::npos));
  // The daemon kept answering all along, and the other node is unaffected.
  json::value st = call(io, d, "status");
  CHECK(st.at("nodes").as_array()[0].at("healthy").as_bool());

  // The stuck call finally returns: the node recovers.
  hang_b = false;
  gate.release();
  CHECK(wait_for([&] { return node_b().at("healthy").as_bool(); }, 3000));

  asio::post(d.control(), [&] { d.stop(); io.stop(); });
  loop.join();
}
