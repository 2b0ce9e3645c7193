// PostgresCluster: attach/convergence, tick (probes, split-brain fencing,
// synchronous mode) and the replicas() snapshot. promote/rejoin live in
// postgres_cluster_promote.cpp.
#include "daemon/engines/postgres/postgres_cluster.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <future>

#include "common/log.hpp"

namespace drd {

using namespace std::chrono_literals;

namespace {
SteadyTime now() { return std::chrono::steady_clock::now(); }
// A node that failed its last tick probe is asked again with this short
// timeout: a frozen server must not hold the worker (and a promotion queued
// behind the tick) for a whole monitoring.timeout on every tick.
constexpr Millis kRetryProbeTimeout{150};
// A standby that has not streamed from the primary for this long is re-pointed.
constexpr auto kRepointAfter = 3s;
constexpr auto kRepointEvery = 10s;
constexpr Millis kRepointTimeout{3000};
constexpr Millis kAttachFollowTimeout{10'000};
constexpr auto kConvergeRetry = 1s;
}  // namespace

PostgresCluster::PostgresCluster(const Config& cfg, ProcessRunner& runner)
    : timeout_(cfg.monitoring.timeout),
      interval_(cfg.monitoring.interval),
      synchronous_(cfg.failover.synchronous),
      degrade_after_(cfg.failover.synchronous_degrade_after),
      max_lag_bytes_(cfg.failover.max_lag_bytes) {
  for (auto& nc : cfg.nodes) {
    Member m;
    m.cfg = nc;
    m.node = std::make_unique<PostgresNode>(nc, runner);
    members_.push_back(std::move(m));
  }
}

PostgresCluster::~PostgresCluster() = default;

Millis PostgresCluster::tick_interval() const { return std::clamp<Millis>(interval_, Millis(100), Millis(1000)); }

PostgresCluster::Member* PostgresCluster::member(const std::string& name) {
  for (auto& m : members_)
    if (m.cfg.name == name) return &m;
  return nullptr;
}

std::vector<std::string> PostgresCluster::names() const {
  std::vector<std::string> out;
  for (auto& m : members_) out.push_back(m.cfg.name);
  return out;
}

pgha::Probes PostgresCluster::probe_all(const std::set<std::string>& only, bool abortable) {
  std::vector<std::pair<std::string, std::future<ProbeResult>>> running;
  const std::atomic<bool>* abort = abortable ? &make_way_ : nullptr;
  for (auto& m : members_) {
    if (!only.empty() && !only.count(m.cfg.name)) continue;
    Millis t = m.last_probe_failed ? std::min(timeout_, kRetryProbeTimeout) : timeout_;
    PostgresNode* node = m.node.get();
    running.emplace_back(m.cfg.name,
                         std::async(std::launch::async, [node, t, abort] { return node->probe(t, false, abort); }));
  }
  pgha::Probes out;
  for (auto& [name, f] : running) out[name] = f.get();  // each probe is bounded by its own deadline
  if (abortable && make_way_) return out;  // cut short: these answers say nothing about the nodes
  for (auto& [name, r] : out) member(name)->last_probe_failed = !r.ok;
  classify(out);
  return out;
}

void PostgresCluster::set_system_identifier(const std::optional<std::string>& id) {
  if (id) system_id_ = id;
}

void PostgresCluster::classify(const pgha::Probes& probes) {
  if (!system_id_) {
    // The primary drd manages is a member by definition (drd never elects an outsider).
    auto p = probes.find(primary_);
    if (p != probes.end() && p->second.ok && p->second.system_identifier) system_id_ = p->second.system_identifier;
  }
  std::optional<std::string> id = system_id_;
  if (!id) {  // the primary has not answered yet: provisionally what most servers report
    std::vector<pgid::StartNode> nodes;
    for (auto& [name, r] : probes) nodes.push_back({name, r.ok, r.role == Role::standby, r.system_identifier, {}, {}, {}});
    id = pgid::cluster_identity(std::nullopt, nodes).system_id;
  }
  for (auto& [name, r] : probes) {
    if (!r.ok || !r.system_identifier) continue;  // a silent node keeps what it was
    auto why = pgid::not_member_reason(id, r.system_identifier);
    if (why) {
      if (!outsiders_.count(name))
        log::event(spdlog::level::err, "not_member", {{"NODE", name}},
                   name + ": " + *why + "; drd leaves it alone (no fencing, no re-pointing)");
      outsiders_[name] = *why;
    } else if (outsiders_.erase(name)) {
      spdlog::info("{} has the cluster's system identifier again: a member", name);
    }
  }
}

void PostgresCluster::fence_second_primary(const std::string& name, const std::string& why) {
  Member* m = member(name);
  if (!m) return;
  auto st = m->node->fence(std::max(timeout_ * 4, Millis(2000)));
  fenced_.insert(name);
  if (st) {
    fence_notes_[name] = "fenced: second primary";
    log::event(spdlog::level::warn, "fence", {{"NODE", name}, {"PRIMARY", primary_}},
               "fenced " + name + " (" + why + "): " + m->node->last_action());
  } else {
    fence_notes_[name] = "second primary; fencing failed: " + st.error().message;
    log::event(spdlog::level::err, "fence_failed", {{"NODE", name}, {"PRIMARY", primary_}},
               "cannot fence " + name + " (" + why + "): " + st.error().message);
  }
}

Status PostgresCluster::attach(const std::string& primary, const std::vector<std::string>& fenced) {
  primary_ = primary;
  fenced_ = {fenced.begin(), fenced.end()};
  fenced_.erase(primary_);
  fence_notes_.clear();
  applied_sync_names_.reset();
  sync_state_ = {};
  if (!member(primary_)) return make_error(Errc::not_found, "no node named '" + primary_ + "'");
  auto st = converge(probe_all());
  needs_converge_ = !st;
  next_converge_ = now() + kConvergeRetry;
  return st;
}

Status PostgresCluster::converge(const pgha::Probes& probes) {
  Member* p = member(primary_);
  const ProbeResult& pp = probes.at(primary_);
  if (!pp.ok)
    return make_error(Errc::unavailable, "primary " + primary_ + " does not answer: " + pp.error,
                      "drd keeps trying; check the server and its log");
  if (pp.role == Role::standby || !pp.writable) {
    // The store names it primary (a failover was recorded, then drd stopped): finish the promotion.
    spdlog::warn("{} is the recorded primary but is {}: promoting it", primary_,
                 pp.role == Role::standby ? "still in recovery" : "read-only");
    // drd stopped between claiming the term and fencing the former primary: nothing stopped
    // clients from committing there meanwhile (the chaos suite lost such commits).
    if (pp.role == Role::standby) fence_and_catch_up(*p, probes);
    if (auto s = p->node->promote(std::max(Millis(30'000), timeout_ * 10)); !s) return s;
    log::event(spdlog::level::warn, "promoted", {{"NODE", primary_}}, primary_ + " promoted to match the recorded primary");
  }
  std::vector<std::string> to_follow;
  for (auto& m : members_) {
    const std::string& name = m.cfg.name;
    if (name == primary_ || outsider(name)) continue;
    const ProbeResult& r = probes.at(name);
    if (!r.ok) {
      spdlog::warn("attach: {} does not answer ({}); it will be checked again on every tick", name, r.error);
      continue;
    }
    if (r.role == Role::primary && r.writable) {
      fence_second_primary(name, fenced_.count(name) ? "a fenced node accepts writes again" : "second primary");
      continue;
    }
    if (fenced_.count(name)) continue;
    if (r.role == Role::primary) {
      spdlog::warn("attach: {} is a read-only primary, not a standby of {}; run `drctl rejoin {}`", name, primary_, name);
      continue;
    }
    if (!pgha::streams(pp, name)) to_follow.push_back(name);
  }
  if (!to_follow.empty()) {
    std::vector<std::string> notes;
    repoint_standbys(to_follow, kAttachFollowTimeout, notes);
    for (auto& n : notes) spdlog::info("attach: {}", n);
  }
  if (synchronous_) manage_sync(probe_all({primary_}));
  publish(probes);
  return ok_status();
}

std::vector<std::string> PostgresCluster::standbys_except(const std::string& except) const {
  std::vector<std::string> out;
  for (auto& m : members_)
    if (m.cfg.name != primary_ && m.cfg.name != except && !fenced_.count(m.cfg.name) && !outsider(m.cfg.name))
      out.push_back(m.cfg.name);
  return out;
}

void PostgresCluster::repoint_standbys(const std::vector<std::string>& which, Millis timeout,
                                       std::vector<std::string>& notes) {
  Member* p = member(primary_);
  std::vector<std::pair<std::string, std::future<Status>>> running;
  for (auto& name : which) {
    Member* m = member(name);
    if (!m || name == primary_) continue;
    PostgresNode* node = m->node.get();
    NodeConfig target = p->cfg;
    running.emplace_back(name, std::async(std::launch::async, [node, target, timeout] { return node->follow(target, timeout); }));
  }
  for (auto& [name, f] : running) {
    Status st = f.get();
    if (st) notes.push_back(name + " streams from " + primary_);
    else notes.push_back(name + " does not follow " + primary_ + " yet: " + st.error().message +
                         (st.error().hint.empty() ? "" : " (" + st.error().hint + ")"));
  }
}

Status PostgresCluster::tick() {
  auto probes = probe_all({}, true);
  if (make_way_) return ok_status();  // a promotion is queued behind this tick
  if (needs_converge_ && now() >= next_converge_) {
    auto st = converge(probes);
    needs_converge_ = !st;
    next_converge_ = now() + kConvergeRetry;
    if (!st) {
      publish(probes);
      return st;
    }
    spdlog::info("{} is the primary again; cluster converged", primary_);
  }
  // Split brain: another writable primary is fenced in this very tick.
  for (auto& name : pgha::second_primaries(primary_, probes)) {
    if (outsider(name)) continue;  // another cluster's primary is not ours to fence
    fence_second_primary(name, fenced_.count(name) ? "a fenced node accepts writes again" : "second primary");
    probes.erase(name);  // its probe no longer says what it is
  }
  // Standbys that lost their upstream (e.g. a follow that timed out during a failover).
  const auto t = now();
  std::set<std::string> leave_alone = fenced_;
  for (auto& [name, why] : outsiders_) leave_alone.insert(name);
  auto lost = pgha::standbys_not_streaming(names(), primary_, probes, leave_alone);
  for (auto& m : members_) {
    bool is_lost = std::find(lost.begin(), lost.end(), m.cfg.name) != lost.end();
    if (!is_lost) {
      m.not_streaming_since.reset();
      continue;
    }
    if (!m.not_streaming_since) m.not_streaming_since = t;
    if (t - *m.not_streaming_since < kRepointAfter || t < m.next_follow_attempt) continue;
    m.next_follow_attempt = t + kRepointEvery;
    auto st = m.node->follow(member(primary_)->cfg, kRepointTimeout);
    if (st) spdlog::info("{} re-pointed at {} and streaming", m.cfg.name, primary_);
    else spdlog::warn("{} does not stream from {}: {}", m.cfg.name, primary_, st.error().message);
  }
  if (synchronous_) manage_sync(probes);
  publish(probes);
  const ProbeResult& pp = probes.at(primary_);
  if (!pp.ok) return make_error(Errc::unavailable, "primary " + primary_ + " does not answer: " + pp.error);
  return ok_status();
}

std::vector<std::string> PostgresCluster::sync_candidates() const {
  std::vector<const Member*> c;
  for (auto& m : members_)
    if (m.cfg.name != primary_ && !fenced_.count(m.cfg.name) && !outsider(m.cfg.name)) c.push_back(&m);
  std::stable_sort(c.begin(), c.end(), [](auto* a, auto* b) {
    return std::tie(a->cfg.priority, a->cfg.name) < std::tie(b->cfg.priority, b->cfg.name);
  });
  std::vector<std::string> out;
  for (auto* m : c) out.push_back(m->cfg.name);
  return out;
}

Status PostgresCluster::apply_sync_names(const std::string& value) {
  if (applied_sync_names_ && *applied_sync_names_ == value) return ok_status();
  auto st = member(primary_)->node->set_synchronous_standby_names(value, std::max(timeout_ * 4, Millis(2000)));
  if (st) {
    applied_sync_names_ = value;
    spdlog::info("synchronous_standby_names on {} = '{}'", primary_, value);
  }
  return st;
}

void PostgresCluster::manage_sync(const pgha::Probes& probes) {
  auto it = probes.find(primary_);
  if (it == probes.end() || !it->second.ok) return;  // nothing to do on a primary that does not answer
  auto cands = sync_candidates();
  bool any = false;
  for (auto& c : cands) any = any || pgha::streams(it->second, c);
  switch (pgha::next_sync_action(sync_state_, any, now(), degrade_after_)) {
    case pgha::SyncAction::degrade:
      log::event(spdlog::level::err, "sync_degraded", {{"NODE", primary_}},
                 "synchronous mode degraded to asynchronous on " + primary_ + ": no standby has streamed for " +
                     format_duration(degrade_after_) + "; commits no longer wait for a standby");
      break;
    case pgha::SyncAction::restore:
      log::event(spdlog::level::warn, "sync_restored", {{"NODE", primary_}},
                 "a standby streams from " + primary_ + " again: synchronous mode restored");
      break;
    case pgha::SyncAction::none:
      break;
  }
  std::string want = sync_state_.degraded ? std::string() : pgha::synchronous_standby_names(cands);
  if (auto st = apply_sync_names(want); !st)
    spdlog::warn("cannot set synchronous_standby_names on {}: {}", primary_, st.error().message);
}

void PostgresCluster::publish(const pgha::Probes& probes) {
  std::map<std::string, ReplicaInfo> prev;
  {
    std::lock_guard g(mu_);
    prev = snapshot_;
  }
  auto snap = pgha::replica_snapshot(names(), primary_, probes, fenced_, fence_notes_, prev);
  if (synchronous_ && sync_state_.degraded)
    for (auto& [n, info] : snap) info.sync = false;  // commits no longer wait for anyone
  for (auto& [n, why] : outsiders_) {
    // Its WAL positions are another cluster's: no lag, no position, just why.
    ReplicaInfo info;
    info.note = why;
    snap[n] = info;
  }
  std::lock_guard g(mu_);
  snapshot_ = std::move(snap);
  sync_degraded_published_ = synchronous_ && sync_state_.degraded;
}

std::string PostgresCluster::synchronous_state() const {
  if (!synchronous_) return "off";
  std::lock_guard g(mu_);
  return sync_degraded_published_ ? "degraded" : "on";
}

std::map<std::string, ReplicaInfo> PostgresCluster::replicas() const {
  std::lock_guard g(mu_);
  return snapshot_;
}

void PostgresCluster::detach() {
  std::lock_guard g(mu_);
  snapshot_.clear();
}

}  // namespace drd
