#pragma once
// ClusterLink: the daemon's side of multi-host mode (docs/multi-host.md). The Coordinator
// (coordinator.hpp) renews the lease, takes the lead and fences the local database on its
// own threads; here its snapshots become daemon state, the lead is taken and given up, the
// leader learns whether the primary's host drd still vouches for its database, and
// state-changing calls made to a follower go to the leader's peer endpoint.
//
// Owns: the Coordinator, the peer endpoint (store.peer_listen), a worker for forwarded calls
//   and host checks, the last snapshot, the drd names ever seen, and whether the primary's
//   host drd left after fencing its database.
// Strand: the control strand, every method; snapshots arrive there from the coordinator's
//   threads, forwarded calls and host checks run on the link's worker and answer there.
// May call: the ClusterState's named operations (mirror, set_leading, set_auto_failover), the
//   Coordinator, and the Host below. Nothing else in the daemon.
// On failure: an unreachable store or leader is an answer (unavailable, with what to do), not
//   an exception; stop() hands the lead over at once (lease revoked) and keeps a held fence.
#include <boost/asio.hpp>
#include <boost/json.hpp>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.hpp"
#include "common/config.hpp"
#include "daemon/cluster_state.hpp"
#include "daemon/engines/node.hpp"
#include "daemon/monitor/blocking_worker.hpp"
#include "daemon/rpc/method_table.hpp"
#include "daemon/store/state_store.hpp"

namespace drd::coord {

class Coordinator;
class PeerServer;
struct Snapshot;

class ClusterLink {
 public:
  // What the link may ask of the rest of the daemon; every call on the control strand.
  class Host {
   public:
    virtual ~Host() = default;
    // A call the leader's peer endpoint received (the forwarding drd checked its caller).
    virtual void dispatch(const std::string& method, const boost::json::object& params, const Caller& caller,
                          Reply reply) = 0;
    virtual const ProbeResult* last_probe(const std::string& node) const = 0;
    virtual bool local_up() const = 0;  // this host's node is not down
    virtual bool ready() const = 0;     // the startup primary is settled
    virtual bool stopped() const = 0;
    // This drd took the lead: read the shared state again and settle the primary.
    virtual void took_lead() = 0;
    // It lost the lead: stop replication and automatic actions.
    virtual void lost_lead() = 0;
    virtual void after_round() = 0;
  };

  ClusterLink(Host& host, boost::asio::io_context& io,
              boost::asio::strand<boost::asio::io_context::executor_type>& control, const Config& config,
              Clock& clock, ClusterState& state, std::unique_ptr<Coordinator> coordinator);
  ~ClusterLink();

  // Binds the peer endpoint (an error means drd must not start) and starts the coordinator.
  Status start();
  void stop();  // idempotent

  ClusterStore& store();
  const std::string& name() const;
  // An automatic failover may go ahead (false + why while the primary's host drd still
  // vouches for its database, or this drd confirmed it to that drd less than a TTL ago).
  bool allows_failover(std::string& why) const;
  bool primary_host_fenced() const { return primary_host_fenced_; }
  // A follower sends a forwardable call to the leader and answers with its reply (true);
  // false: this drd leads, handle it here.
  bool forward_if_follower(const std::string& method, const boost::json::object& params, const Caller& caller,
                           Reply& reply);
  boost::json::value status_json() const;  // status "cluster"

 private:
  void on_snapshot(const Snapshot& s);
  void check_primary_host();

  Host& host_;
  boost::asio::io_context& io_;
  boost::asio::strand<boost::asio::io_context::executor_type>& control_;
  const Config& config_;
  Clock& clock_;
  ClusterState& state_;
  std::unique_ptr<Coordinator> coord_;
  std::unique_ptr<PeerServer> peer_server_;
  std::unique_ptr<BlockingWorker> worker_;  // forwarded calls, writability checks
  std::shared_ptr<const Snapshot> snap_;
  std::vector<std::string> known_hosts_;  // drd names (= their local nodes) ever seen in the store
  bool primary_host_fenced_ = false;      // the primary's host drd is gone and its database refuses writes
  bool host_check_running_ = false;
  SteadyTime last_host_check_{};
  // Snapshots posted to the control strand after stop() (or the link's end) are dropped.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace drd::coord
