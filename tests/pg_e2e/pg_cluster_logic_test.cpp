// The PostgreSQL cluster driver's pure decisions, table-driven.
#include <catch2/catch.hpp>

#include "daemon/engines/postgres/postgres_cluster_logic.hpp"

using namespace drd;
using namespace drd::pgha;
using namespace std::chrono_literals;

namespace {

ProbeResult primary_probe(std::uint64_t current, std::vector<ReplicaStat> rows) {
  ProbeResult p;
  p.ok = true;
  p.role = Role::primary;
  p.writable = true;
  p.current_lsn = current;
  p.position = current;
  p.replicas = std::move(rows);
  return p;
}

ProbeResult standby_probe(std::uint64_t received) {
  ProbeResult p;
  p.ok = true;
  p.role = Role::standby;
  p.receive_lsn = received;
  p.replay_lsn = received;
  p.position = received;
  return p;
}

ProbeResult failed(const std::string& why) {
  ProbeResult p;
  p.error = why;
  return p;
}

ReplicaStat row(const std::string& name, const std::string& state, const std::string& sync, std::uint64_t flush,
                double replay_lag_ms = 0) {
  ReplicaStat r;
  r.application_name = name;
  r.state = state;
  r.sync_state = sync;
  r.sent_lsn = r.write_lsn = r.flush_lsn = r.replay_lsn = flush;
  r.replay_lag_ms = replay_lag_ms;
  return r;
}

const std::vector<std::string> kNames{"a", "b", "c"};

}  // namespace

TEST_CASE("replica snapshot from the primary's pg_stat_replication rows, matched by application_name") {
  Probes probes{{"a", primary_probe(1000, {row("b", "streaming", "sync", 900, 12.5), row("c", "catchup", "potential", 400)})},
                {"b", standby_probe(950)},
                {"c", standby_probe(400)}};
  auto s = replica_snapshot(kNames, "a", probes, {}, {}, {});
  REQUIRE(s.size() == 2);
  CHECK_FALSE(s.count("a"));
  CHECK(s["b"].streaming);
  CHECK(s["b"].sync);
  CHECK(s["b"].lag_bytes == 100);     // current - flush
  CHECK(s["b"].lag_ms == 12.5);       // replay_lag
  CHECK(*s["b"].position == 950);     // its own receive LSN is fresher than the row
  CHECK(s["b"].note == "streaming (sync)");
  CHECK_FALSE(s["c"].streaming);
  CHECK_FALSE(s["c"].sync);
  CHECK(s["c"].lag_bytes == 600);
  CHECK(s["c"].note == "catchup (potential)");
}

TEST_CASE("replica snapshot: a standby without a row is not streaming, its lag comes from its own position") {
  struct Row {
    const char* what;
    ProbeResult self;
    std::uint64_t lag;
    const char* note_prefix;
  };
  std::vector<Row> rows{
      {"answers", standby_probe(700), 300, "not streaming from a"},
      {"down", failed("connection refused"), 0, "not streaming from a; unreachable: connection refused"},
  };
  for (auto& r : rows) {
    INFO(r.what);
    Probes probes{{"a", primary_probe(1000, {})}, {"b", r.self}};
    auto s = replica_snapshot({"a", "b"}, "a", probes, {}, {}, {});
    CHECK_FALSE(s["b"].streaming);
    CHECK(s["b"].lag_bytes == r.lag);
    CHECK(s["b"].note.rfind(r.note_prefix, 0) == 0);
  }
}

TEST_CASE("replica snapshot keeps the last known lag and sync flag while the primary does not answer") {
  Probes first{{"a", primary_probe(1000, {row("b", "streaming", "sync", 990), row("c", "streaming", "potential", 800)})},
               {"b", standby_probe(990)},
               {"c", standby_probe(800)}};
  auto s1 = replica_snapshot(kNames, "a", first, {}, {}, {});
  Probes second{{"a", failed("timeout")}, {"b", standby_probe(995)}, {"c", standby_probe(800)}};
  auto s2 = replica_snapshot(kNames, "a", second, {}, {}, s1);
  CHECK(s2["b"].sync);          // still the standby that has every acknowledged commit
  CHECK_FALSE(s2["c"].sync);
  CHECK(s2["b"].lag_bytes == 10);
  CHECK(s2["c"].lag_bytes == 200);
  CHECK_FALSE(s2["b"].streaming);
  CHECK(*s2["b"].position == 995);  // fresh from its own probe
  CHECK(s2["b"].note.find("not answering") != std::string::npos);
}

TEST_CASE("replica snapshot: fenced nodes carry their fence note, a writable non-primary is a second primary") {
  ProbeResult rogue = primary_probe(5000, {});
  Probes probes{{"a", primary_probe(1000, {})}, {"b", rogue}, {"c", standby_probe(1000)}};
  auto s = replica_snapshot(kNames, "a", probes, {"b"}, {{"b", "fenced: second primary"}}, {});
  CHECK(s["b"].note == "fenced: second primary");
  auto s2 = replica_snapshot(kNames, "a", probes, {}, {}, {});
  CHECK(s2["b"].note == "second primary");
  auto s3 = replica_snapshot(kNames, "a", probes, {"b"}, {}, {});
  CHECK(s3["b"].note == "fenced");
}

