// The FailoverExecutor alone, against a scripted Host: what the one phase enum (idle,
// refreshing, promoting) decides when an automatic failover, its refresh of the standbys and a
// manual failover meet. A real state store and a real cluster worker; the engine is a fake
// whose promotions can be held, and the control strand is run by the test thread (no timers).
#include <catch2/catch.hpp>

#include <condition_variable>
#include <mutex>
#include <thread>

#include "daemon/failover/executor.hpp"
#include "tests/support/temp_dir.hpp"

using namespace drd;
namespace asio = boost::asio;
namespace json = boost::json;

namespace {

// Promotions succeed; while `hold` is set they wait for it to be cleared.
class HeldDriver : public ClusterDriver {
 public:
  Status attach(const std::string&, const std::vector<std::string>&) override { return ok_status(); }
  Status tick() override { return ok_status(); }
  std::map<std::string, ReplicaInfo> replicas() const override { return {}; }
  Result<PromoteOutcome> promote(const PromoteRequest& req) override {
    std::unique_lock lk(mu);
    targets.push_back(req.target);
    cv.wait(lk, [&] { return !hold; });
    return PromoteOutcome{};
  }
  Status rejoin(const std::string&, bool) override { return ok_status(); }
  Status clone(const std::string&) override { return ok_status(); }
  void detach() override {}
  Millis tick_interval() const override { return Millis(50); }

  void release() {
    {
      std::lock_guard g(mu);
      hold = false;
    }
    cv.notify_all();
  }
  std::vector<std::string> promoted() {
    std::lock_guard g(mu);
    return targets;
  }

  std::mutex mu;
  std::condition_variable cv;
  bool hold = false;
  std::vector<std::string> targets;
};

// Primary a is lost; b (priority 1) and c (priority 2) are healthy standbys. The refresh of
// the standbys is held until the test runs it.
struct ScriptedHost : FailoverExecutor::Host {
  ScriptedHost(ClusterStore& store, ClusterDriver& driver, ClusterState& state)
      : store_(store), driver_(driver), state_(state) {}
  ClusterStore& cluster_store() override { return store_; }
  ClusterDriver* driver() override { return &driver_; }
  BlockingWorker* cluster_worker() override { return &worker; }
  std::vector<std::string> node_names() const override { return {"a", "b", "c"}; }
  const ProbeResult* last_probe(const std::string&) const override { return &probe_; }
  std::vector<NodeView> node_views() const override {
    std::vector<NodeView> out;
    int priority = 0;
    for (auto name : {"a", "b", "c"}) {
      NodeView v;
      v.name = name;
      v.priority = priority++;
      v.healthy = std::string(name) != "a";
      v.fenced = state_.is_fenced(name);
      out.push_back(v);
    }
    return out;
  }
  ClusterView cluster_view() const override {
    ClusterView v;
    v.primary = state_.primary();
    v.primary_health = state_.primary() == "a" ? Health::down : Health::up;
    v.primary_failures = state_.primary() == "a" ? 5 : 0;
    v.failover_running = executor->promoting();
    v.nodes = node_views();
    return v;
  }
  void refresh_standbys(std::function<void()> done) override { held_refresh = std::move(done); }
  void after_round() override { ++rounds; }
  void schedule_tick() override {}
  bool ready() const override { return true; }
  void failover_recorded(const FailoverRecord& r, bool promoted_now) override {
    if (promoted_now) recorded.push_back(r.to);
  }
  void status_changed() override {}
  bool acts() const override { return true; }
  bool coord_allows_failover(std::string&) const override { return true; }
  std::optional<std::string> coord_name() const override { return std::nullopt; }
  bool primary_host_fenced() const override { return false; }

  ClusterStore& store_;
  ClusterDriver& driver_;
  ClusterState& state_;
  BlockingWorker worker;
  ProbeResult probe_;
  FailoverExecutor* executor = nullptr;
  std::function<void()> held_refresh;
  int rounds = 0;
  std::vector<std::string> recorded;
};

struct Bench {
  test::TempDir dir;
  Config config;
  asio::io_context io{1};
  asio::strand<asio::io_context::executor_type> control{asio::make_strand(io)};
  ManualClock clock;
  std::unique_ptr<SqliteStateStore> store;
  ClusterState state;
  HeldDriver driver;
  std::unique_ptr<ScriptedHost> host;
  std::unique_ptr<FailoverExecutor> ex;

