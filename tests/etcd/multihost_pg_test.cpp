// Several hosts with PostgreSQL (docs/multi-host.md): three real PostgreSQL 15 servers
// (a primary and two streaming standbys, tests/support/pg_cluster.hpp), one drd per
// "host" with `local: nI`, its own socket and peer port, and a real 3-member etcd.
// Every drd gets the same databases list, data_dir included: each must touch only its
// own server's files (daemon/coord/host_files.hpp). The cut-off test runs host 1's
// PostgreSQL *and* its drd inside a network namespace.
//
// The independent observer writes every server through its Unix socket (no network cut
// affects it) on a fresh session, in a fixed order that checks the old primary last:
// a fence never comes undone, so a round where the old primary and another server both
// took the write means both were writable at the moment the first one did.
#include <catch2/catch.hpp>
#include <libpq-fe.h>

#include <atomic>
#include <csignal>
#include <mutex>
#include <thread>

#include "tests/etcd/etcd_fixture.hpp"
#include "tests/support/pg_cluster.hpp"

using namespace drd;
using namespace drd::test;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

double secs_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

std::vector<PgHostNode> pg_nodes(const PgCluster& pg) {
  std::vector<PgHostNode> out;
  for (int i = 0; i < pg.size(); ++i) out.push_back({pg.url(i), pg.data_dir(i)});
  return out;
}

// One write on a fresh session: what a client connecting now could do.
bool pg_writable(const std::string& conninfo) {
  PGconn* c = PQconnectdb(conninfo.c_str());
  bool ok = false;
  if (PQstatus(c) == CONNECTION_OK) {
    PGresult* r = PQexec(c, "INSERT INTO drd_observer VALUES (now())");
    ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
  }
  PQfinish(c);
  return ok;
}

class Observer {
 public:
  explicit Observer(const PgCluster& pg) {
    // Every other server first, the original primary (node 0) last.
    for (int i = 1; i < pg.size(); ++i) conninfo_.push_back(pg.socket_conninfo(i));
    conninfo_.push_back(pg.socket_conninfo(0));
    thread_ = std::thread([this] { loop(); });
  }
  ~Observer() { stop(); }
  void stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  int rounds() const { return rounds_; }
  int violations() const { return violations_; }
  int old_primary_unwritable_rounds() const { return old_unwritable_; }
  // Seconds since `t0` of the first round in which the old primary refused the write (-1: never).
  double old_primary_refused_at(Clock::time_point t0) {
    std::lock_guard lk(mu_);
    return first_refusal_ ? std::chrono::duration<double>(*first_refusal_ - t0).count() : -1;
  }
  std::string last_violation() {
    std::lock_guard lk(mu_);
    return last_violation_;
  }

 private:
  void loop() {
    while (!stop_) {
      int writable = 0;
      std::string who;
      for (std::size_t k = 0; k < conninfo_.size(); ++k)
        if (pg_writable(conninfo_[k])) {
          ++writable;
          who += (who.empty() ? "" : ", ") + std::string(k + 1 == conninfo_.size() ? "node0" : "node" + std::to_string(k + 1));
        }
      if (writable > 1) {
        ++violations_;
        std::lock_guard lk(mu_);
        last_violation_ = "writable at once: " + who;
      }
      if (who.find("node0") == std::string::npos) {
        ++old_unwritable_;
        std::lock_guard lk(mu_);
        if (!first_refusal_) first_refusal_ = Clock::now();
      }
      ++rounds_;
      std::this_thread::sleep_for(20ms);
    }
  }
  std::vector<std::string> conninfo_;
  std::atomic<bool> stop_{false};
  std::atomic<int> rounds_{0}, violations_{0}, old_unwritable_{0};
  std::mutex mu_;
  std::optional<Clock::time_point> first_refusal_;
  std::string last_violation_;
  std::thread thread_;
};

constexpr auto kSettle = 20s;  // require_settled (etcd_fixture.hpp)

