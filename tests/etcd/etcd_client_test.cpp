// The etcd v3 JSON-gateway client against a real etcd: key/value, transactions, leases,
// a dead endpoint in the list, user/password auth and TLS with a private CA.
#include <catch2/catch.hpp>

#include <thread>

#include "daemon/coord/etcd_client.hpp"
#include "daemon/coord/etcd_store.hpp"
#include "tests/etcd/etcd_fixture.hpp"

using namespace drd;
using namespace drd::coord;
using namespace drd::test;
using namespace std::chrono_literals;

TEST_CASE("base64 and prefix ends", "[coord][etcd-client]") {
  for (const std::string& s : std::vector<std::string>{"", "a", "ab", "abc", "abcd", std::string("\0\xff\x10", 3)}) {
    auto d = base64_decode(base64_encode(s));
    REQUIRE(d);
    CHECK(*d == s);
  }
  CHECK_FALSE(base64_decode("abc"));
  CHECK(prefix_end("/drd/a/") == "/drd/a0");
  CHECK(prefix_end(std::string("a\xff", 2)) == "b");
}

TEST_CASE("etcd client: kv, txn, leases, a dead endpoint first, and the store's term compare", "[etcd]") {
  TempDir dir("drd-etcd-client");
  EtcdCluster etcd(dir.path(), 1);
  // The first endpoint answers nothing (nobody listens there): the call moves on.
  auto eps = etcd.endpoints();
  eps.insert(eps.begin(), "http://127.0.0.1:" + std::to_string(free_port()));
  EtcdOptions o;
  o.endpoints = eps;
  o.timeout = Millis(2000);
  auto c = std::make_shared<EtcdClient>(o);

  REQUIRE(c->put("/t/a", std::string("v\0x", 3)));
  auto r = c->range("/t/a");
  REQUIRE(r);
  REQUIRE(r->size() == 1);
  CHECK(r->front().value == std::string("v\0x", 3));
  REQUIRE(c->put("/t/b", "2"));
  auto all = c->range("/t/", true);
  REQUIRE(all);
  CHECK(all->size() == 2);

  // Transactions: compare on value; the failure branch's range comes back.
  auto t = c->txn({Compare{"/t/b", Compare::Target::value, Compare::Op::equal, "1", 0}},
                  {TxnOp{TxnOp::Kind::put, "/t/b", "3", 0, false}}, {TxnOp{TxnOp::Kind::range, "/t/b", {}, 0, false}});
  REQUIRE(t);
  CHECK_FALSE(t->succeeded);
  REQUIRE(t->ranges.size() == 1);
  CHECK(t->ranges[0].front().value == "2");

  // Leases: a key on a lease goes when the lease is revoked; keepalive of a dead lease says 0.
  auto lease = c->lease_grant(2);
  REQUIRE(lease);
  REQUIRE(c->put("/t/leased", "x", *lease));
  auto ka = c->lease_keepalive(*lease);
  REQUIRE(ka);
  CHECK(*ka == 2);
  REQUIRE(c->lease_revoke(*lease));
  CHECK(c->range("/t/leased")->empty());
  auto dead = c->lease_keepalive(*lease);
  REQUIRE(dead);
  CHECK(*dead == 0);
  CHECK(*c->lease_time_to_live(*lease) == -1);

  // Per-endpoint health: the dead first endpoint says why, the member gives its id, its
  // raft leader (itself: one member) and a round trip.
  auto eh = c->health(Millis(500));
  REQUIRE(eh.size() == 2);
  CHECK_FALSE(eh[0].reachable);
  CHECK_FALSE(eh[0].ok);
  CHECK_FALSE(eh[0].error.empty());
  CHECK(eh[0].round_trip_ms >= 0);
  CHECK(eh[1].reachable);
  CHECK(eh[1].ok);
  CHECK_FALSE(eh[1].member_id.empty());
  CHECK(eh[1].leader_id == eh[1].member_id);
  CHECK(eh[1].member_id.find_first_not_of("0123456789abcdef") == std::string::npos);
  CHECK_FALSE(eh[1].version.empty());
  CHECK(eh[1].round_trip_ms > 0);
  CHECK(eh[1].round_trip_ms < 500);

  // The cluster store: writes only while this drd holds state/leader, primary only at the expected term.
  EtcdClusterStore me(c, "/s", "d1");
  auto w = me.compare_and_set_primary(0, "n1");
  REQUIRE(w);
  CHECK_FALSE(*w);  // not the leader
  REQUIRE(c->put("/s/state/leader", "d1"));
  w = me.compare_and_set_primary(0, "n1");
  REQUIRE(w);
  CHECK(*w);
  CHECK_FALSE(*me.compare_and_set_primary(0, "n2"));  // stale term
  CHECK(*me.compare_and_set_primary(1, "n2"));
  auto cl = me.cluster();
  REQUIRE(cl);
  CHECK(cl->primary == "n2");
  CHECK(cl->term == 2);
  REQUIRE(me.append_history(FailoverRecord{1000, "n1", "n2", "manual", "test", 5, 0, 2}));
  CHECK_FALSE(me.append_history(FailoverRecord{1001, "n1", "n2", "manual", "stale", 5, 0, 1}));  // wrong term
  REQUIRE(me.set_fenced("n1", true));
  CHECK(*me.fenced_nodes() == std::vector<std::string>{"n1"});
  REQUIRE(me.set_flag("auto_failover", false));
  CHECK(*me.flag("auto_failover") == std::optional<bool>(false));
  REQUIRE(c->put("/s/state/leader", "d2"));  // the lead moved: every write is refused
  auto refused = me.set_fenced("n1", false);
  REQUIRE_FALSE(refused);
  CHECK(refused.error().code == Errc::conflict);
  CHECK_FALSE(*me.compare_and_set_primary(2, "n1"));
  auto h = me.history(10);
  REQUIRE(h);
  REQUIRE(h->size() == 1);
  CHECK(h->front().reason == "test");
}

