#include "drd_version.hpp"
#include "daemon/daemon.hpp"

#include <spdlog/spdlog.h>

#include "common/log.hpp"
#include "daemon/engines/cluster_factory.hpp"
#include "daemon/engines/postgres/postgres_identity.hpp"
#include "daemon/coord/coordinator.hpp"
#include "daemon/coord/peer_server.hpp"
#include "daemon/engines/node_factory.hpp"

namespace drd {

namespace {
}

Daemon::Daemon(asio::io_context& io, Config config, std::unique_ptr<SqliteStateStore> store, Clock& clock,
               Notifier& notifier, ProcessRunner& runner)
    : io_(io), control_(asio::make_strand(io)), config_(std::move(config)), store_(std::move(store)),
      clock_(clock), notifier_(notifier), runner_(runner) {
  monitoring::Monitoring::Hooks hooks{
      [this] { return status_json(); },
      [this] {
        return clock_.steady() - last_round_at_ <
               2 * (config_.monitoring.interval + config_.monitoring.timeout) + std::chrono::seconds(5);
      }};
  mon_ = std::make_unique<monitoring::Monitoring>(io_, control_, config_, runner_, std::move(hooks), drd::kVersion);
}

Status Daemon::start_http() { return mon_->start(); }

Daemon::~Daemon() { stop(); }

void Daemon::build_nodes() {
  nodes_.clear();
  order_.clear();
  for (auto& nc : config_.nodes) {
    NodeRuntime rt;
    rt.node = node_factory_ ? node_factory_(nc) : make_node(nc, runner_);
    rt.strand = std::make_unique<asio::strand<asio::io_context::executor_type>>(asio::make_strand(io_));
    rt.timer = std::make_unique<asio::steady_timer>(*rt.strand);
    rt.worker = std::make_unique<BlockingWorker>();
    order_.push_back(nc.name);
    nodes_.emplace(nc.name, std::move(rt));
  }
}

void Daemon::load_cluster_state() {
  auto c = cluster_store().cluster();
  auto f = cluster_store().fenced_nodes();
  state_.load(c.ok() ? c->primary : state_.primary(), c.ok() ? c->term : state_.term(),
              f.ok() ? *f : state_.fenced());
}

void Daemon::start(std::function<void()> ready) {
  asio::post(control_, [this, ready = std::move(ready)]() mutable {
    started_at_ = clock_.steady();
    last_round_at_ = started_at_;
    if (auto m = cluster_store().flag("monitoring"); m.ok() && m->has_value()) state_.set_monitoring(**m);
    else state_.set_monitoring(config_.monitoring.enabled);
    if (auto a = cluster_store().flag("auto_failover"); a.ok() && a->has_value()) state_.set_auto_failover(**a);
    else state_.set_auto_failover(config_.failover.auto_failover);
    if (!config_.enabled) {  // disaster recovery switched off: serve status, act on nothing
      state_.set_monitoring(false);
      state_.set_auto_failover(false);
    }
    load_cluster_state();
    build_nodes();
    driver_ = driver_factory_ ? driver_factory_(config_) : make_cluster_driver(config_, runner_);
    cluster_worker_ = std::make_unique<BlockingWorker>();
    housekeeping_timer_ = std::make_unique<asio::steady_timer>(control_);
    watchdog_timer_ = std::make_unique<asio::steady_timer>(control_);
    tick_timer_ = std::make_unique<asio::steady_timer>(control_);
    flush_timer_ = std::make_unique<asio::steady_timer>(control_);
    started_ = true;
    // The first decision needs one answer from every node.
    probe_all_now([this, ready = std::move(ready)](json::value) mutable {
      // Requests are answered only once the primary is settled (ready_), so no
      // client ever sees a half-started daemon.
      settle_startup_primary([this, ready = std::move(ready)]() mutable {
        ready_ = true;
        ready_since_ = std::chrono::steady_clock::now();
        ready();
        auto waiting = std::move(waiting_for_ready_);
        for (auto& w : waiting) w();
      });
      backup_start();
      if (state_.monitoring())
        for (auto& name : order_) schedule_probe(name, config_.monitoring.interval);
      schedule_housekeeping();
      schedule_watchdog();
    });
  });
}

void Daemon::stop() {
  if (stopped_) return;
  stopped_ = true;
  for (auto& [name, n] : nodes_) {
    if (n.timer) n.timer->cancel();
  }
  for (auto* t : {&housekeeping_timer_, &watchdog_timer_, &tick_timer_, &flush_timer_})
    if (*t) (*t)->cancel();
  flush_samples();
  backup_stop();
  coord_stop();
  if (mon_) mon_->stop();
  if (driver_ && cluster_worker_) {
    auto* d = driver_.get();
    cluster_worker_->post([d] { d->detach(); });
  }
  cluster_worker_.reset();  // waits for the detach (or leaves a stuck call behind)
  for (auto& [name, n] : nodes_) n.worker.reset();
}

// ---- monitoring -------------------------------------------------------------

void Daemon::schedule_probe(const std::string& name, Millis delay) {
  auto it = nodes_.find(name);
  if (it == nodes_.end() || stopped_) return;
  auto& n = it->second;
  n.timer->expires_after(delay);
  n.timer->async_wait([this, name](const boost::system::error_code& ec) {
    if (ec || stopped_) return;
    run_probe(name);
  });
}

// A good probe is followed by the next one `interval` later. After a failed
// one the next starts `interval` after the failed one started (at once when it
// took that long, e.g. a timeout): a hung node is then down after
// timeout x failure_threshold, not (timeout + interval) x failure_threshold.
Millis Daemon::next_probe_delay(bool ok, std::chrono::steady_clock::time_point started) const {
  if (ok) return config_.monitoring.interval;
  auto spent = std::chrono::duration_cast<Millis>(std::chrono::steady_clock::now() - started);
  return std::max(Millis(0), config_.monitoring.interval - spent);
}

// Runs on the node's strand.
void Daemon::run_probe(const std::string& name) {
  auto& n = nodes_.at(name);
  const Millis timeout = config_.monitoring.timeout;
  if (n.probe_outstanding || n.worker->busy()) {
    // The previous probe is still stuck (a hung open, a stopped server): that is a failure too.
    ProbeResult r;
    r.error = "probe still hanging after " + format_duration(timeout);
    r.response_ms = static_cast<double>(timeout.count());
    asio::post(control_, [this, name, r, began = std::chrono::steady_clock::now()]() mutable {
      on_probe_result(name, std::move(r), true, began);
    });
    schedule_probe(name, config_.monitoring.interval);
    return;
  }
  n.probe_outstanding = true;
  bool deep = clock_.steady() - n.last_deep >= config_.monitoring.quick_check_interval;
  if (deep) n.last_deep = clock_.steady();
  const auto started = std::chrono::steady_clock::now();
  probe_with_deadline(*n.strand, *n.worker, *n.node, timeout, deep,
                      [this, name, started](ProbeResult r, bool timed_out) {  // on the node's strand
                        if (stopped_) return;
                        nodes_.at(name).probe_outstanding = false;
                        const bool ok = r.ok;
                        asio::post(control_, [this, name, r = std::move(r), timed_out, started]() mutable {
                          on_probe_result(name, std::move(r), timed_out, started);
                        });
                        // A probe that hung is retried on schedule even while monitoring is off.
                        if (timed_out) schedule_probe(name, next_probe_delay(false, started));
                        else if (state_.monitoring()) schedule_probe(name, next_probe_delay(ok, started));
                      });
}

// Runs on the control strand.
void Daemon::on_probe_result(const std::string& name, ProbeResult r, bool timed_out,
                             std::chrono::steady_clock::time_point began) {
  auto it = nodes_.find(name);
  if (it == nodes_.end() || stopped_) return;
  auto& n = it->second;
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
  // Until the primary is settled and attached (ready_), a standby may not exist yet: drd is
  // about to seed it. Failed probes sent before then say nothing about an outage, even when
  // their answer arrives after, so they are not recorded in the health history nor shown to
  // the alert rules.
  if ((ready_ && began >= ready_since_) || r.ok) {
    mon_->on_probe(name, clock_.now(), r.ok, r.response_ms);
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
  after_round();
}

std::vector<NodeView> Daemon::node_views() const {
  std::vector<NodeView> out;
  auto reps = driver_ ? driver_->replicas() : std::map<std::string, ReplicaInfo>{};
  for (auto& name : order_) {
    auto& n = nodes_.at(name);
    const NodeConfig& c = *config_.find_node(name);  // reloadable fields come from the live config
    NodeView v;
    v.name = name;
    v.priority = c.priority;
    v.healthy = n.health.health == Health::up;
    v.restarting = n.health.health == Health::restarting;
    v.replay_paused = n.last.ok && n.last.replay_paused;
    v.fenced = state_.is_fenced(name);
    v.no_failover = c.no_failover;
    v.type_primary = c.type == NodeType::primary;
    if (!v.healthy) v.config_problem = n.last.config_problem;
    if (c.engine == Engine::postgresql && n.last.ok)
      v.not_member = pgid::not_member_reason(cluster_system_id_, n.last.system_identifier);
    v.position = n.last.position;
    v.timeline = n.last.timeline;
    if (auto r = reps.find(name); r != reps.end()) {
      // PostgreSQL: both are the standby's receive LSN, which only grows: the larger is the newer.
      if (r->second.position)
        v.position = c.engine == Engine::postgresql && v.position ? std::max(*v.position, *r->second.position)
                                                                  : r->second.position;
      v.lag_bytes = r->second.lag_bytes;
      if (r->second.sync) v.sync_standby = true;  // survives the primary's death (its probe rows do not)
      v.history_problem = r->second.history_problem;
      if (r->second.apply_failing) v.apply_problem = r->second.note;
      if (r->second.history_known) v.history_rank = std::make_pair(r->second.history_term, r->second.history_epoch);
    }
    for (auto& rs : n.last.replicas)
      if (rs.application_name == name && rs.sync_state == "sync") v.sync_standby = true;
    if (auto p = nodes_.find(state_.primary()); p != nodes_.end())
      for (auto& rs : p->second.last.replicas)
        if (rs.application_name == name && rs.sync_state == "sync") v.sync_standby = true;
    out.push_back(std::move(v));
  }
  return out;
}

ClusterView Daemon::cluster_view() const {
  ClusterView v;
  v.primary = state_.primary();
  if (auto p = nodes_.find(state_.primary()); p != nodes_.end()) {
    v.primary_health = p->second.health.health;
    v.primary_failures = p->second.health.consecutive_failures;
  }
  if (primary_host_fenced_) {  // its host drd is gone and fenced it before its lease ran out
    v.primary_health = Health::down;
    v.primary_failures = std::max(v.primary_failures, config_.monitoring.failure_threshold);
  }
  v.auto_failover = state_.auto_failover();
  v.monitoring = state_.monitoring();
  v.failover_running = failover_running_;
  v.primary_paused = state_.primary_paused();
  if (driver_) v.primary_lost = driver_->primary_problem();
  if (auto f = failed_promotions_.find(state_.primary()); v.primary_lost.empty() && f != failed_promotions_.end())
    v.primary_lost = "its promotion failed (" + f->second + ")";
  v.nodes = node_views();
  v.policy.max_lag_bytes = config_.failover.max_lag_bytes;
  v.policy.synchronous = config_.failover.synchronous;
  return v;
}

void Daemon::after_round() {
  last_round_at_ = clock_.steady();
  // Alert rules see at most five evaluations a second, however many nodes answer.
  if (started_ && last_round_at_ - last_evaluation_ >= std::chrono::milliseconds(200)) {
    last_evaluation_ = last_round_at_;
    mon_->evaluate(clock_.now());
  }
  if (!start_hold_.empty()) {  // no primary elected at start: ask the servers again
    recheck_start_hold();
    return;
  }
  if (!started_ || state_.primary().empty() || refreshing_) return;
  archive_round();  // a new base backup due for point-in-time coverage
  learn_system_identifier();
  Decision d = decide(cluster_view());
  if (d.kind == Decision::Kind::failover && coord_) {
    // Multi-host: followers only watch; the leader waits while the primary's host drd
    // still vouches for its database (it has not fenced it).
    std::string why;
    if (!acts()) d = Decision{Decision::Kind::none, "", "primary " + state_.primary() + " is down; the leading drd acts", d.state};
    else if (!coord_allows_failover(why)) d = Decision{Decision::Kind::none, "", why, d.state, /*blocked=*/true};
    else if (primary_host_fenced_)
      d.reason = "the drd beside " + state_.primary() + " left the cluster and fenced it (it refuses writes); promoting " + d.target;
  }
  if (d.kind == Decision::Kind::failover) {
    // The standbys' positions are compared, so they must be the final ones:
    // ask them again now that the primary is down, then decide for real.
    refreshing_ = true;
    refresh_standbys([this] {
      refreshing_ = false;
      Decision d2 = decide(cluster_view());
      last_decision_ = d2;
      if (d2.kind != Decision::Kind::failover) {
        after_round();
        return;
      }
      log::event(spdlog::level::warn, "failover_start", {{"NODE", state_.primary()}, {"TARGET", d2.target}},
                 "automatic failover: " + d2.reason);
      begin_failover(d2.target, "auto", d2.reason, false, [](Result<json::value>) {});
    });
    return;
  }
  // Logged once per new reason, and only when a failover is needed and cannot happen: a
  // stopped monitor or a down standby is not a blocked failover (monitoring_stopped and
  // node_down say those when they happen).
  const bool log_it = d.kind == Decision::Kind::no_candidate || d.blocked;
  if (log_it && d.reason != last_logged_reason_) {
    log::event(d.kind == Decision::Kind::no_candidate ? spdlog::level::err : spdlog::level::warn,
               d.kind == Decision::Kind::no_candidate ? "no_candidate" : "failover_blocked",
               {{"NODE", state_.primary()}}, d.reason);
  }
  last_logged_reason_ = log_it ? d.reason : "";
  last_decision_ = d;
  notifier_.notify("STATUS=" + status_line());
}

// The cluster's system identifier comes from the first primary drd manages and is kept in
// the state store, so a later start (or a server re-created with initdb) is compared with it.
void Daemon::learn_system_identifier() {
  if (cluster_system_id_stored_ || !pg_cluster() || !ready_) return;
  auto p = nodes_.find(state_.primary());
  if (p == nodes_.end() || !p->second.last.ok || !p->second.last.system_identifier) return;
  const std::string id = *p->second.last.system_identifier;
  if (cluster_system_id_ && *cluster_system_id_ != id) return;  // never taken from an outsider
  if (auto st = store_->set_cluster_fact("pg_system_identifier", id); !st) {
    spdlog::error("cannot record the cluster's system identifier: {}", st.error().message);
    return;
  }
  cluster_system_id_ = id;
  cluster_system_id_stored_ = true;
  spdlog::info("cluster system identifier {} (from primary {}) recorded", id, state_.primary());
}

std::string Daemon::status_line() const {
  int healthy = 0;
  for (auto& [name, n] : nodes_)
    if (n.health.health == Health::up) ++healthy;
  return "primary " + (state_.primary().empty() ? std::string("(none)") : state_.primary()) + ", " + std::to_string(healthy) + "/" +
         std::to_string(nodes_.size()) + " nodes healthy, term " + std::to_string(state_.term()) + ", " +
         failover_state_name(last_decision_.state);
}

void Daemon::probe_all_now(std::function<void(json::value)> done, const std::optional<std::string>& only) {
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
                          on_probe_result(name, std::move(r), timed_out, began);
                          if (--g->left == 0) g->done(json::object{{"nodes", std::move(g->rows)}});
                        });
  }
}

