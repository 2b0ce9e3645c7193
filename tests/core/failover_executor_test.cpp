// The failover executor in process: a real Daemon and state store, scripted Nodes, a fake
// ClusterDriver that records what it is asked and answers as scripted, and a manual clock
// (history times and durations are exact). The end-to-end tests (tests/e2e/) do the same
// against real SQLite files and processes; these pin the executor's own steps: the startup
// settle, a failover that fails half-way, a switchover aborted before promotion, and the
// record of a failover that a stopped drd left pending.
#include <catch2/catch.hpp>

#include <atomic>
#include <future>
#include <mutex>
#include <set>
#include <thread>

#include "daemon/daemon.hpp"
#include "tests/support/stub_node.hpp"
#include "tests/support/temp_dir.hpp"

using namespace drd;

namespace {

// Answers every probe at once: ok while the node's flag in `up` says so.
class ScriptedNode : public test::StubNode {
 public:
  ScriptedNode(NodeConfig c, std::atomic<bool>& up) : StubNode(std::move(c)), up_(up) {}
  ProbeResult probe(Millis, bool) override {
    ProbeResult r;
    r.ok = up_.load();
    r.server = r.ok ? ServerState::answering : ServerState::no_answer;
    r.response_ms = 0.1;
    if (!r.ok) r.error = "connection refused (scripted)";
    return r;
  }

 private:
  std::atomic<bool>& up_;
};

// What the executor asked of the engine, and how the engine answers promotions.
struct DriverScript {
  std::mutex mu;
  std::vector<std::string> attached;             // primary of each attach()
  std::vector<std::vector<std::string>> attached_fenced;
  std::vector<PromoteRequest> promotions;
  // By target: an error to return from promote() (none: the promotion succeeds).
  std::map<std::string, Error> promote_fails;
  std::vector<std::string> targets() {
    std::lock_guard g(mu);
    std::vector<std::string> out;
    for (auto& p : promotions) out.push_back(p.target);
    return out;
  }
};

class FakeDriver : public ClusterDriver {
 public:
  explicit FakeDriver(DriverScript& s) : s_(s) {}
  Status attach(const std::string& primary, const std::vector<std::string>& fenced) override {
    std::lock_guard g(s_.mu);
    s_.attached.push_back(primary);
    s_.attached_fenced.push_back(fenced);
    return ok_status();
  }
  Status tick() override { return ok_status(); }
  std::map<std::string, ReplicaInfo> replicas() const override { return {}; }
  Result<PromoteOutcome> promote(const PromoteRequest& req) override {
    std::lock_guard g(s_.mu);
    s_.promotions.push_back(req);
    if (auto f = s_.promote_fails.find(req.target); f != s_.promote_fails.end()) return f->second;
    PromoteOutcome o;
    o.lag_bytes = 7;
    o.position = 42;
    o.old_primary_fenced = !req.switchover;
    return o;
  }
  Status rejoin(const std::string&, bool) override { return ok_status(); }
  Status clone(const std::string&) override { return ok_status(); }
  void detach() override {}
  Millis tick_interval() const override { return Millis(50); }

 private:
  DriverScript& s_;
};

// One drd in this process: three SQLite nodes a (type primary, priority 0), b (1), c (2).
struct Harness {
  test::TempDir dir;
  std::optional<Config> config;
  asio::io_context io{1};
  ManualClock clock;
  test::SilentNotifier notifier;
  RealProcessRunner runner;
  std::map<std::string, std::atomic<bool>> up;
  DriverScript script;
  std::unique_ptr<Daemon> d;
  std::thread loop;
  std::atomic<bool> ready{false};

  explicit Harness(bool auto_failover) {
    for (auto n : {"a", "b", "c"}) up[n] = true;
    auto loaded = load_config_text(
        std::string("disaster_recovery:\n"
                    "  state_dir: ./state\n"
                    "  databases:\n"
                    "    a: { type: primary, priority: 0, url: 'sqlite:///a.db' }\n"
                    "    b: { type: secondary, priority: 1, url: 'sqlite:///b.db' }\n"
                    "    c: { type: secondary, priority: 2, url: 'sqlite:///c.db' }\n"
                    "  monitoring: { interval: 50ms, timeout: 200ms, failure_threshold: 2 }\n"
                    "  failover: { auto: ") +
            (auto_failover ? "true" : "false") + " }\n",
        "test.yaml", dir.path());
    REQUIRE(loaded.config);
    config = *loaded.config;
  }
  SqliteStateStore& open_store_first() {
    if (!pre_store) {
      std::filesystem::create_directories(dir / "state");
      auto s = SqliteStateStore::open(dir / "state/state.db");
      REQUIRE(s.ok());
      pre_store = std::move(s.value());
    }
    return *pre_store;
  }
  std::unique_ptr<SqliteStateStore> pre_store;

