#include "drd_version.hpp"
#include "daemon/daemon.hpp"

#include <spdlog/spdlog.h>

#include "common/log.hpp"
#include "daemon/engines/cluster_factory.hpp"
#include "daemon/engines/postgres/postgres_identity.hpp"
#include "daemon/coord/cluster_link.hpp"
#include "daemon/coord/coordinator.hpp"
#include "daemon/engines/node_factory.hpp"

namespace drd {

// What the failover executor may call of the daemon (FailoverExecutor::Host); all on the
// control strand.
struct Daemon::ExecutorHost final : FailoverExecutor::Host {
  explicit ExecutorHost(Daemon& daemon) : d(daemon) {}
  Daemon& d;

  ClusterStore& cluster_store() override { return d.cluster_store(); }
  ClusterDriver* driver() override { return d.driver_.get(); }
  BlockingWorker* cluster_worker() override { return d.cluster_worker_.get(); }
  std::vector<std::string> node_names() const override { return d.probes_->names(); }
  const ProbeResult* last_probe(const std::string& node) const override { return d.probes_->last(node); }
  std::vector<NodeView> node_views() const override { return d.node_views(); }
  ClusterView cluster_view() const override { return d.cluster_view(); }
  // Every healthy standby but the fenced ones, asked once more before an automatic failover.
  void refresh_standbys(std::function<void()> done) override {
    d.probes_->refresh([this](const std::string& n) { return n == d.state_.primary() || d.state_.is_fenced(n); },
                       std::move(done));
  }
  void after_round() override { d.after_round(); }
  void schedule_tick() override { d.schedule_tick(); }
  bool ready() const override { return d.ready_; }
  void failover_recorded(const FailoverRecord& r, bool promoted_now) override {
    d.mon_->on_failover(d.clock_.now(), r.from, r.to, r.mode, r.term);
    if (promoted_now) d.archive_promoted(r.from, r.to, r.mode);  // SQLite point-in-time coverage continues on `to`
  }
  void status_changed() override { d.notifier_.notify("STATUS=" + d.status_line()); }
  bool acts() const override { return d.acts(); }
  bool coord_allows_failover(std::string& why) const override { return !d.link_ || d.link_->allows_failover(why); }
  std::optional<std::string> coord_name() const override {
    return d.link_ ? std::optional<std::string>(d.link_->name()) : std::nullopt;
  }
  bool primary_host_fenced() const override { return d.link_ && d.link_->primary_host_fenced(); }
};

// What the multi-host link may call of the daemon (coord::ClusterLink::Host); all on the
// control strand.
struct Daemon::LinkHost final : coord::ClusterLink::Host {
  explicit LinkHost(Daemon& daemon) : d(daemon) {}
  Daemon& d;

  void dispatch(const std::string& method, const json::object& params, const Caller& caller, Reply reply) override {
    d.dispatch(method, params, caller, std::move(reply));
  }
  const ProbeResult* last_probe(const std::string& node) const override { return d.probes_->last(node); }
  bool local_up() const override { return d.probes_->has(d.config_.local) && !d.probes_->is(d.config_.local, Health::down); }
  bool ready() const override { return d.ready_; }
  bool stopped() const override { return d.stopped_; }
  void took_lead() override {
    // The previous leader may have changed things since the last snapshot: read again.
    d.load_cluster_state();
    if (auto a = d.cluster_store().flag("auto_failover"); a.ok() && a->has_value() && d.config_.enabled)
      d.state_.set_auto_failover(**a);
    // Records the first primary, or attaches the engine (or fails over from a dead one).
    d.failover_->settle_startup([] {});
  }
  void lost_lead() override {
    if (d.driver_ && d.cluster_worker_) {
      auto* driver = d.driver_.get();
      d.cluster_worker_->post([driver] { driver->detach(); });
    }
  }
  void after_round() override { d.after_round(); }
};

// What the probe loop may call of the daemon (ProbeLoop::Host).
struct Daemon::LoopHost final : ProbeLoop::Host {
  explicit LoopHost(Daemon& daemon) : d(daemon) {}
  Daemon& d;

  bool monitoring() const override { return d.state_.monitoring(); }
  bool stopped() const override { return d.stopped_; }
  bool records_failures_from(std::chrono::steady_clock::time_point began) const override {
    return d.ready_ && began >= d.ready_since_;
  }
  void answered(const std::string& node, SysTime at, bool ok, double response_ms) override {
    d.mon_->on_probe(node, at, ok, response_ms);
  }
  void after_round() override { d.after_round(); }
};

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
  loop_host_ = std::make_unique<LoopHost>(*this);
  probes_ = std::make_unique<ProbeLoop>(*loop_host_, io_, control_, config_, clock_, *store_);
  executor_host_ = std::make_unique<ExecutorHost>(*this);
  failover_ = std::make_unique<FailoverExecutor>(*executor_host_, control_, clock_, config_, state_, *store_);
}

Status Daemon::start_http() { return mon_->start(); }