  Bench() {
    auto s = SqliteStateStore::open(dir / "state.db");
    REQUIRE(s.ok());
    store = std::move(s.value());
    REQUIRE(store->compare_and_set_primary(0, "a").value());
    state.load("a", 1, {});
    host = std::make_unique<ScriptedHost>(*store, driver, state);
    ex = std::make_unique<FailoverExecutor>(*host, control, clock, config, state, *store);
    host->executor = ex.get();
  }
  ~Bench() {
    driver.release();
    host.reset();  // joins the cluster worker: a promotion still under way finishes first
  }
  // Runs `f` on the control strand and everything it posts there, until `until` holds: the
  // promotion runs on the cluster worker's thread and posts its end back here, so the loop
  // waits for that (up to 10 s), not for a number of turns.
  template <class F, class P>
  void run(F f, P until) {
    asio::post(control, f);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!until() && std::chrono::steady_clock::now() < deadline) {
      io.restart();
      if (io.poll() == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    REQUIRE(until());
  }
};

}  // namespace

TEST_CASE("executor phase: a lost primary is refreshed, then promoted once, to the best standby",
          "[failover-phase]") {
  Bench b;
  b.run([&] { b.ex->round(); }, [&] { return b.host->held_refresh != nullptr; });
  CHECK(b.ex->phase() == FailoverExecutor::Phase::refreshing);
  CHECK_FALSE(b.ex->deciding());
  // Another round while the standbys are asked again decides nothing (no second refresh).
  b.host->held_refresh = nullptr;
  b.run([&] { b.ex->round(); }, [] { return true; });
  CHECK(b.host->held_refresh == nullptr);
  CHECK(b.ex->phase() == FailoverExecutor::Phase::refreshing);
}

TEST_CASE("executor phase: the refresh confirming the failover promotes the best standby, and the phase ends idle",
          "[failover-phase]") {
  Bench b;
  b.run([&] { b.ex->round(); }, [&] { return b.host->held_refresh != nullptr; });
  b.run([&] { b.host->held_refresh(); }, [&] { return !b.host->recorded.empty(); });
  CHECK(b.driver.promoted() == std::vector<std::string>{"b"});
  CHECK(b.host->recorded == std::vector<std::string>{"b"});
  CHECK(b.state.primary() == "b");
  CHECK(b.state.term() == 2);
  CHECK(b.state.is_fenced("a"));
  CHECK(b.ex->phase() == FailoverExecutor::Phase::idle);
  auto hist = b.store->history(10);
  REQUIRE(hist.ok());
  REQUIRE(hist->size() == 1);
  CHECK(hist->front().mode == "auto");
  CHECK(hist->front().to == "b");
}

TEST_CASE("executor phase: a manual failover begun while the standbys are refreshed wins, and the refresh's end "
          "starts no second one",
          "[failover-phase]") {
  Bench b;
  b.driver.hold = true;
  b.run([&] { b.ex->round(); }, [&] { return b.host->held_refresh != nullptr; });
  std::optional<Result<json::value>> answer;
  b.run(
      [&] {
        b.ex->begin("c", "manual", "operator", false, [&](Result<json::value> r) { answer = std::move(r); });
        CHECK(b.ex->phase() == FailoverExecutor::Phase::promoting);
        b.host->held_refresh();  // the automatic path's refresh ends while c is being promoted
        CHECK(b.ex->phase() == FailoverExecutor::Phase::promoting);
      },
      [&] { return !b.driver.promoted().empty(); });
  // A second request while promoting is refused at once, nothing changes hands.
  std::optional<Result<json::value>> second;
  b.run([&] { b.ex->begin("b", "manual", "again", false, [&](Result<json::value> r) { second = std::move(r); }); },
        [&] { return second.has_value(); });
  REQUIRE_FALSE(second->ok());
  CHECK(second->error().code == Errc::conflict);
  b.driver.release();
  b.run([] {}, [&] { return answer.has_value(); });
  REQUIRE(answer->ok());
  CHECK(answer->value().at("to").as_string() == "c");
  CHECK(b.driver.promoted() == std::vector<std::string>{"c"});  // once, and not b
  CHECK(b.state.primary() == "c");
  CHECK(b.state.term() == 2);
  CHECK(b.ex->phase() == FailoverExecutor::Phase::idle);
  auto hist = b.store->history(10);
  REQUIRE(hist.ok());
  REQUIRE(hist->size() == 1);
  CHECK(hist->front().mode == "manual");
}
