// Several drd coordinated through a real 3-member etcd cluster (docs/multi-host.md).
// Each "host" is a folder with its own SQLite database, state, socket, config and
// peer port; the cut-off test runs one host's drd inside a network namespace.
#include <catch2/catch.hpp>

#include <atomic>
#include <csignal>
#include <thread>

#include "daemon/coord/etcd_client.hpp"
#include "tests/e2e/drd_fixture.hpp"
#include "tests/etcd/etcd_fixture.hpp"

using namespace drd;
using namespace drd::test;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

double secs_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

constexpr auto kSettle = 15s;  // require_settled (etcd_fixture.hpp)

}  // namespace

TEST_CASE("one drd leads, and killing it hands the lead over within the TTL and nothing else changes", "[etcd]") {
  MultiHost m(3);
  m.start_etcd();
  m.start_all();
  int leader = m.wait_leader(10s);
  INFO(m.logs());
  REQUIRE(leader >= 0);
  REQUIRE(m.store_primary() == "n1");
  const long long term = m.store_term();
  REQUIRE(term >= 1);
  require_settled(m, "n1", kSettle);

  // Any drd answers status with the shared view: who leads, every member's lease age.
  const int follower = (leader + 1) % 3;
  boost::json::value st;
  eventually([&] {  // every drd has written its member report once
    st = m.call(follower, "status");
    return st.at("cluster").at("members").as_array().size() == 3;
  });
  auto& c = st.at("cluster").as_object();
  CHECK(c.at("store").as_string() == "etcd");
  CHECK(c.at("leader").as_string() == m.node(leader));
  CHECK_FALSE(c.at("leading").as_bool());
  CHECK(c.at("store_health").at("ok").as_bool());
  REQUIRE(c.at("members").as_array().size() == 3);
  for (auto& mem : c.at("members").as_array()) {
    CHECK(mem.at("lease_age_ms").is_int64());
    CHECK(mem.at("lease_age_ms").as_int64() < 3000);
  }
  // Each etcd endpoint's own answer: all reachable, one raft leader they all name.
  eventually([&] {
    st = m.call(follower, "status");
    return st.at("cluster").at("store_health").at("per_endpoint").as_array().size() == 3;
  });
  auto& per = st.at("cluster").at("store_health").at("per_endpoint").as_array();
  REQUIRE(per.size() == 3);
  int raft_leaders = 0;
  for (auto& e : per) {
    CHECK(e.at("reachable").as_bool());
    CHECK(e.at("ok").as_bool());
    CHECK_FALSE(e.at("member_id").as_string().empty());
    CHECK(e.at("leader_id") == per[0].at("leader_id"));
    CHECK(e.at("round_trip_ms").to_number<double>() >= 0);  // a whole number of ms prints as an integer
    raft_leaders += e.at("is_leader").as_bool() ? 1 : 0;
  }
  CHECK(raft_leaders == 1);
  CHECK(st.at("cluster").at("store_health").at("checked_ms_ago").is_int64());
  auto text = m.drctl(follower, {"status"});
  CHECK(text.exit_code == 0);
  CHECK(text.out.find("leader " + m.node(leader)) != std::string::npos);
  CHECK(text.out.find("(raft leader)") != std::string::npos);

  // A state change asked of a follower is carried out by the leader.
  auto r = m.call(follower, "auto_failover.disable");
  CHECK(r.at("auto_failover").as_bool() == false);
  CHECK(m.etcd().get("/drd/test" + std::to_string(::getpid()) + "/state/flags/auto_failover") == "false");
  m.call(follower, "auto_failover.enable");

  const auto t0 = Clock::now();
  m.kill(leader, SIGKILL);
  int next = -1;
  bool handed = eventually([&] { return (next = m.leader()) >= 0 && next != leader; }, 10s);
  const double took = secs_since(t0);
  INFO(m.logs());
  REQUIRE(handed);
  WARN("lead handed over in " << took << " s");
  CHECK(took <= 3.0 + 1.5);  // TTL + etcd's expiry granularity (0.5 s) + one poll round
  // Nothing else changed: same primary, same term, and it still takes writes.
  std::this_thread::sleep_for(1s);
  CHECK(m.store_primary() == "n1");
  CHECK(m.store_term() == term);
  CHECK(sqlite_writable(m.db(0), 200));
}