// node i of the PgCluster is host i's database, named n<i+1> in drd.
int pg_index(const std::string& node) { return std::stoi(node.substr(1)) - 1; }

void prepare(PgCluster& pg) {
  pg.wait_streaming(0, 2);
  pg.exec(0, "CREATE TABLE drd_observer (at timestamptz)");
  // Replayed on both standbys before drd starts.
  REQUIRE(pg.wait_for(1, "SELECT to_regclass('drd_observer') IS NOT NULL", "t"));
  REQUIRE(pg.wait_for(2, "SELECT to_regclass('drd_observer') IS NOT NULL", "t"));
}

// The servers streaming, etcd and every drd up, one of them leading, all naming n1.
// Returns the leading host.
int start_cluster(PgCluster& pg, MultiHost& m) {
  prepare(pg);
  m.use_postgres(pg_nodes(pg));
  m.start_etcd();
  m.start_all();
  int leader = m.wait_leader(15s);
  INFO(m.logs());
  REQUIRE(leader >= 0);
  require_settled(m, "n1", kSettle);
  return leader;
}

}  // namespace

TEST_CASE("PostgreSQL hosts: killing the leading drd hands the lead over, the primary and its standbys are untouched", "[etcd][pg]") {
  PgCluster pg(2);
  MultiHost m(3);
  const int leader = start_cluster(pg, m);
  const long long term = m.store_term();
  REQUIRE(term >= 1);

  Observer obs(pg);
  const auto t0 = Clock::now();
  m.kill(leader, SIGKILL);
  int next = -1;
  bool handed = eventually([&] { return (next = m.leader()) >= 0 && next != leader; }, 15s);
  const double took = secs_since(t0);
  REQUIRE(handed);
  WARN("PostgreSQL hosts: lead handed over in " << took << " s (drd " << m.node(leader) << " -> " << m.node(next) << ")");
  CHECK(took <= 3.0 + 2.0);  // TTL + etcd's expiry granularity + a poll round, with slack for a loaded machine
  // Nothing else changes: well past the TTL, same primary, same term, writable; standbys still stream.
  std::this_thread::sleep_for(2s);
  obs.stop();
  CHECK(m.store_primary() == "n1");
  CHECK(m.store_term() == term);
  CHECK(obs.violations() == 0);
  CHECK(obs.old_primary_unwritable_rounds() == 0);
  CHECK(pg.query(1, "SELECT pg_is_in_recovery()") == "t");
  CHECK(pg.query(2, "SELECT pg_is_in_recovery()") == "t");
  pg.wait_streaming(0, 2);
}