  void start() {
    std::unique_ptr<SqliteStateStore> store = std::move(pre_store);
    if (!store) {
      auto s = SqliteStateStore::open(dir / "state/state.db");
      REQUIRE(s.ok());
      store = std::move(s.value());
    }
    d = std::make_unique<Daemon>(io, *config, std::move(store), clock, notifier, runner);
    d->set_node_factory([this](const NodeConfig& c) -> std::unique_ptr<Node> {
      return std::make_unique<ScriptedNode>(c, up.at(c.name));
    });
    d->set_driver_factory([this](const Config&) -> std::unique_ptr<ClusterDriver> {
      return std::make_unique<FakeDriver>(script);
    });
    d->start([this] { ready = true; });
    loop = std::thread([this] { io.run(); });
    REQUIRE(wait_for([&] { return ready.load(); }, 10'000));
  }
  ~Harness() {
    if (d && loop.joinable()) {
      asio::post(d->control(), [this] {
        d->stop();
        io.stop();
      });
      loop.join();
    }
  }

  Result<json::value> call(const std::string& method, json::object params = {}) {
    std::promise<Result<json::value>> p;
    asio::post(d->control(), [&] {
      d->dispatch(method, params, Caller{0, 0, 0, true}, [&](Result<json::value> r) { p.set_value(std::move(r)); });
    });
    return p.get_future().get();
  }
  json::object status() { return call("status").value().as_object(); }
  std::string primary() { return std::string(status().at("primary").as_string()); }
  std::int64_t term() { return status().at("term").to_number<std::int64_t>(); }
  bool fenced(const std::string& node) {
    const json::object st = status();  // kept alive while its nodes are read
    for (auto& n : st.at("nodes").as_array())
      if (n.at("name").as_string() == node) return n.at("fenced").as_bool();
    return false;
  }
  json::array history() { return call("history").value().as_array(); }
  // Runs `f` on the control strand (the store and the clock are the daemon's there).
  template <class F>
  auto on_control(F f) {
    std::promise<decltype(f())> p;
    asio::post(d->control(), [&] { p.set_value(f()); });
    return p.get_future().get();
  }

  template <class Pred>
  static bool wait_for(Pred pred, int ms) {
    for (int i = 0; i < ms / 10; ++i) {
      if (pred()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return pred();
  }
};

}  // namespace

TEST_CASE("executor: the startup settle records the best healthy node and attaches the engine to it",
          "[failover-executor]") {
  Harness h(/*auto_failover=*/true);
  h.up["a"] = false;  // the configured primary does not answer at the first start
  h.start();
  CHECK(h.primary() == "b");  // healthy, then priority
  CHECK(h.term() == 1);
  {
    std::lock_guard g(h.script.mu);
    REQUIRE(!h.script.attached.empty());
    CHECK(h.script.attached.front() == "b");
    CHECK(h.script.promotions.empty());  // a first start promotes nothing: there is no primary to lose
  }
  CHECK(h.history().empty());
  // The choice is in the store, so a restart keeps it.
  auto stored = h.on_control([&] { return h.d->cluster_store().cluster().value().primary; });
  CHECK(stored == "b");
}

TEST_CASE("executor: a promotion that fails half-way leaves no history row and the next candidate is promoted",
          "[failover-executor]") {
  Harness h(/*auto_failover=*/true);
  h.script.promote_fails["b"] = make_error(Errc::internal, "disk full while applying the last frames (scripted)");
  h.start();
  REQUIRE(h.primary() == "a");
  REQUIRE(h.term() == 1);

  h.up["a"] = false;
  REQUIRE(Harness::wait_for([&] { return h.primary() == "c"; }, 10'000));
  REQUIRE(Harness::wait_for([&] { return !h.history().empty(); }, 5'000));
  auto targets = h.script.targets();
  REQUIRE(targets.size() >= 2);
  CHECK(targets[0] == "b");
  CHECK(targets.back() == "c");
  auto hist = h.history();
  REQUIRE(hist.size() == 1);  // the failed promotion of b is no failover that happened
  const auto& row = hist[0].as_object();
  CHECK(row.at("to").as_string() == "c");
  CHECK(row.at("from").as_string() == "b");  // the store named b (a claimed, unpromoted primary)
  CHECK(row.at("lag_bytes").to_number<std::int64_t>() == 7);
  CHECK(row.at("position").to_number<std::int64_t>() == 42);
  CHECK(row.at("term").to_number<std::int64_t>() == h.term());
  CHECK(h.term() == 3);  // a=1, b claimed=2, c claimed=3
  CHECK(h.fenced("a"));
  CHECK(h.fenced("b"));
  CHECK_FALSE(h.fenced("c"));
}

TEST_CASE("executor: a switchover aborted before promotion hands the primary back, with no history row",
          "[failover-executor]") {
  Harness h(/*auto_failover=*/false);
  h.script.promote_fails["b"] = make_error(Errc::refused, "b did not catch up within the timeout (scripted)");
  h.start();
  REQUIRE(h.primary() == "a");
  REQUIRE(h.term() == 1);

  auto r = h.call("switchover", json::object{{"node", "b"}});
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message.find("did not catch up") != std::string::npos);
  CHECK(h.primary() == "a");
  CHECK(h.term() == 3);  // claimed for b (2), handed back to a (3): a term never goes back
  CHECK_FALSE(h.fenced("a"));
  CHECK_FALSE(h.fenced("b"));
  CHECK(h.history().empty());
  {
    std::lock_guard g(h.script.mu);
    REQUIRE(h.script.promotions.size() == 1);
    CHECK(h.script.promotions[0].switchover);
    CHECK(h.script.promotions[0].old_primary == "a");
    CHECK(h.script.promotions[0].term == 2);
  }
  auto pending = h.on_control([&] { return h.d->cluster_store().pending_failover().value().has_value(); });
  CHECK_FALSE(pending);
  // A failover after the abort goes ahead as usual.
  h.script.promote_fails.clear();
  auto again = h.call("switchover", json::object{{"node", "b"}});
  REQUIRE(again.ok());
  CHECK(h.primary() == "b");
  CHECK(h.term() == 4);
  CHECK(h.history().size() == 1);
}

TEST_CASE("executor: a failover a stopped drd left pending gets its history row at the next start",
          "[failover-executor]") {
  Harness h(/*auto_failover=*/false);
  const std::int64_t began_ms = to_unix_ms(h.clock.now());
  {
    // drd claimed b (term 1, a fenced) and was killed before the history row.
    auto& store = h.open_store_first();
    REQUIRE(store.claim_primary(0, "b", "a").value());
    REQUIRE(store.set_pending_failover(FailoverRecord{began_ms, "a", "b", "auto", "a is down", 0, 0, 1}).ok());
  }
  h.clock.advance(std::chrono::milliseconds(5'000));  // drd was down for 5 s
  h.up["a"] = false;
  h.start();
  CHECK(h.primary() == "b");
  CHECK(h.term() == 1);
  CHECK(h.fenced("a"));
  {
    std::lock_guard g(h.script.mu);
    REQUIRE(!h.script.attached.empty());
    CHECK(h.script.attached.front() == "b");
    CHECK(h.script.attached_fenced.front() == std::vector<std::string>{"a"});
    CHECK(h.script.promotions.empty());  // attach() finishes it; nothing is promoted twice
  }
  auto hist = h.history();
  REQUIRE(hist.size() == 1);
  const auto& row = hist[0].as_object();
  CHECK(row.at("from").as_string() == "a");
  CHECK(row.at("to").as_string() == "b");
  CHECK(row.at("term").to_number<std::int64_t>() == 1);
  CHECK(row.at("duration_ms").to_number<std::int64_t>() == 5'000);  // from the claim to the record, by the clock
  const std::string reason(row.at("reason").as_string());
  CHECK(reason.find("a is down") == 0);
  CHECK(reason.find("drd stopped during this failover; finished when drd started again") != std::string::npos);
  auto pending = h.on_control([&] { return h.d->cluster_store().pending_failover().value().has_value(); });
  CHECK_FALSE(pending);
}
