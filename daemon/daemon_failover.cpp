// Choosing the primary at start, and running failovers (automatic, manual,
// switchover). The store is written before the engine acts, so a drd killed
// halfway converges on restart: attach() makes reality match the store.
#include <spdlog/spdlog.h>

#include "common/crash_point.hpp"
#include "common/log.hpp"
#include "daemon/coord/coordinator.hpp"
#include "daemon/daemon.hpp"
#include "daemon/engines/postgres/postgres_cluster.hpp"
#include "daemon/engines/postgres/postgres_cluster_logic.hpp"
#include "daemon/engines/postgres/postgres_identity.hpp"

namespace drd {

namespace {
// The state-store fact that holds the PostgreSQL cluster's system identifier.
constexpr const char* kSystemIdFact = "pg_system_identifier";
}  // namespace

bool Daemon::pg_cluster() const {
  return !config_.nodes.empty() && config_.nodes.front().engine == Engine::postgresql;
}

bool Daemon::settle_pg_identity() {
  std::vector<pgid::StartNode> facts;
  for (auto& name : order_) {
    const ProbeResult& r = nodes_.at(name).last;
    pgid::StartNode n{name, r.ok, r.role == Role::standby, r.system_identifier, r.timeline,
                      r.role == Role::primary ? r.current_lsn : r.position, std::nullopt};
    if (r.ok && r.timeline_history) n.history = pgid::parse_timeline_history(*r.timeline_history);
    facts.push_back(std::move(n));
  }
  auto hold = [this](const std::string& why) {
    // The reason names LSNs, which move while the servers take writes: logged when it first
    // appears and then at most every 30 s.
    const auto now = clock_.steady();
    if (start_hold_.empty() || (why != start_hold_ && now - start_hold_logged_at_ >= std::chrono::seconds(30))) {
      log::event(spdlog::level::err, "start_hold", {}, "no primary elected, waiting for an operator: " + why);
      start_hold_logged_at_ = now;
    }
    start_hold_ = why;
    last_decision_ = Decision{Decision::Kind::none, "", "waiting for an operator: " + why, FailoverState::disabled};
    return false;
  };
  if (cluster_system_id_stored_ == false) {
    if (auto f = store_->cluster_fact(kSystemIdFact); f.ok() && f->has_value()) {
      cluster_system_id_ = **f;
      cluster_system_id_stored_ = true;
    }
  }
  auto id = pgid::cluster_identity(cluster_system_id_stored_ ? cluster_system_id_ : std::nullopt, facts);
  if (!id.hold.empty()) return hold(id.hold);
  if (id.system_id) {
    cluster_system_id_ = id.system_id;
    if (auto* pc = dynamic_cast<PostgresCluster*>(driver_.get()); pc && cluster_worker_) {
      auto sid = id.system_id;
      cluster_worker_->post([pc, sid] { pc->set_system_identifier(sid); });
    }
  }
  for (auto& n : facts)
    if (auto why = pgid::not_member_reason(cluster_system_id_, n.reachable ? n.system_id : std::nullopt))
      spdlog::warn("{}: {}", n.name, *why);
  auto v = pgid::settle_primaries(facts, cluster_system_id_);
  switch (v.kind) {
    case pgid::PrimaryVerdict::Kind::needs_operator:
      return hold(v.reason);
    case pgid::PrimaryVerdict::Kind::none:
      break;
    case pgid::PrimaryVerdict::Kind::one:
      // With drd's state at hand a lone primary that is not the recorded one is an
      // unfinished failover, which attach() finishes; without it the servers decide, not
      // the configuration's `type: primary`.
      if (!state_.primary().empty() || !nodes_.at(v.primary).last.writable) break;
      [[fallthrough]];
    case pgid::PrimaryVerdict::Kind::winner:
      if (state_.primary() != v.primary) {
        auto cas = cluster_store().compare_and_set_primary(state_.term(), v.primary);
        if (!cas.ok() || !*cas) {
          spdlog::error("cannot record the primary {}: {}", v.primary, cas.ok() ? "term changed" : cas.error().message);
          break;
        }
        const std::string before = state_.primary();
        state_.primary_recorded(v.primary);
        log::event(spdlog::level::warn, "primary_elected", {{"NODE", state_.primary()}, {"TERM", std::to_string(state_.term())}},
                   (before.empty() ? std::string("no primary recorded (drd's state is new or was lost); ")
                                   : "recorded primary " + before + " is not the one to keep; ") +
                       v.reason);
      }
      for (auto& loser : v.fence) {
        state_.fence(loser);
        if (auto st = cluster_store().set_fenced(loser, true); !st) spdlog::error("{}", st.error().message);
        log::event(spdlog::level::warn, "fence", {{"NODE", loser}, {"PRIMARY", state_.primary()}},
                   loser + " is a primary on an older or abandoned history and is fenced (not re-pointed): " +
                       v.reason + ". Its data is kept; `drctl rejoin " + loser + "` makes it a standby of " +
                       state_.primary() + " and discards what it wrote after the fork");
      }
      break;
  }
  start_hold_.clear();
  return true;
}

void Daemon::recheck_start_hold() {
  if (!ready_ || failover_running_ || !acts()) return;
  settle_startup_primary([] {});
}

// The pending record and the history live in the cluster store: with etcd, a drd that
// takes the lead after the leader died mid-failover finishes (or drops) what that one
// started, whichever host it runs on.
void Daemon::record_interrupted_failover(const std::string& outcome) {
  auto p = cluster_store().pending_failover();
  if (!p.ok() || !p->has_value()) return;
  FailoverRecord r = **p;
  // Only a claim that took effect (its term is the stored one) happened; an
  // older one was recorded already or lost its race, and is just dropped.
  auto hist = cluster_store().history(1);
  const bool recorded = hist.ok() && !hist->empty() && hist->front().term == r.term;
  if (r.term != state_.term() || r.to != state_.primary() || recorded) {
    (void)cluster_store().set_pending_failover(std::nullopt);
    return;
  }
  const auto now_ms = to_unix_ms(clock_.now());
  r.duration_ms = std::max<std::int64_t>(0, now_ms - r.time_ms);
  r.time_ms = now_ms;
  std::string how = outcome;
  if (coord_) {  // not a restart: another drd carries on
    const std::string restart = "drd started again", took = "drd " + coord_->name() + " took the lead";
    for (auto at = how.find(restart); at != std::string::npos; at = how.find(restart, at + took.size()))
      how.replace(at, restart.size(), took);
  }
  r.reason += std::string(coord_ ? " (the leading drd" : " (drd") + " stopped during this failover; " + how + ")";
  if (auto st = cluster_store().append_history(r); !st) {
    spdlog::error("cannot record the interrupted failover: {}", st.error().message);
    return;
  }
  log::event(spdlog::level::warn, "failover_done",
             {{"NODE", r.to}, {"FROM", r.from}, {"TERM", std::to_string(r.term)}, {"MODE", r.mode},
              {"DURATION_MS", std::to_string(r.duration_ms)}},
             "failover " + r.from + " -> " + r.to + " (term " + std::to_string(r.term) + ") interrupted by a drd stop: " +
                 outcome);
  mon_->on_failover(clock_.now(), r.from, r.to, r.mode, r.term);
}

void Daemon::settle_startup_primary(std::function<void()> ready) {
  if (!acts()) {  // a follower: the leading drd settles the primary (become_leader())
    after_round();
    ready();
    return;
  }
  if (pg_cluster() && !settle_pg_identity()) {
    // Nothing elected, nothing attached: no server is fenced or re-pointed until the
    // question is answered (recheck_start_hold() asks again after every round of probes).
    auto done = std::move(ready);
    done();
    return;
  }
  auto views = node_views();
  // Servers of another cluster take no part in the choice.
  views.erase(std::remove_if(views.begin(), views.end(), [](const NodeView& v) { return v.not_member.has_value(); }),
              views.end());
  StartupChoice c = choose_startup_primary(views, state_.primary());
  // Attaches the engine to the settled primary, then reports ready. Takes
  // `ready` only when called, so the failover branch below can take it instead.
  auto attach = [this, &ready]() {
    auto done = std::move(ready);
    if (driver_ && !state_.primary().empty()) {
      auto* d = driver_.get();
      auto primary = state_.primary();
      auto fenced = state_.fenced();
      cluster_worker_->post([this, d, primary, fenced, done = std::move(done)]() mutable {
        Status st = d->attach(primary, fenced);
        asio::post(control_, [this, st = std::move(st), done = std::move(done)]() mutable {
          if (!st) spdlog::error("cannot attach replication to primary {}: {}", state_.primary(), st.error().message);
          record_interrupted_failover(st ? "finished when drd started again"
                                         : "drd started again and keeps converging: " + st.error().message);
          schedule_tick();
          after_round();
          done();
        });
      });
      return;
    }
    record_interrupted_failover("finished when drd started again");
    after_round();
    done();
  };
  if (!c.primary) {
    spdlog::warn("no primary yet: {}", c.reason);
    attach();
    return;
  }
  if (state_.primary().empty()) {
    // First start: nothing to fail over from, just record the choice.
    auto cas = cluster_store().compare_and_set_primary(state_.term(), *c.primary);
    if (cas.ok() && *cas) {
      state_.primary_recorded(*c.primary);
      log::event(spdlog::level::info, "primary_elected", {{"NODE", state_.primary()}, {"TERM", std::to_string(state_.term())}},
                 c.reason);
    } else {
      spdlog::error("cannot record the first primary: {}", cas.ok() ? "term changed" : cas.error().message);
    }
    attach();
    return;
  }
  if (!c.changed) {
    spdlog::info("{}", c.reason);
    attach();
    return;
  }
  // The recorded primary is not healthy at start: that is a failover, if allowed.
  if (!state_.auto_failover()) {
    spdlog::warn("recorded primary {} is not healthy at start and automatic failover is disabled", state_.primary());
    attach();
    return;
  }
  if (std::string why; !coord_allows_failover(why)) {
    spdlog::warn("recorded primary {} is not healthy, but {}", state_.primary(), why);
    attach();
    return;
  }
  auto target = *c.primary;
  auto reason = c.reason;
  record_interrupted_failover("not finished: " + state_.primary() + " was not healthy when drd started again, so a new failover follows");
  attach_after_failover_ = true;
  begin_failover(target, "auto", reason, false,
                 [ready = std::move(ready)](Result<json::value>) mutable { ready(); });
}

void Daemon::begin_failover(const std::string& target, const std::string& mode, const std::string& reason,
                            bool force, Reply reply) {
  if (failover_running_) {
    reply(make_error(Errc::conflict, "a failover is already running", "wait for it and check `drctl history`"));
    return;
  }
  if (!start_hold_.empty()) {
    reply(make_error(Errc::refused, "drd elected no primary at start and waits for an operator: " + start_hold_,
                     "stop the server you do not want to keep (or make it a standby); drd carries on by itself"));
    return;
  }
  if (!driver_) {
    reply(make_error(Errc::unsupported, "this drd cannot promote " + std::string(engine_name(config_.nodes.front().engine)) +
                                            " nodes yet"));
    return;
  }
  // Manual requests are checked here against the same policy as automatic ones.
  if (mode != "auto") {
    FailoverPolicy p{config_.failover.max_lag_bytes, config_.failover.synchronous};
    Choice c = choose_failover_target(node_views(), state_.primary(), p, force, target);
    if (!c.target) {
      reply(make_error(Errc::refused, c.reason,
                       c.reason.find("max_lag") != std::string::npos ? "use --force to promote it anyway" : ""));
      return;
    }
  }
  if (mode == "switchover" && pg_cluster()) {
    // A paused (or far behind) target would leave the primary fenced while it replays
    // nothing: refused before anything changes hands. The driver checks again on fresh
    // sessions before it fences.
    auto reps = driver_->replicas();
    if (auto r = reps.find(target); r != reps.end())
      if (auto why = pgha::switchover_refusal(target, r->second.replay_paused, r->second.replay_lag_bytes,
                                              config_.failover.max_lag_bytes)) {
        reply(make_error(Errc::refused, "switchover refused, nothing was changed: " + *why,
                         r->second.replay_paused ? "resume it (SELECT pg_wal_replay_resume() on " + target +
                                                       "), or pick another node"
                                                 : "wait until " + target + " has replayed more, or pick another node"));
        return;
      }
  }
  failover_running_ = true;
  const std::string from = state_.primary();
  const auto started = clock_.steady();
  // 0. What is about to happen, so a drd killed before the history row is
  //    written still records this failover when it starts again.
  FailoverRecord pending{to_unix_ms(clock_.now()), from, target, mode, reason, 0, 0, state_.term() + 1};
  if (auto st = cluster_store().set_pending_failover(pending); !st)
    spdlog::error("cannot record the pending failover: {}", st.error().message);
  // 1. Claim the new term first: a crash from here on converges to `target`. The old
  //    primary is recorded as fenced in the same transaction (not for a switchover).
  const bool fence_from = mode != "switchover" && !from.empty() && from != target;
  auto cas = cluster_store().claim_primary(state_.term(), target, fence_from ? from : std::string());
  if (!cas.ok() || !*cas) {
    (void)cluster_store().set_pending_failover(std::nullopt);
    failover_running_ = false;
    reply(make_error(Errc::conflict, cas.ok() ? "the cluster term changed underneath this failover"
                                              : "cannot record the new primary: " + cas.error().message));
    return;
  }
  state_.primary_recorded(target);
  if (fence_from) state_.fence(from);
  log::event(spdlog::level::warn, "failover", {{"NODE", target}, {"FROM", from}, {"TERM", std::to_string(state_.term())}, {"MODE", mode}},
             "promoting " + target + " (" + mode + "): " + reason);
  crash_point("failover_claimed");
  PromoteRequest req;
  req.old_primary = from;
  req.target = target;
  if (auto p = nodes_.find(from); p != nodes_.end()) {
    // A server that answered (even "too many clients", "shutting down", a refusal of drd) is
    // alive: it is fenced (SQL, else pg_ctl stop), never frozen and SIGKILLed as a silent one.
    const ServerState s = p->second.last.server;
    req.old_primary_reachable = p->second.last.ok || (s != ServerState::no_answer && s != ServerState::crashed);
  }
  req.switchover = mode == "switchover";
  req.timeout = std::max<Millis>(Millis(30'000), config_.monitoring.timeout * 10);
  req.term = state_.term();
  auto* d = driver_.get();
  const std::int64_t term = state_.term();
  d->make_way();  // a tick running now on the cluster worker ends early
  cluster_worker_->post([this, d, req, from, target, mode, reason, started, term, reply = std::move(reply)]() mutable {
    auto outcome = d->promote(req);
    asio::post(control_, [this, from, target, mode, reason, started, term, outcome = std::move(outcome),
                          reply = std::move(reply)]() mutable {
      finish_failover(from, target, mode, reason, started, std::move(outcome), term, std::move(reply));
    });
  });
}

void Daemon::finish_failover(const std::string& from, const std::string& to, const std::string& mode,
                             const std::string& reason, SteadyTime started, Result<PromoteOutcome> outcome,
                             std::int64_t term, Reply reply) {
  failover_running_ = false;
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(clock_.steady() - started).count();
  if (!outcome && mode == "switchover" && outcome.error().code == Errc::refused && state_.primary() == to) {
    // A switchover aborted before promotion: the old primary is still the writable one
    // (the driver unfenced it), so the store goes back to naming it, under a new term.
    auto cas = cluster_store().compare_and_set_primary(state_.term(), from);
    if (cas.ok() && *cas) state_.primary_recorded(from);
    (void)cluster_store().set_pending_failover(std::nullopt);  // nothing changed hands: no history row
    log::event(spdlog::level::err, "switchover_aborted", {{"NODE", from}, {"TARGET", to}, {"TERM", std::to_string(state_.term())}},
               "switchover to " + to + " aborted before promotion; " + from + " stays primary: " +
                   outcome.error().message);
    reply(outcome.error());
    schedule_tick();
    return;
  }
  if (!outcome) {
    // The store already names `to`. SQLite: the engine left `to` unpromoted (no link, no
    // term), so it counts as a lost primary and the next round of decisions promotes the
    // next candidate at once, instead of leaving the cluster without a writable primary.
    // PostgreSQL: the next attach()/decision retries the promotion (a half-done pg_promote
    // must not be followed by promoting another server).
    log::event(spdlog::level::err, "failover_failed", {{"NODE", to}, {"FROM", from}, {"TERM", std::to_string(term)}},
               "promotion of " + to + " failed after " + std::to_string(ms) + " ms: " + outcome.error().message);
    if (config_.nodes.front().engine == Engine::sqlite && mode != "switchover")
      failed_promotions_[to] = outcome.error().message;
    reply(outcome.error());
    schedule_tick();
    after_round();
    return;
  }
  failed_promotions_.erase(to);
  for (auto& note : outcome->notes) spdlog::info("failover {} -> {}: {}", from, to, note);
  FailoverRecord rec{to_unix_ms(clock_.now()), from, to, mode, reason, ms, outcome->lag_bytes, term, outcome->position};
  if (auto st = cluster_store().append_history(rec); !st) spdlog::error("cannot record failover history: {}", st.error().message);
  mon_->on_failover(clock_.now(), from, to, mode, term);
  archive_promoted(from, to, mode);  // SQLite point-in-time coverage continues on `to`
  if (mode == "switchover") {
    // The old primary stays a standby, not fenced.
    if (auto st = cluster_store().set_fenced(from, false); !st) spdlog::error("{}", st.error().message);
    state_.unfence(from);
  }
  // The new primary starts from a clean health slate as far as failures go.
  log::event(spdlog::level::warn, "failover_done",
             {{"NODE", to}, {"FROM", from}, {"TERM", std::to_string(term)}, {"MODE", mode},
              {"DURATION_MS", std::to_string(ms)}},
             "failover " + from + " -> " + to + " done in " + std::to_string(ms) + " ms (term " + std::to_string(term) + ")");
  notifier_.notify("STATUS=" + status_line());
  json::object h{{"time_ms", rec.time_ms}, {"from", from}, {"to", to}, {"mode", mode}, {"reason", reason},
                 {"duration_ms", ms}, {"lag_bytes", rec.lag_bytes}, {"term", term}};
  if (rec.position) h["position"] = *rec.position;
  reply(json::value(std::move(h)));
  if (attach_after_failover_) attach_after_failover_ = false;
  schedule_tick();
}

}  // namespace drd