TEST_CASE("PostgreSQL hosts: losing the primary's host (drd and server) fails over within TTL + detection", "[etcd][pg]") {
  PgCluster pg(2);
  MultiHost m(3);
  start_cluster(pg, m);
  const long long term = m.store_term();

  const auto t0 = Clock::now();
  m.kill(0, SIGKILL);
  pg.kill9(0);
  bool moved = eventually([&] { auto p = m.store_primary(); return !p.empty() && p != "n1"; }, 20s);
  const double took = secs_since(t0);
  INFO(m.logs());
  REQUIRE(moved);
  const std::string now_primary = m.store_primary();
  WARN("PostgreSQL host loss failed over to " << now_primary << " in " << took << " s");
  CHECK(took <= 3.0 + 3.0);  // TTL + detection (3 probes of 100 ms) + promotion, with slack
  CHECK(m.store_term() == term + 1);
  require_settled(m, now_primary, kSettle);
  const int np = pg_index(now_primary), other = np == 1 ? 2 : 1;
  CHECK(pg.wait_for(np, "SELECT NOT pg_is_in_recovery()", "t"));
  CHECK(pg_writable(pg.socket_conninfo(np)));
  // The other standby was repointed (through SQL, from the leader) and streams from it.
  CHECK(pg.query(other, "SELECT pg_is_in_recovery()") == "t");
  pg.wait_streaming(np, 1, 30s);
  // Recorded once the promotion and the repointing finished; any drd reads it from etcd.
  bool recorded = eventually([&] {
    auto h = m.try_call(other, "history");
    return h && !h->as_array().empty() && h->as_array()[0].at("to").as_string() == now_primary;
  }, 30s);
  CHECK(recorded);

  // The host comes back: its drd first (it finds its server down and listed fenced, and
  // fences it: stopped, kept read-only for its next start), then its server, which was the
  // writable primary. It starts read-only: not one write.
  m.start(0);
  bool self_fenced = eventually([&] {
    auto st = m.try_call(0, "status");
    return st && st->at("cluster").at("self_fenced").as_bool();
  }, 10s);
  INFO(m.logs());
  CHECK(self_fenced);
  pg.start(0);
  CHECK_FALSE(pg_writable(pg.socket_conninfo(0)));
  std::this_thread::sleep_for(1s);
  CHECK_FALSE(pg_writable(pg.socket_conninfo(0)));
  CHECK(m.store_primary() == now_primary);
  CHECK(pg_writable(pg.socket_conninfo(np)));
  // The leader on another host cannot pg_rewind it (its files are not the leader's to
  // touch) and says so; nothing was done to it.
  const int l = m.wait_leader(10s);
  REQUIRE(l > 0);
  auto r = m.drctl(l, {"rejoin", "n1"});
  INFO(r.out << r.err);
  CHECK(r.exit_code != 0);
  CHECK((r.out + r.err).find("only the drd on n1's own host touches its files") != std::string::npos);
  CHECK_FALSE(pg_writable(pg.socket_conninfo(0)));
  CHECK(pg.running(0));
}

TEST_CASE("PostgreSQL hosts: the primary's host cut off fences its server within the TTL, never two writable primaries", "[etcd][pg][netns]") {
  if (!netns_available()) {
    WARN("skipped: needs root and ip netns");
    return;
  }
  NetNs ns;
  REQUIRE(ns.ok());
  PgClusterOptions po;
  po.standbys = 2;
  po.hosts = {{0, ns.inner_ip()}, {1, ns.root_ip()}, {2, ns.root_ip()}};
  po.netns = {{0, ns.name()}};
  PgCluster pg(po);
  MultiHost m(3, {}, &ns, 0);
  start_cluster(pg, m);
  const long long term = m.store_term();

  Observer obs(pg);
  std::this_thread::sleep_for(300ms);
  REQUIRE(obs.old_primary_unwritable_rounds() == 0);
  const auto t0 = Clock::now();
  ns.cut();
  bool fenced = eventually([&] { return obs.old_primary_refused_at(t0) >= 0; }, 15s);
  bool moved = eventually([&] { auto p = m.store_primary(); return !p.empty() && p != "n1"; }, 20s);
  const double moved_at = secs_since(t0);
  std::string now_primary = m.store_primary();
  bool promoted = moved && eventually([&] { return pg.query(pg_index(now_primary), "SELECT pg_is_in_recovery()") == "f"; }, 15s);
  std::this_thread::sleep_for(1s);
  obs.stop();
  INFO(m.logs());
  REQUIRE(fenced);
  REQUIRE(moved);
  const double fenced_at = obs.old_primary_refused_at(t0);
  WARN("PostgreSQL: node n1 refused writes " << fenced_at << " s after the cut; " << now_primary << " named primary after "
                                             << moved_at << " s; " << obs.rounds() << " observer rounds");
  CHECK(fenced_at <= 3.0);  // within the TTL (the drd fences after two thirds of it)
  INFO(obs.last_violation());
  CHECK(obs.violations() == 0);
  CHECK(promoted);
  CHECK(m.store_term() == term + 1);
  const int other = pg_index(now_primary) == 1 ? 2 : 1;
  pg.wait_streaming(pg_index(now_primary), 1, 30s);
  CHECK(pg.query(other, "SELECT pg_is_in_recovery()") == "t");

  // Back on the network its drd learns it was replaced: the server stays unwritable.
  ns.restore();
  std::this_thread::sleep_for(3s);
  CHECK_FALSE(pg_writable(pg.socket_conninfo(0)));
  auto st = m.call(0, "status");
  CHECK(st.at("primary").as_string() == now_primary);
  CHECK(st.at("cluster").at("self_fenced").as_bool());
}