TEST_CASE("second primaries: only other nodes that answer as writable primaries") {
  ProbeResult ro = primary_probe(10, {});
  ro.writable = false;  // fenced: read-only
  struct Row {
    Probes probes;
    std::vector<std::string> want;
  };
  std::vector<Row> rows{
      {{{"a", primary_probe(1, {})}, {"b", standby_probe(1)}, {"c", standby_probe(1)}}, {}},
      {{{"a", primary_probe(1, {})}, {"b", primary_probe(2, {})}, {"c", standby_probe(1)}}, {"b"}},
      {{{"a", failed("x")}, {"b", primary_probe(2, {})}, {"c", primary_probe(3, {})}}, {"b", "c"}},
      {{{"a", primary_probe(1, {})}, {"b", ro}, {"c", failed("down")}}, {}},
  };
  for (std::size_t i = 0; i < rows.size(); ++i) {
    INFO("row " << i);
    CHECK(second_primaries("a", rows[i].probes) == rows[i].want);
  }
}

TEST_CASE("standbys not streaming: answered, in recovery, no streaming row, not fenced") {
  Probes probes{{"a", primary_probe(100, {row("b", "streaming", "async", 100), row("c", "startup", "async", 0)})},
                {"b", standby_probe(100)},
                {"c", standby_probe(50)},
                {"d", standby_probe(50)},
                {"e", failed("down")}};
  std::vector<std::string> names{"a", "b", "c", "d", "e"};
  CHECK(standbys_not_streaming(names, "a", probes, {}) == std::vector<std::string>{"c", "d"});
  CHECK(standbys_not_streaming(names, "a", probes, {"d"}) == std::vector<std::string>{"c"});
  probes["a"] = failed("timeout");
  CHECK(standbys_not_streaming(names, "a", probes, {}).empty());
}

TEST_CASE("synchronous_standby_names quotes node names") {
  CHECK(synchronous_standby_names({}) == "");
  CHECK(synchronous_standby_names({"node1"}) == "FIRST 1 (\"node1\")");
  CHECK(synchronous_standby_names({"node1", "we\"ird"}) == "FIRST 1 (\"node1\", \"we\"\"ird\")");
}

TEST_CASE("synchronous mode degrades after the grace period without a streaming standby and restores at once") {
  SyncState s;
  const SteadyTime t0{};
  const Millis grace{10'000};
  struct Step {
    int at_ms;
    bool streaming;
    SyncAction want;
    bool degraded;
  };
  std::vector<Step> steps{
      {0, true, SyncAction::none, false},     {1000, false, SyncAction::none, false},
      {10'999, false, SyncAction::none, false}, {11'000, false, SyncAction::degrade, true},
      {12'000, false, SyncAction::none, true},  {13'000, true, SyncAction::restore, false},
      {14'000, false, SyncAction::none, false}, {15'000, true, SyncAction::none, false},
      {16'000, false, SyncAction::none, false}, {26'000, false, SyncAction::degrade, true},
  };
  for (auto& st : steps) {
    INFO("at " << st.at_ms << " ms");
    CHECK(next_sync_action(s, st.streaming, t0 + Millis(st.at_ms), grace) == st.want);
    CHECK(s.degraded == st.degraded);
  }
}

TEST_CASE("replay lag beside flush lag, and the paused flag, in the snapshot", "[pgha][replay]") {
  auto r1 = row("s1", "streaming", "async", 1000);
  r1.replay_lsn = 400;
  r1.has_replay_lsn = true;
  Probes probes{{"p", primary_probe(1000, {r1})}, {"s1", standby_probe(1000)}, {"s2", standby_probe(900)}};
  probes["s1"].replay_lsn = 400;
  probes["s1"].replay_paused = true;
  probes["s2"].replay_lsn = 700;
  auto snap = replica_snapshot({"p", "s1", "s2"}, "p", probes, {}, {}, {});
  CHECK(snap["s1"].lag_bytes == 0);  // flushed everything
  REQUIRE(snap["s1"].replay_lag_bytes);
  CHECK(*snap["s1"].replay_lag_bytes == 600);
  CHECK(snap["s1"].replay_paused);
  CHECK(snap["s1"].note.find("paused") != std::string::npos);
  REQUIRE(snap["s2"].replay_lag_bytes);  // no row: from its own probe
  CHECK(*snap["s2"].replay_lag_bytes == 300);
  CHECK_FALSE(snap["s2"].replay_paused);
}

TEST_CASE("a switchover is refused up front on a paused or far-behind target", "[pgha][replay]") {
  struct Row {
    bool paused;
    std::optional<std::uint64_t> lag;
    bool refused;
    const char* mentions;
  };
  for (auto r : {Row{true, 0, true, "paused"}, Row{true, std::nullopt, true, "unknown"}, Row{false, 0, false, ""},
                 Row{false, 100, false, ""}, Row{false, 2000, true, "2000 bytes"}, Row{false, std::nullopt, false, ""}}) {
    auto why = switchover_refusal("node1", r.paused, r.lag, 1000);
    CHECK(why.has_value() == r.refused);
    if (why) {
      CHECK(why->find("node1") != std::string::npos);
      CHECK(why->find(r.mentions) != std::string::npos);
    }
  }
}
