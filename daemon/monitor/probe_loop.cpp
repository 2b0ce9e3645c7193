// The probe loop (probe_loop.hpp).
#include "daemon/monitor/probe_loop.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "common/log.hpp"
#include "daemon/monitor/probe_once.hpp"

namespace drd {

namespace asio = boost::asio;
namespace json = boost::json;

ProbeLoop::ProbeLoop(Host& host, asio::io_context& io, asio::strand<asio::io_context::executor_type>& control,
                     const Config& config, Clock& clock, SqliteStateStore& store)
    : host_(host), io_(io), control_(control), config_(config), clock_(clock), store_(store) {}

ProbeLoop::~ProbeLoop() { release_workers(); }

void ProbeLoop::build(const NodeFactory& make) {
  nodes_.clear();
  order_.clear();
  for (auto& nc : config_.nodes) {
    Runtime rt;
    rt.node = make(nc);
    rt.strand = std::make_unique<asio::strand<asio::io_context::executor_type>>(asio::make_strand(io_));
    rt.timer = std::make_unique<asio::steady_timer>(*rt.strand);
    rt.worker = std::make_unique<BlockingWorker>();
    order_.push_back(nc.name);
    nodes_.emplace(nc.name, std::move(rt));
  }
}

void ProbeLoop::schedule_all(Millis delay) {
  for (auto& name : order_) asio::post(*nodes_.at(name).strand, [this, name, delay] { schedule(name, delay); });
}

void ProbeLoop::cancel_all() {
  for (auto& name : order_) asio::post(*nodes_.at(name).strand, [this, name] { nodes_.at(name).timer->cancel(); });
}

void ProbeLoop::stop() {
  for (auto& [name, n] : nodes_)
    if (n.timer) n.timer->cancel();
  flush_samples();
}

void ProbeLoop::release_workers() {
  for (auto& [name, n] : nodes_) n.worker.reset();
}

const ProbeLoop::NodeState* ProbeLoop::find(const std::string& node) const {
  auto it = nodes_.find(node);
  return it == nodes_.end() ? nullptr : &it->second.state;
}

const ProbeResult* ProbeLoop::last(const std::string& node) const {
  const NodeState* n = find(node);
  return n ? &n->last : nullptr;
}

bool ProbeLoop::is(const std::string& node, Health h) const {
  const NodeState* n = find(node);
  return n && n->health.health == h;
}

std::size_t ProbeLoop::healthy() const {
  return static_cast<std::size_t>(std::count_if(nodes_.begin(), nodes_.end(), [](auto& kv) {
    return kv.second.state.health.health == Health::up;
  }));
}

void ProbeLoop::schedule(const std::string& name, Millis delay) {
  auto it = nodes_.find(name);
  if (it == nodes_.end() || host_.stopped()) return;
  auto& n = it->second;
  n.timer->expires_after(delay);
  n.timer->async_wait([this, name](const boost::system::error_code& ec) {
    if (ec || host_.stopped()) return;
    run(name);
  });
}

// A good probe is followed by the next one `interval` later. After a failed
// one the next starts `interval` after the failed one started (at once when it
// took that long, e.g. a timeout): a hung node is then down after
// timeout x failure_threshold, not (timeout + interval) x failure_threshold.
Millis ProbeLoop::next_delay(bool ok, std::chrono::steady_clock::time_point started) const {
  if (ok) return config_.monitoring.interval;
  auto spent = std::chrono::duration_cast<Millis>(std::chrono::steady_clock::now() - started);
  return std::max(Millis(0), config_.monitoring.interval - spent);
}

// Runs on the node's strand.
void ProbeLoop::run(const std::string& name) {
  auto& n = nodes_.at(name);
  const Millis timeout = config_.monitoring.timeout;
  if (n.probe_outstanding || n.worker->busy()) {
    // The previous probe is still stuck (a hung open, a stopped server): that is a failure too.
    ProbeResult r;
    r.error = "probe still hanging after " + format_duration(timeout);
    r.response_ms = static_cast<double>(timeout.count());
    asio::post(control_, [this, name, r, began = std::chrono::steady_clock::now()]() mutable {
      fold(name, std::move(r), true, began);
    });
    schedule(name, config_.monitoring.interval);
    return;
  }
  n.probe_outstanding = true;
  bool deep = clock_.steady() - n.last_deep >= config_.monitoring.quick_check_interval;
  if (deep) n.last_deep = clock_.steady();
  const auto started = std::chrono::steady_clock::now();
  probe_with_deadline(*n.strand, *n.worker, *n.node, timeout, deep,
                      [this, name, started](ProbeResult r, bool timed_out) {  // on the node's strand
                        if (host_.stopped()) return;
                        nodes_.at(name).probe_outstanding = false;
                        const bool ok = r.ok;
                        asio::post(control_, [this, name, r = std::move(r), timed_out, started]() mutable {
                          fold(name, std::move(r), timed_out, started);
                        });
                        // A probe that hung is retried on schedule even while monitoring is off.
                        if (timed_out) schedule(name, next_delay(false, started));
                        else if (host_.monitoring()) schedule(name, next_delay(ok, started));
                      });
}

// Runs on the control strand.
void ProbeLoop::fold(const std::string& name, ProbeResult r, bool timed_out,
                             std::chrono::steady_clock::time_point began) {
  auto it = nodes_.find(name);
  if (it == nodes_.end() || host_.stopped()) return;
  NodeState& n = it->second.state;
  const Health before = n.health.health;
  // What the server answered decides, not only whether the probe ran: a server that answers
  // with an error is up (saturated) or restarting, not a failed probe (policy.hpp).
  ServerState state = r.ok && r.server == ServerState::no_answer ? ServerState::answering : r.server;
  if (r.definitely_down) state = ServerState::crashed;
  const auto steady_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(clock_.steady().time_since_epoch()).count();
  n.health = next_health(n.health, state, config_.monitoring.failure_threshold, steady_ms,
                         config_.failover.restart_grace.count());
  if (!r.ok && server_up(state) && n.last.ok) {
    // Saturated and our session lost: the server answered, but not our questions. Its last
    // known facts (role, position) stay; the answer itself is what status shows.
    ProbeResult kept = n.last;
    kept.ok = false;
    kept.server = state;
    kept.error = r.error;
    kept.response_ms = r.response_ms;
    kept.config_problem.reset();
    kept.definitely_down = false;
    r = std::move(kept);
  }
  if (r.server != n.last.server && (r.server == ServerState::saturated || r.server == ServerState::shutting_down ||
                                    r.server == ServerState::starting_up))
    log::event(spdlog::level::warn, "server_" + std::string(server_state_name(r.server)), {{"NODE", name}},
               name + ": " + r.error);
  n.last_probe_at = clock_.now();
  // Until the primary is settled and attached, a standby may not exist yet: drd is about to
  // seed it. Failed probes sent before then say nothing about an outage, even when their
  // answer arrives after, so they are not recorded in the health history nor shown to the
  // alert rules.
  if (r.ok || host_.records_failures_from(began)) {
    host_.answered(name, clock_.now(), r.ok, r.response_ms);
    pending_samples_.push_back({name, to_unix_ms(clock_.now()), r.ok, r.response_ms, r.error});
  }
  if (before != n.health.health && n.health.health == Health::restarting) {
    log::event(spdlog::level::warn, "node_restarting", {{"NODE", name}},
               "node " + name + " is restarting (" + r.error + "); failover only if it is not back within " +
                   format_duration(config_.failover.restart_grace));
  } else if (before != n.health.health && n.health.health != Health::unknown) {
    bool up = n.health.health == Health::up;
    log::event(up ? spdlog::level::info : spdlog::level::warn, up ? "node_up" : "node_down",
               {{"NODE", name}},
               "node " + name + (up ? " is up" : " is down after " + std::to_string(n.health.consecutive_failures) +
                                                     " failed probe(s): " + r.error));
  } else if (!r.ok && n.health.consecutive_failures == 1) {
    spdlog::warn("probe of {} failed{}: {}", name, timed_out ? " (timeout)" : "", r.error);
  }
  n.last = std::move(r);
  host_.after_round();
}

void ProbeLoop::probe_all_now(std::function<void(json::value)> done, const std::optional<std::string>& only) {
  // Runs every node's probe (or only `only`'s) on its worker and gathers the answers on the
  // control strand.
  struct Gather {
    std::size_t left;
    json::array rows;
    std::function<void(json::value)> done;
  };
  std::vector<std::string> names = only ? std::vector<std::string>{*only} : order_;
  auto g = std::make_shared<Gather>(Gather{names.size(), {}, std::move(done)});
  if (names.empty()) {
    g->done(json::object{{"nodes", json::array{}}});
    return;
  }
  g->rows.resize(names.size());
  const Millis timeout = config_.monitoring.timeout;
  for (std::size_t i = 0; i < names.size(); ++i) {
    auto name = names[i];
    auto& n = nodes_.at(name);
    probe_with_deadline(control_, *n.worker, *n.node, timeout, false,
                        [this, g, i, name, began = std::chrono::steady_clock::now()](ProbeResult r, bool timed_out) {
                          json::object row{{"name", name}, {"ok", r.ok}, {"response_time_ms", r.response_ms}};
                          if (!r.ok) row["error"] = r.error;
                          g->rows[i] = std::move(row);
                          fold(name, std::move(r), timed_out, began);
                          if (--g->left == 0) g->done(json::object{{"nodes", std::move(g->rows)}});
                        });
  }
}

void ProbeLoop::refresh(const std::function<bool(const std::string&)>& skip, std::function<void()> done) {
  struct Gather {
    std::size_t left = 0;
    bool finished = false;
    std::function<void()> done;
  };
  auto g = std::make_shared<Gather>();
  g->done = std::move(done);
  auto finish = [g] {
    if (g->finished) return;
    g->finished = true;
    g->done();
  };
  // Short: a standby that does not answer at once keeps its last known facts.
  const Millis budget = std::min<Millis>(config_.monitoring.timeout, Millis(250));
  auto timer = std::make_shared<asio::steady_timer>(control_, budget);
  timer->async_wait([finish, timer](const boost::system::error_code&) { finish(); });
  for (auto& name : order_) {
    auto& n = nodes_.at(name);
    if (n.state.health.health != Health::up || skip(name)) continue;
    ++g->left;
    probe_with_deadline(control_, *n.worker, *n.node, budget, false,
                        [this, name, g, finish, timer](ProbeResult r, bool timed_out) {
                          if (host_.stopped()) return;
                          // A failure here is left to the regular probes to count.
                          if (!g->finished && r.ok && !timed_out) {
                            NodeState& nn = nodes_.at(name).state;
                            nn.health = next_health(nn.health, true, config_.monitoring.failure_threshold);
                            nn.last = std::move(r);
                          }
                          if (--g->left == 0) {
                            timer->cancel();
                            finish();
                          }
                        });
  }
  if (g->left == 0) {
    timer->cancel();
    asio::post(control_, finish);
  }
}

void ProbeLoop::flush_samples() {
  if (pending_samples_.empty()) return;
  if (auto st = store_.add_health_samples(pending_samples_); !st)
    spdlog::error("cannot record health samples: {}", st.error().message);
  pending_samples_.clear();
}

}  // namespace drd
