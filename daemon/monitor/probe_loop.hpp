#pragma once
// ProbeLoop: every node's probe on its schedule, and what the answers make of each node's
// health (policy.hpp next_health), its last answer and the health samples.
//
// Owns: each node's Node, strand, timer and BlockingWorker; per node the health state, the
//   last probe result and when it came; the health samples not yet written to the state store.
// Strands: a node's timer and its probe deadline run on the node's strand, the probe itself on
//   the node's BlockingWorker (a probe that hangs stalls only that node); answers are folded in
//   on the control strand, where every accessor must be called.
// May call: Node::probe (through probe_with_deadline), the state store (health samples), and
//   the Host below. It decides nothing about the cluster: after each answer it calls
//   Host::after_round(), where the decisions are taken.
// On failure: a probe that fails or hangs is an answer (a failed sample, the health state
//   machine counts it); samples that cannot be written are logged and dropped.
#include <boost/asio.hpp>
#include <boost/json.hpp>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.hpp"
#include "common/config.hpp"
#include "daemon/engines/node.hpp"
#include "daemon/failover/policy.hpp"
#include "daemon/monitor/blocking_worker.hpp"
#include "daemon/store/state_store.hpp"

namespace drd {

class ProbeLoop {
 public:
  // What the daemon knows of a node from its probes (control strand).
  struct NodeState {
    HealthState health;
    ProbeResult last;
    std::optional<SysTime> last_probe_at;
  };

  class Host {
   public:
    virtual ~Host() = default;
    virtual bool monitoring() const = 0;  // any thread: the node strands ask
    virtual bool stopped() const = 0;     // any thread
    // Whether a failed answer to a probe sent at `began` is recorded: not before the startup
    // primary was settled (a standby drd is about to seed may not exist yet). Control strand.
    virtual bool records_failures_from(std::chrono::steady_clock::time_point began) const = 0;
    // Each recorded answer, for the alert rules and /metrics. Control strand.
    virtual void answered(const std::string& node, SysTime at, bool ok, double response_ms) = 0;
    virtual void after_round() = 0;  // control strand
  };

  using NodeFactory = std::function<std::unique_ptr<Node>(const NodeConfig&)>;

  ProbeLoop(Host& host, boost::asio::io_context& io,
            boost::asio::strand<boost::asio::io_context::executor_type>& control, const Config& config,
            Clock& clock, SqliteStateStore& store);
  ~ProbeLoop();

  // One runtime per configured node, in declaration order (before any probe runs).
  void build(const NodeFactory& make);
  // Each node's next probe `delay` from now (posted to the node's strand).
  void schedule_all(Millis delay);
  // The scheduled probes stop (monitoring stopped); a probe under way still answers.
  void cancel_all();
  // Every node's probe (or only `only`'s) at once, answers folded in as usual; `done` gets
  // {"nodes": [{name, ok, response_time_ms, error?}]} on the control strand.
  void probe_all_now(std::function<void(boost::json::value)> done, const std::optional<std::string>& only = std::nullopt);
  // Probes every healthy node that `skip` does not name once more, within a short budget, and
  // keeps the good answers (a failure is left to the regular probes); `done` on the control
  // strand.
  void refresh(const std::function<bool(const std::string&)>& skip, std::function<void()> done);
  void flush_samples();
  // Timers cancelled and samples written (control strand); then release_workers() joins the
  // workers (or leaves a probe stuck in the kernel behind).
  void stop();
  void release_workers();

  const std::vector<std::string>& names() const { return order_; }
  bool has(const std::string& node) const { return nodes_.count(node) > 0; }
  const NodeState* find(const std::string& node) const;
  const NodeState& at(const std::string& node) const { return nodes_.at(node).state; }
  // The node's last probe answer; nullptr for a node drd does not know.
  const ProbeResult* last(const std::string& node) const;
  // Whether the node's health is `h`; false for a node drd does not know.
  bool is(const std::string& node, Health h) const;
  std::size_t healthy() const;

 private:
  struct Runtime {
    std::unique_ptr<Node> node;
    std::unique_ptr<boost::asio::strand<boost::asio::io_context::executor_type>> strand;
    std::unique_ptr<boost::asio::steady_timer> timer;
    std::unique_ptr<BlockingWorker> worker;
    bool probe_outstanding = false;  // node strand
    SteadyTime last_deep{};          // node strand
    NodeState state;                 // control strand
  };

  void schedule(const std::string& name, Millis delay);  // node strand
  void run(const std::string& name);                     // node strand
  Millis next_delay(bool ok, std::chrono::steady_clock::time_point started) const;
  void fold(const std::string& name, ProbeResult r, bool timed_out, std::chrono::steady_clock::time_point began);

  Host& host_;
  boost::asio::io_context& io_;
  boost::asio::strand<boost::asio::io_context::executor_type>& control_;
  const Config& config_;
  Clock& clock_;
  SqliteStateStore& store_;
  std::map<std::string, Runtime> nodes_;
  std::vector<std::string> order_;  // declaration order
  std::vector<HealthSample> pending_samples_;
};

}  // namespace drd