Status Daemon::set_coordinator(std::unique_ptr<coord::Coordinator> c) {
  link_host_ = std::make_unique<LinkHost>(*this);
  link_ = std::make_unique<coord::ClusterLink>(*link_host_, io_, control_, config_, clock_, state_, std::move(c));
  return link_->start();
}

ClusterStore& Daemon::cluster_store() { return link_ ? link_->store() : *store_; }

Daemon::~Daemon() { stop(); }

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
    probes_->build([this](const NodeConfig& nc) { return node_factory_ ? node_factory_(nc) : make_node(nc, runner_); });
    driver_ = driver_factory_ ? driver_factory_(config_) : make_cluster_driver(config_, runner_);
    cluster_worker_ = std::make_unique<BlockingWorker>();
    housekeeping_timer_ = std::make_unique<asio::steady_timer>(control_);
    watchdog_timer_ = std::make_unique<asio::steady_timer>(control_);
    tick_timer_ = std::make_unique<asio::steady_timer>(control_);
    flush_timer_ = std::make_unique<asio::steady_timer>(control_);
    started_ = true;
    // The first decision needs one answer from every node.
    probes_->probe_all_now([this, ready = std::move(ready)](json::value) mutable {
      // Requests are answered only once the primary is settled (ready_), so no
      // client ever sees a half-started daemon.
      failover_->settle_startup([this, ready = std::move(ready)]() mutable {
        ready_ = true;
        ready_since_ = std::chrono::steady_clock::now();
        ready();
        auto waiting = std::move(waiting_for_ready_);
        for (auto& w : waiting) w();
      });
      backup_start();
      if (state_.monitoring()) probes_->schedule_all(config_.monitoring.interval);
      schedule_housekeeping();
      schedule_watchdog();
    });
  });
}

void Daemon::stop() {
  if (stopped_) return;
  stopped_ = true;
  for (auto* t : {&housekeeping_timer_, &watchdog_timer_, &tick_timer_, &flush_timer_})
    if (*t) (*t)->cancel();
  probes_->stop();  // timers cancelled, samples written
  backup_stop();
  if (link_) link_->stop();
  if (mon_) mon_->stop();
  if (driver_ && cluster_worker_) {
    auto* d = driver_.get();
    cluster_worker_->post([d] { d->detach(); });
  }
  cluster_worker_.reset();  // waits for the detach (or leaves a stuck call behind)
  probes_->release_workers();
}

std::vector<NodeView> Daemon::node_views() const {
  std::vector<NodeView> out;
  auto reps = driver_ ? driver_->replicas() : std::map<std::string, ReplicaInfo>{};
  const ProbeLoop::NodeState* primary = probes_->find(state_.primary());
  for (auto& name : probes_->names()) {
    const ProbeLoop::NodeState& n = probes_->at(name);
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
      v.not_member = pgid::not_member_reason(failover_->system_id(), n.last.system_identifier);
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
    if (primary)
      for (auto& rs : primary->last.replicas)
        if (rs.application_name == name && rs.sync_state == "sync") v.sync_standby = true;
    out.push_back(std::move(v));
  }
  return out;
}

ClusterView Daemon::cluster_view() const {
  ClusterView v;
  v.primary = state_.primary();
  if (const ProbeLoop::NodeState* p = probes_->find(state_.primary())) {
    v.primary_health = p->health.health;
    v.primary_failures = p->health.consecutive_failures;
  }
  if (link_ && link_->primary_host_fenced()) {  // its host drd is gone and fenced it before its lease ran out
    v.primary_health = Health::down;
    v.primary_failures = std::max(v.primary_failures, config_.monitoring.failure_threshold);
  }
  v.auto_failover = state_.auto_failover();
  v.monitoring = state_.monitoring();
  v.failover_running = failover_->promoting();
  v.primary_paused = state_.primary_paused();
  if (driver_) v.primary_lost = driver_->primary_problem();
  if (auto f = failover_->failed_promotion(state_.primary()); v.primary_lost.empty() && f)
    v.primary_lost = "its promotion failed (" + *f + ")";
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
  if (!started_) return;
  if (failover_->deciding()) archive_round();  // a new base backup due for point-in-time coverage
  failover_->round();
}

std::string Daemon::status_line() const {
  return "primary " + (state_.primary().empty() ? std::string("(none)") : state_.primary()) + ", " +
         std::to_string(probes_->healthy()) + "/" + std::to_string(probes_->names().size()) + " nodes healthy, term " + std::to_string(state_.term()) + ", " +
         failover_state_name(failover_->last_decision().state);
}

void Daemon::schedule_housekeeping() {
  if (stopped_) return;
  housekeeping_timer_->expires_after(std::chrono::seconds(1));
  housekeeping_timer_->async_wait([this](const boost::system::error_code& ec) {
    if (ec || stopped_) return;
    probes_->flush_samples();
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
    if (!tick_running_ && !failover_->promoting() && !state_.primary().empty() && acts()) {
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
