#pragma once
// Coordinator: this drd's seat in a multi-host cluster kept in etcd
// (docs/multi-host.md).
//
// Threads of its own, so neither a slow etcd nor a busy control loop can
// delay fencing:
//  - the etcd loop (every kLoop): grants and renews this drd's lease, writes its
//    member report, takes the leader key when free (one transaction), reads the
//    shared state, and, while renewals fail and the local node is primary, asks
//    every peer to confirm it (failsafe);
//  - the endpoint health check (every 2 s): asks each etcd endpoint for its status
//    (member id, raft leader, round trip) for `drctl status`; never decides anything;
//  - the fence watch (every 50 ms): decide_self_fence() on the latest view, fences
//    or unfences the local database (LocalFence), and steps down from the lead
//    once renewals have failed for fence_after(ttl).
// Snapshots and leadership changes are handed to the daemon through `on_update`
// (called on the etcd-loop or watch thread; the daemon posts them to its strand).
#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <boost/json.hpp>

#include "common/config.hpp"
#include "common/process.hpp"
#include "daemon/coord/etcd_store.hpp"
#include "daemon/coord/fencing_policy.hpp"
#include "daemon/coord/local_fence.hpp"

namespace drd::coord {

struct Member {
  std::string name;        // the drd (its local node's name)
  std::string peer;        // HOST:PORT of its peer endpoint, "" when it has none
  std::int64_t lease = 0;
  bool is_leader = false;
  boost::json::object report;  // what it last wrote about itself
};

struct Snapshot {
  bool etcd_ok = false;
  std::string error;           // why the last round failed
  std::string leader;          // name of the leading drd ("" = none)
  bool leading = false;        // this drd holds the lead (and renewed recently)
  std::int64_t term = 0;
  std::string primary;
  std::vector<std::string> fenced;
  std::map<std::string, bool> flags;
  std::vector<Member> members;
  std::int64_t lease_id = 0;
  double since_renewal_ms = -1;  // -1 = never renewed
  double since_confirmed_ms = -1;
  bool local_fenced = false;   // this drd holds its local database fenced
  std::string fence_reason;
  // Each endpoint's own answer (the health thread asks every kHealth; empty before the
  // first check) and how long ago that check was.
  std::vector<EndpointHealth> endpoints;
  double endpoints_age_ms = -1;
};

class Coordinator {
 public:
  Coordinator(const Config& cfg, std::string password, std::string peer_token, ProcessRunner& runner);
  ~Coordinator();

  // `on_update` gets a fresh snapshot after each etcd round and when the lead is lost.
  void start(std::function<void(const Snapshot&)> on_update);
  void stop();  // idempotent: stops both threads, keeps a held fence (the database stays unwritable)

  EtcdClusterStore& store() { return *store_; }
  EtcdClient& client() { return *client_; }
  const std::string& name() const { return name_; }
  Snapshot snapshot() const;
  // This drd's own health facts for its member report (set from the daemon's strand).
  void set_local_report(bool local_up, const std::string& detail);
  // Answer to a peer's failsafe request (peer endpoint); a confirmation is remembered.
  FailsafeAnswer failsafe_request(const FailsafeAsk& ask);
  // True while this drd confirmed `node` as primary within the last TTL: no failover
  // away from it may start here meanwhile.
  bool failsafe_hold(const std::string& node) const;
  // The leader's peer address, when some drd leads and published one.
  std::optional<std::string> leader_peer() const;
  const std::string& peer_token() const { return peer_token_; }

  Millis ttl() const { return ttl_; }

 private:
  void etcd_loop();
  void watch_loop();
  void failsafe_loop();
  void health_loop();
  void round();
  void ask_peers();
  void publish(std::unique_lock<std::mutex>& lk);

  const std::string name_, node_, peer_;
  const Millis ttl_;
  const bool failsafe_;
  std::string peer_token_;
  std::shared_ptr<EtcdClient> client_;
  std::unique_ptr<EtcdClusterStore> store_;
  std::unique_ptr<LocalFence> fence_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  Snapshot snap_;
  std::int64_t lease_ = 0;
  std::optional<std::chrono::steady_clock::time_point> renewed_at_;    // send time of the last good renewal
  std::optional<std::chrono::steady_clock::time_point> confirmed_at_;  // send time of the last full confirmation
  std::optional<std::chrono::steady_clock::time_point> read_at_;       // send time of the last good state read
  std::chrono::steady_clock::time_point last_member_write_{};
  std::string last_member_value_;
  bool holds_lead_key_ = false;
  std::atomic<bool> warned_no_peers_{false};
  bool local_up_ = false;
  std::string local_detail_;
  std::function<void(const Snapshot&)> on_update_;
  std::map<std::string, std::chrono::steady_clock::time_point> confirmed_for_;  // peers' primaries we confirmed
  std::vector<EndpointHealth> endpoint_health_;
  std::optional<std::chrono::steady_clock::time_point> health_at_;
  std::thread etcd_thread_, watch_thread_, failsafe_thread_, health_thread_;
};

}  // namespace drd::coord