void Daemon::refresh_standbys(std::function<void()> done) {
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
    if (name == state_.primary() || n.health.health != Health::up) continue;
    if (state_.is_fenced(name)) continue;
    ++g->left;
    probe_with_deadline(control_, *n.worker, *n.node, budget, false,
                        [this, name, g, finish, timer](ProbeResult r, bool timed_out) {
                          if (stopped_) return;
                          // A failure here is left to the regular probes to count.
                          if (!g->finished && r.ok && !timed_out) {
                            auto& nn = nodes_.at(name);
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

void Daemon::flush_samples() {
  if (pending_samples_.empty()) return;
  if (auto st = store_->add_health_samples(pending_samples_); !st)
    spdlog::error("cannot record health samples: {}", st.error().message);
  pending_samples_.clear();
}

void Daemon::schedule_housekeeping() {
  if (stopped_) return;
  housekeeping_timer_->expires_after(std::chrono::seconds(1));
  housekeeping_timer_->async_wait([this](const boost::system::error_code& ec) {
    if (ec || stopped_) return;
    flush_samples();
    // Fold old raw samples a bounded batch at a time so a long backlog never stalls the loop.
    auto now_ms = to_unix_ms(clock_.now());
    if (auto st = store_->prune_health(now_ms - config_.monitoring.raw_retention.count(),
                                       now_ms - config_.monitoring.history_retention.count(), 5000);
        !st)
      spdlog::error("cannot prune health history: {}", st.error().message);
    if (!state_.monitoring()) last_round_at_ = clock_.steady();
    schedule_housekeeping();
  });
}

void Daemon::schedule_watchdog() {
  long long usec = notifier_.watchdog_usec();
  if (usec <= 0 || stopped_) return;
  watchdog_timer_->expires_after(std::chrono::microseconds(usec / 3));
  watchdog_timer_->async_wait([this, usec](const boost::system::error_code& ec) {
    if (ec || stopped_) return;
    // Only while the control loop really turns: probe answers or housekeeping arrived lately.
    auto quiet = clock_.steady() - last_round_at_;
    auto limit = std::chrono::microseconds(usec) + config_.monitoring.interval + config_.monitoring.timeout;
    if (quiet < limit) notifier_.notify("WATCHDOG=1");
    else spdlog::error("control loop stalled for {} ms; withholding watchdog",
                       std::chrono::duration_cast<std::chrono::milliseconds>(quiet).count());
    schedule_watchdog();
  });
}

void Daemon::schedule_tick() {
  if (!driver_ || stopped_ || driver_->tick_interval().count() <= 0) return;
  tick_timer_->expires_after(driver_->tick_interval());
  tick_timer_->async_wait([this](const boost::system::error_code& ec) {
    if (ec || stopped_) return;
    if (!tick_running_ && !failover_running_ && !state_.primary().empty() && acts()) {
      tick_running_ = true;
      auto* d = driver_.get();
      cluster_worker_->post([this, d] {
        Status st = d->tick();
        asio::post(control_, [this, st = std::move(st)] {
          tick_running_ = false;
          // Log a replication problem when it starts or changes, not on every tick.
          std::string err = st ? std::string() : st.error().message;
          if (err != last_tick_error_) {
            if (err.empty()) spdlog::info("replication: recovered");
            else spdlog::warn("replication: {}", err);
          }
          last_tick_error_ = err;
        });
      });
    }
    schedule_tick();
  });
}

}  // namespace drd