TEST_CASE("host loss: its drd and its primary gone, another host fails over within TTL + detection", "[etcd]") {
  MultiHost m(3);
  m.start_etcd();
  m.start_all();
  REQUIRE(m.wait_leader(10s) >= 0);
  require_settled(m, "n1", kSettle);
  const long long term = m.store_term();

  const auto t0 = Clock::now();
  m.kill(0, SIGKILL);
  std::filesystem::rename(m.db(0), m.host_dir(0) / "lost-disk.db");
  bool moved = eventually([&] { return m.store_primary() != "n1"; }, 15s);
  const double took = secs_since(t0);
  INFO(m.logs());
  REQUIRE(moved);
  WARN("host loss failed over in " << took << " s");
  CHECK(took <= 3.0 + 2.0);
  CHECK(m.store_primary() == "n2");
  CHECK(m.store_term() == term + 1);
  require_settled(m, "n2", kSettle);
  CHECK(sqlite_writable(m.db(1), 200));
  auto h = m.call(2, "history");
  REQUIRE(h.as_array().size() >= 1);
  CHECK(h.as_array()[0].at("to").as_string() == "n2");
}

TEST_CASE("primary host cut off (network namespace): fenced within the TTL, the others fail over, never two writable primaries", "[etcd][netns]") {
  if (!netns_available()) {
    WARN("skipped: needs root and ip netns");
    return;
  }
  NetNs ns;
  REQUIRE(ns.ok());
  MultiHost m(3, {}, &ns, 0);
  m.start_etcd();
  m.start_all();
  REQUIRE(m.wait_leader(10s) >= 0);
  require_settled(m, "n1", kSettle);
  const long long term = m.store_term();

  // Independent observer: reads the primary from etcd itself and tries to write n1.
  coord::EtcdClient etcd(coord::EtcdOptions{m.etcd().endpoints(), {}, {}, {}, {}, {}, Millis(500)});
  const std::string key = "/drd/test" + std::to_string(::getpid()) + "/state/primary";
  std::atomic<bool> stop{false};
  std::atomic<int> violations{0}, samples{0};
  std::thread observer([&] {
    while (!stop) {
      auto kv = etcd.range(key);
      std::string primary = kv && !kv->empty() ? kv->front().value : "";
      if (!primary.empty() && primary != "n1" && sqlite_writable(m.db(0), 0)) ++violations;
      ++samples;
      std::this_thread::sleep_for(20ms);
    }
  });

  const auto t0 = Clock::now();
  ns.cut();
  double fenced_at = -1;
  bool fenced = eventually([&] { return !sqlite_writable(m.db(0), 0); }, 10s);
  fenced_at = secs_since(t0);
  bool moved = eventually([&] { return m.store_primary() != "n1" && !m.store_primary().empty(); }, 15s);
  const double moved_at = secs_since(t0);
  std::this_thread::sleep_for(1s);
  stop = true;
  observer.join();
  INFO(m.logs());
  REQUIRE(fenced);
  REQUIRE(moved);
  WARN("n1 fenced " << fenced_at << " s after the cut; failover after " << moved_at << " s; " << samples
                    << " observer samples");
  CHECK(fenced_at <= 3.0);
  CHECK(violations == 0);
  CHECK(m.store_term() == term + 1);
  // Back on the network it learns it was replaced and keeps its database fenced.
  ns.restore();
  std::this_thread::sleep_for(2s);
  CHECK_FALSE(sqlite_writable(m.db(0), 0));
  auto st = m.call(0, "status");
  CHECK(st.at("primary").as_string() != "n1");
  CHECK(st.at("cluster").at("self_fenced").as_bool());
}

