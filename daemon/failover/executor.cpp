// The failover executor (executor.hpp): the primary at start, and every failover.
// The store is written before the engine acts, so a drd killed halfway converges on
// restart: attach() makes reality match the store.
#include "daemon/failover/executor.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "common/crash_point.hpp"
#include "common/log.hpp"
#include "daemon/engines/postgres/postgres_cluster.hpp"
#include "daemon/engines/postgres/postgres_cluster_logic.hpp"
#include "daemon/engines/postgres/postgres_identity.hpp"

namespace drd {

namespace asio = boost::asio;
namespace json = boost::json;

namespace {
// The state-store fact that holds the PostgreSQL cluster's system identifier.
constexpr const char* kSystemIdFact = "pg_system_identifier";
}  // namespace

FailoverExecutor::FailoverExecutor(Host& host, asio::strand<asio::io_context::executor_type>& control, Clock& clock,
                                   const Config& config, ClusterState& state, SqliteStateStore& facts)
    : host_(host), control_(control), clock_(clock), config_(config), state_(state), facts_(facts) {}

std::optional<std::string> FailoverExecutor::failed_promotion(const std::string& node) const {
  auto f = failed_promotions_.find(node);
  return f == failed_promotions_.end() ? std::nullopt : std::optional<std::string>(f->second);
}

bool FailoverExecutor::deciding() const {
  return start_hold_.empty() && phase_ != Phase::refreshing && !state_.primary().empty();
}

void FailoverExecutor::round() {
  if (!start_hold_.empty()) {  // no primary elected at start: ask the servers again
    if (host_.ready() && phase_ != Phase::promoting && host_.acts()) settle_startup([] {});
    return;
  }
  if (state_.primary().empty() || phase_ == Phase::refreshing) return;
  learn_system_identifier();
  Decision d = decide(host_.cluster_view());
  if (d.kind == Decision::Kind::failover && host_.coord_name()) {
    // Multi-host: followers only watch; the leader waits while the primary's host drd
    // still vouches for its database (it has not fenced it).
    std::string why;
    if (!host_.acts()) d = Decision{Decision::Kind::none, "", "primary " + state_.primary() + " is down; the leading drd acts", d.state};
    else if (!host_.coord_allows_failover(why)) d = Decision{Decision::Kind::none, "", why, d.state, /*blocked=*/true};
    else if (host_.primary_host_fenced())
      d.reason = "the drd beside " + state_.primary() + " left the cluster and fenced it (it refuses writes); promoting " + d.target;
  }
  if (d.kind == Decision::Kind::failover) {
    // The standbys' positions are compared, so they must be the final ones:
    // ask them again now that the primary is down, then decide for real.
    phase_ = Phase::refreshing;
    host_.refresh_standbys([this] {
      if (phase_ != Phase::refreshing) return;  // a manual failover began meanwhile; its end decides again
      phase_ = Phase::idle;
      Decision d2 = decide(host_.cluster_view());
      last_decision_ = d2;
      if (d2.kind != Decision::Kind::failover) {
        host_.after_round();
        return;
      }
      log::event(spdlog::level::warn, "failover_start", {{"NODE", state_.primary()}, {"TARGET", d2.target}},
                 "automatic failover: " + d2.reason);
      begin(d2.target, "auto", d2.reason, false, [](Result<json::value>) {});
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
  host_.status_changed();
}

// The cluster's system identifier comes from the first primary drd manages and is kept in
// the state store, so a later start (or a server re-created with initdb) is compared with it.
void FailoverExecutor::learn_system_identifier() {
  if (system_id_stored_ || !pg_cluster() || !host_.ready()) return;
  const ProbeResult* p = host_.last_probe(state_.primary());
  if (!p || !p->ok || !p->system_identifier) return;
  const std::string id = *p->system_identifier;
  if (system_id_ && *system_id_ != id) return;  // never taken from an outsider
  if (auto st = facts_.set_cluster_fact(kSystemIdFact, id); !st) {
    spdlog::error("cannot record the cluster's system identifier: {}", st.error().message);
    return;
  }
  system_id_ = id;
  system_id_stored_ = true;
  spdlog::info("cluster system identifier {} (from primary {}) recorded", id, state_.primary());
}

bool FailoverExecutor::pg_cluster() const {
  return !config_.nodes.empty() && config_.nodes.front().engine == Engine::postgresql;
}

bool FailoverExecutor::settle_pg_identity() {
  std::vector<pgid::StartNode> facts;
  for (auto& name : host_.node_names()) {
    const ProbeResult& r = *host_.last_probe(name);
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
  if (system_id_stored_ == false) {
    if (auto f = facts_.cluster_fact(kSystemIdFact); f.ok() && f->has_value()) {
      system_id_ = **f;
      system_id_stored_ = true;
    }
  }
  auto id = pgid::cluster_identity(system_id_stored_ ? system_id_ : std::nullopt, facts);
  if (!id.hold.empty()) return hold(id.hold);
  if (id.system_id) {
    system_id_ = id.system_id;
    if (auto* pc = dynamic_cast<PostgresCluster*>(host_.driver()); pc && host_.cluster_worker()) {
      auto sid = id.system_id;
      host_.cluster_worker()->post([pc, sid] { pc->set_system_identifier(sid); });
    }
  }
  for (auto& n : facts)
    if (auto why = pgid::not_member_reason(system_id_, n.reachable ? n.system_id : std::nullopt))
      spdlog::warn("{}: {}", n.name, *why);
  auto v = pgid::settle_primaries(facts, system_id_);
  switch (v.kind) {
    case pgid::PrimaryVerdict::Kind::needs_operator:
      return hold(v.reason);
    case pgid::PrimaryVerdict::Kind::none:
      break;
    case pgid::PrimaryVerdict::Kind::one:
      // With drd's state at hand a lone primary that is not the recorded one is an
      // unfinished failover, which attach() finishes; without it the servers decide, not
      // the configuration's `type: primary`.
      if (!state_.primary().empty() || !host_.last_probe(v.primary)->writable) break;
      [[fallthrough]];
    case pgid::PrimaryVerdict::Kind::winner:
      if (state_.primary() != v.primary) {
        auto cas = host_.cluster_store().compare_and_set_primary(state_.term(), v.primary);
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
        if (auto st = host_.cluster_store().set_fenced(loser, true); !st) spdlog::error("{}", st.error().message);
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

// The pending record and the history live in the cluster store: with etcd, a drd that
// takes the lead after the leader died mid-failover finishes (or drops) what that one
// started, whichever host it runs on.
void FailoverExecutor::record_interrupted(const std::string& outcome) {
  auto p = host_.cluster_store().pending_failover();
  if (!p.ok() || !p->has_value()) return;
  FailoverRecord r = **p;
  // Only a claim that took effect (its term is the stored one) happened; an
  // older one was recorded already or lost its race, and is just dropped.
  auto hist = host_.cluster_store().history(1);
  const bool recorded = hist.ok() && !hist->empty() && hist->front().term == r.term;
  if (r.term != state_.term() || r.to != state_.primary() || recorded) {
    (void)host_.cluster_store().set_pending_failover(std::nullopt);
    return;
  }
  const auto now_ms = to_unix_ms(clock_.now());
  r.duration_ms = std::max<std::int64_t>(0, now_ms - r.time_ms);
  r.time_ms = now_ms;
  std::string how = outcome;
  const std::optional<std::string> coord = host_.coord_name();
  if (coord) {  // not a restart: another drd carries on
    const std::string restart = "drd started again", took = "drd " + *coord + " took the lead";
    for (auto at = how.find(restart); at != std::string::npos; at = how.find(restart, at + took.size()))
      how.replace(at, restart.size(), took);
  }
  r.reason += std::string(coord ? " (the leading drd" : " (drd") + " stopped during this failover; " + how + ")";
  if (auto st = host_.cluster_store().append_history(r); !st) {
    spdlog::error("cannot record the interrupted failover: {}", st.error().message);
    return;
  }
  log::event(spdlog::level::warn, "failover_done",
             {{"NODE", r.to}, {"FROM", r.from}, {"TERM", std::to_string(r.term)}, {"MODE", r.mode},
              {"DURATION_MS", std::to_string(r.duration_ms)}},
             "failover " + r.from + " -> " + r.to + " (term " + std::to_string(r.term) + ") interrupted by a drd stop: " +
                 outcome);
  host_.failover_recorded(r, false);
}

void FailoverExecutor::settle_startup(std::function<void()> ready) {
  if (!host_.acts()) {  // a follower: the leading drd settles the primary (become_leader())
    host_.after_round();
    ready();
    return;
  }
  if (pg_cluster() && !settle_pg_identity()) {
    // Nothing elected, nothing attached: no server is fenced or re-pointed until the
    // question is answered (round() asks again after every round of probes).
    auto done = std::move(ready);
    done();
    return;
  }
  auto views = host_.node_views();
  // Servers of another cluster take no part in the choice.
  views.erase(std::remove_if(views.begin(), views.end(), [](const NodeView& v) { return v.not_member.has_value(); }),
              views.end());
  StartupChoice c = choose_startup_primary(views, state_.primary());
  // Attaches the engine to the settled primary, then reports ready. Takes
  // `ready` only when called, so the failover branch below can take it instead.
  auto attach = [this, &ready]() {
    auto done = std::move(ready);
    if (host_.driver() && !state_.primary().empty()) {
      auto* d = host_.driver();
      auto primary = state_.primary();
      auto fenced = state_.fenced();
      host_.cluster_worker()->post([this, d, primary, fenced, done = std::move(done)]() mutable {
        Status st = d->attach(primary, fenced);
        asio::post(control_, [this, st = std::move(st), done = std::move(done)]() mutable {
          if (!st) spdlog::error("cannot attach replication to primary {}: {}", state_.primary(), st.error().message);
          record_interrupted(st ? "finished when drd started again"
                                         : "drd started again and keeps converging: " + st.error().message);
          host_.schedule_tick();
          host_.after_round();
          done();
        });
      });
      return;
    }
    record_interrupted("finished when drd started again");
    host_.after_round();
    done();
  };
  if (!c.primary) {
    spdlog::warn("no primary yet: {}", c.reason);
    attach();
    return;
  }
  if (state_.primary().empty()) {
    // First start: nothing to fail over from, just record the choice.
    auto cas = host_.cluster_store().compare_and_set_primary(state_.term(), *c.primary);
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
  if (std::string why; !host_.coord_allows_failover(why)) {
    spdlog::warn("recorded primary {} is not healthy, but {}", state_.primary(), why);
    attach();
    return;
  }
  auto target = *c.primary;
  auto reason = c.reason;
  record_interrupted("not finished: " + state_.primary() + " was not healthy when drd started again, so a new failover follows");
  begin(target, "auto", reason, false,
                 [ready = std::move(ready)](Result<json::value>) mutable { ready(); });
}

void FailoverExecutor::begin(const std::string& target, const std::string& mode, const std::string& reason,
                            bool force, Reply reply) {
  if (phase_ == Phase::promoting) {
    reply(make_error(Errc::conflict, "a failover is already running", "wait for it and check `drctl history`"));
    return;
  }
  if (!start_hold_.empty()) {
    reply(make_error(Errc::refused, "drd elected no primary at start and waits for an operator: " + start_hold_,
                     "stop the server you do not want to keep (or make it a standby); drd carries on by itself"));
    return;
  }
  if (!host_.driver()) {
    reply(make_error(Errc::unsupported, "this drd cannot promote " + std::string(engine_name(config_.nodes.front().engine)) +
                                            " nodes yet"));
    return;
  }
  // Manual requests are checked here against the same policy as automatic ones.
  if (mode != "auto") {
    FailoverPolicy p{config_.failover.max_lag_bytes, config_.failover.synchronous};
    Choice c = choose_failover_target(host_.node_views(), state_.primary(), p, force, target);
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
    auto reps = host_.driver()->replicas();
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
  phase_ = Phase::promoting;
  const std::string from = state_.primary();
  const auto started = clock_.steady();
  // 0. What is about to happen, so a drd killed before the history row is
  //    written still records this failover when it starts again.
  FailoverRecord pending{to_unix_ms(clock_.now()), from, target, mode, reason, 0, 0, state_.term() + 1};
  if (auto st = host_.cluster_store().set_pending_failover(pending); !st)
    spdlog::error("cannot record the pending failover: {}", st.error().message);
  // 1. Claim the new term first: a crash from here on converges to `target`. The old
  //    primary is recorded as fenced in the same transaction (not for a switchover).
  const bool fence_from = mode != "switchover" && !from.empty() && from != target;
  auto cas = host_.cluster_store().claim_primary(state_.term(), target, fence_from ? from : std::string());
  if (!cas.ok() || !*cas) {
    (void)host_.cluster_store().set_pending_failover(std::nullopt);
    phase_ = Phase::idle;
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
  if (const ProbeResult* p = from.empty() ? nullptr : host_.last_probe(from)) {
    // A server that answered (even "too many clients", "shutting down", a refusal of drd) is
    // alive: it is fenced (SQL, else pg_ctl stop), never frozen and SIGKILLed as a silent one.
    const ServerState s = p->server;
    req.old_primary_reachable = p->ok || (s != ServerState::no_answer && s != ServerState::crashed);
  }
  req.switchover = mode == "switchover";
  req.timeout = std::max<Millis>(Millis(30'000), config_.monitoring.timeout * 10);
  req.term = state_.term();
  auto* d = host_.driver();
  const std::int64_t term = state_.term();
  d->make_way();  // a tick running now on the cluster worker ends early
  host_.cluster_worker()->post([this, d, req, from, target, mode, reason, started, term, reply = std::move(reply)]() mutable {
    auto outcome = d->promote(req);
    asio::post(control_, [this, from, target, mode, reason, started, term, outcome = std::move(outcome),
                          reply = std::move(reply)]() mutable {
      finish(from, target, mode, reason, started, std::move(outcome), term, std::move(reply));
    });
  });
}

void FailoverExecutor::finish(const std::string& from, const std::string& to, const std::string& mode,
                             const std::string& reason, SteadyTime started, Result<PromoteOutcome> outcome,
                             std::int64_t term, Reply reply) {
  phase_ = Phase::idle;
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(clock_.steady() - started).count();
  if (!outcome && mode == "switchover" && outcome.error().code == Errc::refused && state_.primary() == to) {
    // A switchover aborted before promotion: the old primary is still the writable one
    // (the driver unfenced it), so the store goes back to naming it, under a new term.
    auto cas = host_.cluster_store().compare_and_set_primary(state_.term(), from);
    if (cas.ok() && *cas) state_.primary_recorded(from);
    (void)host_.cluster_store().set_pending_failover(std::nullopt);  // nothing changed hands: no history row
    log::event(spdlog::level::err, "switchover_aborted", {{"NODE", from}, {"TARGET", to}, {"TERM", std::to_string(state_.term())}},
               "switchover to " + to + " aborted before promotion; " + from + " stays primary: " +
                   outcome.error().message);
    reply(outcome.error());
    host_.schedule_tick();
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
    host_.schedule_tick();
    host_.after_round();
    return;
  }
  failed_promotions_.erase(to);
  for (auto& note : outcome->notes) spdlog::info("failover {} -> {}: {}", from, to, note);
  FailoverRecord rec{to_unix_ms(clock_.now()), from, to, mode, reason, ms, outcome->lag_bytes, term, outcome->position};
  if (auto st = host_.cluster_store().append_history(rec); !st) spdlog::error("cannot record failover history: {}", st.error().message);
  host_.failover_recorded(rec, true);
  if (mode == "switchover") {
    // The old primary stays a standby, not fenced.
    if (auto st = host_.cluster_store().set_fenced(from, false); !st) spdlog::error("{}", st.error().message);
    state_.unfence(from);
  }
  // The new primary starts from a clean health slate as far as failures go.
  log::event(spdlog::level::warn, "failover_done",
             {{"NODE", to}, {"FROM", from}, {"TERM", std::to_string(term)}, {"MODE", mode},
              {"DURATION_MS", std::to_string(ms)}},
             "failover " + from + " -> " + to + " done in " + std::to_string(ms) + " ms (term " + std::to_string(term) + ")");
  host_.status_changed();
  json::object h{{"time_ms", rec.time_ms}, {"from", from}, {"to", to}, {"mode", mode}, {"reason", reason},
                 {"duration_ms", ms}, {"lag_bytes", rec.lag_bytes}, {"term", term}};
  if (rec.position) h["position"] = *rec.position;
  reply(json::value(std::move(h)));
  host_.schedule_tick();
}

}  // namespace drd