TEST_CASE("PostgreSQL hosts: etcd quorum lost, nobody is promoted and the primary keeps taking writes", "[etcd][pg]") {
  PgCluster pg(2);
  MultiHost m(3);
  start_cluster(pg, m);
  const long long term = m.store_term();

  Observer obs(pg);
  m.etcd().pause(1);
  m.etcd().pause(2);
  // Well past the TTL: no lease renews, every peer confirms the primary (failsafe).
  std::this_thread::sleep_for(7s);
  auto st = m.call(1, "status");
  INFO(m.logs());
  CHECK(obs.old_primary_unwritable_rounds() == 0);
  CHECK(obs.violations() == 0);
  CHECK_FALSE(st.at("cluster").at("store_health").at("ok").as_bool());
  CHECK(m.leader() == -1);
  CHECK(pg.query(1, "SELECT pg_is_in_recovery()") == "t");
  CHECK(pg.query(2, "SELECT pg_is_in_recovery()") == "t");
  auto r = m.drctl(1, {"failover", "n2"});
  CHECK(r.exit_code != 0);

  m.etcd().resume(1);
  m.etcd().resume(2);
  REQUIRE(m.wait_leader(15s) >= 0);
  obs.stop();
  CHECK(obs.old_primary_unwritable_rounds() == 0);
  CHECK(m.store_primary() == "n1");
  CHECK(m.store_term() == term);
  pg.wait_streaming(0, 2);
}

TEST_CASE("PostgreSQL hosts: a physical backup is not restored onto the primary nor onto another host's standby",
          "[etcd][pg][backup]") {
  PgCluster pg(2);
  HostOptions o;
  MultiHost m(3, o);
  // Unencrypted backups in a folder every host's drd could use (only the leader takes them).
  m.opts.extra_yaml = "  backup:\n    enabled: true\n    directory: " + (m.dir() / "backups").string() +
                      "\n    compression: { algorithm: zstd, level: 1, threads: 1 }\n";
  const int leader = start_cluster(pg, m);
  auto b = m.drctl(leader, {"--json", "backup"});
  INFO(b.out << b.err << m.logs());
  REQUIRE(b.exit_code == 0);
  const std::string id(boost::json::parse(b.out).as_object().at("id").as_string());
  const auto pid0 = pg.postmaster_pid(0);

  // The primary: another drd could fail over while it is stopped for the swap.
  auto p = m.drctl(leader, {"restore", id, "--node", "n1", "--force"});
  INFO(p.out << p.err);
  CHECK(p.exit_code != 0);
  CHECK(p.err.find("not supported in multi-host mode") != std::string::npos);
  CHECK(p.err.find("nothing was changed") != std::string::npos);
  CHECK(pg.postmaster_pid(0) == pid0);
  CHECK(pg.query(0, "SELECT pg_is_in_recovery()") == "f");

  // A standby whose files are on another host than the leading drd's.
  const std::string other = leader == 1 ? "n3" : "n2";
  auto s = m.drctl(leader, {"restore", id, "--node", other});
  INFO(s.out << s.err);
  CHECK(s.exit_code != 0);
  CHECK(s.err.find("its data folder is on another host") != std::string::npos);
  CHECK(pg.query(pg_index(other), "SELECT pg_is_in_recovery()") == "t");
  pg.wait_streaming(0, 2);
  CHECK(m.store_primary() == "n1");
}