TEST_CASE("etcd quorum lost: nobody is promoted and the healthy primary keeps serving", "[etcd]") {
  MultiHost m(3);
  m.start_etcd();
  m.start_all();
  REQUIRE(m.wait_leader(10s) >= 0);
  require_settled(m, "n1", kSettle);
  const long long term = m.store_term();

  m.etcd().pause(1);
  m.etcd().pause(2);
  // Well past the TTL: leases cannot be renewed, every peer confirms the primary.
  bool writable_all_along = true;
  const auto t0 = Clock::now();
  while (secs_since(t0) < 7.0) {
    if (!sqlite_writable(m.db(0), 200)) writable_all_along = false;
    std::this_thread::sleep_for(100ms);
  }
  auto st = m.call(1, "status");
  INFO(m.logs());
  CHECK(writable_all_along);
  CHECK_FALSE(st.at("cluster").at("store_health").at("ok").as_bool());
  // Per endpoint: the two paused members do not answer, the third has no raft leader.
  auto& per = st.at("cluster").at("store_health").at("per_endpoint").as_array();
  REQUIRE(per.size() == 3);
  CHECK(per[0].at("reachable").as_bool());
  CHECK_FALSE(per[0].at("ok").as_bool());
  CHECK(per[0].at("leader_id").as_string().empty());
  for (int k : {1, 2}) {
    CHECK_FALSE(per[k].at("reachable").as_bool());
    CHECK_FALSE(per[k].at("error").as_string().empty());
  }
  CHECK(m.leader() == -1);  // nobody acts without etcd
  CHECK(st.at("primary").as_string() == "n1");
  // A state change has nowhere to go and says so.
  auto r = m.drctl(1, {"failover", "n2"});
  CHECK(r.exit_code != 0);

  m.etcd().resume(1);
  m.etcd().resume(2);
  REQUIRE(m.wait_leader(15s) >= 0);
  CHECK(m.store_primary() == "n1");
  CHECK(m.store_term() == term);
  CHECK(sqlite_writable(m.db(0), 200));
}

TEST_CASE("the leader dies mid-failover (crash point): the next leader finishes it from the record in etcd", "[etcd]") {
  MultiHost m(3);
  m.start_etcd();
  // Only the first drd, which takes the lead, dies right after it claimed the new term.
  m.env[0] = {{"DRD_TEST_CRASH_AT", "failover_claimed"}};
  m.start(0);
  REQUIRE(m.wait_leader(10s) == 0);
  m.start(1);
  m.start(2);
  require_settled(m, "n1", kSettle);
  const long long term = m.store_term();

  auto r = m.drctl(1, {"failover", "n3"});  // forwarded to drd n1, which claims and dies
  INFO(r.out << r.err << m.logs());
  CHECK(r.exit_code != 0);
  REQUIRE(eventually([&] { return !m.running(0); }, 10s));
  // The claim is in etcd: the new primary, its term, and the pending record.
  CHECK(m.store_primary() == "n3");
  CHECK(m.store_term() == term + 1);
  const std::string pending_key = m.prefix() + "/state/pending";
  CHECK(m.etcd().get(pending_key).find("n3") != std::string::npos);

  // Another drd takes the lead and records the interrupted failover from that record.
  int next = m.wait_leader(10s);
  REQUIRE(next > 0);
  bool recorded = eventually([&] {
    auto h = m.try_call(next, "history");
    return h && !h->as_array().empty() && h->as_array()[0].at("to").as_string() == "n3";
  }, 10s);
  REQUIRE(recorded);
  auto h = m.call(3 - next, "history");  // the other follower reads the same history from etcd
  REQUIRE_FALSE(h.as_array().empty());
  auto& rec = h.as_array()[0].as_object();
  CHECK(rec.at("term").as_int64() == term + 1);
  CHECK(std::string(rec.at("reason").as_string()).find("the leading drd stopped during this failover") != std::string::npos);
  CHECK(m.etcd().get(pending_key).empty());
  CHECK(m.store_primary() == "n3");
  require_settled(m, "n3", kSettle);
}