TEST_CASE("etcd client: user and password auth", "[etcd]") {
  TempDir dir("drd-etcd-auth");
  EtcdCluster etcd(dir.path(), 1);
  auto ep = etcd.endpoints()[0];
  auto ctl = [&](std::vector<std::string> args) {
    std::vector<std::string> argv{"etcdctl", "--endpoints", ep};
    argv.insert(argv.end(), args.begin(), args.end());
    return run(argv, {{"ETCDCTL_API", "3"}});
  };
  REQUIRE(ctl({"user", "add", "root:rootpw"}).exit_code == 0);
  REQUIRE(ctl({"user", "add", "drd:s3cret"}).exit_code == 0);
  REQUIRE(ctl({"role", "add", "drd"}).exit_code == 0);
  REQUIRE(ctl({"role", "grant-permission", "drd", "--prefix=true", "readwrite", "/drd/"}).exit_code == 0);
  REQUIRE(ctl({"user", "grant-role", "drd", "drd"}).exit_code == 0);
  REQUIRE(ctl({"auth", "enable"}).exit_code == 0);

  EtcdOptions o;
  o.endpoints = {ep};
  o.username = "drd";
  o.password = "s3cret";
  EtcdClient c(o);
  REQUIRE(c.put("/drd/x", "1"));
  CHECK(c.range("/drd/x")->front().value == "1");
  auto denied = c.put("/other", "1");
  REQUIRE_FALSE(denied);
  CHECK(denied.error().code == Errc::permission_denied);
  o.password = "wrong";
  EtcdClient bad(o);
  auto r = bad.range("/drd/x");
  REQUIRE_FALSE(r);
  CHECK(r.error().message.find("wrong") == std::string::npos);  // the password never shows
  CHECK(r.error().message.find("authentication") != std::string::npos);
}
