// PostgresCluster: failover, switchover, rejoin, clone and re-seeding a standby from a backup.
#include <spdlog/spdlog.h>

#include <thread>

#include "common/crash_point.hpp"
#include "common/log.hpp"
#include "daemon/engines/postgres/postgres_cluster.hpp"
#include "daemon/engines/postgres/postgres_conn.hpp"
#include "daemon/engines/postgres/postgres_local_kill.hpp"
#include "daemon/engines/postgres/postgres_util.hpp"
#include "daemon/engines/postgres/postgres_local.hpp"
#include <algorithm>

namespace drd {

using namespace std::chrono_literals;

namespace {

SteadyTime now() { return std::chrono::steady_clock::now(); }
Millis left(SteadyTime deadline) {
  return std::max(Millis(0), std::chrono::duration_cast<Millis>(deadline - now()));
}
long long ms_since(SteadyTime t0) { return std::chrono::duration_cast<std::chrono::milliseconds>(now() - t0).count(); }

constexpr Millis kRewindTimeout{120'000};
constexpr Millis kRecloneTimeout{600'000};

// One scalar (first column of the first row of the last statement) on a fresh
// session to `node`; nullopt for SQL NULL. Errors never hold the password.
Result<std::optional<std::string>> scalar(const NodeConfig& node, const std::string& sql, SteadyTime deadline) {
  pg::ConnParams p{{"fallback_application_name", "drd"}, {"dbname", node.pg_conninfo}};
  std::vector<std::string> secrets;
  auto pw = node_password(node);
  if (!pw) return pw.error();
  if (!pw->empty()) {
    secrets.push_back(pw.value());
    if (!pg::url_password(node)) p.emplace_back("password", pw.value());
  }
  pg::PgConn c(std::move(p), secrets);
  auto r = c.query(sql, deadline);
  if (!r) return make_error(r.error().code, node.name + ": " + r.error().message, r.error().hint);
  if (r->empty() || r->back().rows.empty() || r->back().rows[0].empty()) return std::optional<std::string>();
  return r->back().rows[0][0];
}

}  // namespace

Result<PromoteOutcome> PostgresCluster::promote(const PromoteRequest& req) {
  make_way_ = false;
  PromoteOutcome out;
  Member* target = member(req.target);
  if (!target) return make_error(Errc::not_found, "no node named '" + req.target + "'");
  Member* old = req.old_primary == req.target ? nullptr : member(req.old_primary);
  if (old && outsider(old->cfg.name)) {
    // The recorded primary's server was replaced by another cluster's: not ours to fence or kill.
    out.notes.push_back(old->cfg.name + " is left alone: " + outsiders_[old->cfg.name]);
    old = nullptr;
  }
  if (auto snap = replicas(); snap.count(req.target)) out.lag_bytes = snap[req.target].lag_bytes;
  const auto t0 = now();
  const auto deadline = t0 + req.timeout;
  if (req.switchover) {
    if (!old) return make_error(Errc::invalid_argument, "switchover needs the current primary, got '" + req.old_primary + "'");
    return switchover(req, *old, *target, std::move(out));
  }

  // 1. Fence the old primary when it still answers (a manual failover, or a
  //    primary that only looked dead). Best effort: a dead one is fenced by
  //    tick() the moment it answers as a writable primary again.
  if (old) {
    fenced_.insert(old->cfg.name);
    fence_notes_.erase(old->cfg.name);
    {
      // Status names the old primary's state during the promotion too, not only after
      // the next tick (until then the snapshot still has it as the primary: no entry).
      std::lock_guard g(mu_);
      snapshot_[old->cfg.name].note = "fenced: failover to " + req.target + " in progress";
    }
    if (req.old_primary_reachable) {
      auto st = old->node->fence(std::min(left(deadline), std::max(timeout_ * 4, Millis(2000))));
      out.old_primary_fenced = st.ok();
      out.notes.push_back(st ? "fenced " + old->cfg.name + ": " + old->node->last_action()
                             : "could not fence " + old->cfg.name + ": " + st.error().message);
    }
  }
  // 1b. One that does not answer but runs on this host (frozen, cut off) is frozen now and
  //     killed right after the promotion, so it can neither answer when a partition heals
  //     nor wake up writable (postgres_local_kill.hpp). Killed before the promotion, the
  //     target's pg_promote was seen to stall for ~5 s (its walreceiver losing the old
  //     primary at that very moment); a frozen server's connections just stay silent.
  auto frozen = old && !req.old_primary_reachable && old->cfg.data_dir
                    ? pg::freeze_local_server(*old->cfg.data_dir)
                    : Result<pg::LocalKill>(pg::LocalKill{});
  auto kill_unanswering_old = [&] {
    if (!old || req.old_primary_reachable) return;
    auto& k = frozen;
    if (k && k->local) {
      pg::kill_frozen_server(*k);
      // Verified gone (a zombie counts: it holds no socket and runs nothing), bounded.
      const auto until = now() + std::max(timeout_, Millis(1000));
      bool gone = false;
      while (!(gone = std::all_of(k->tree.begin(), k->tree.end(), [](int p) { return pg::process_dead(p); })) &&
             now() < until)
        std::this_thread::sleep_for(2ms);
      if (!gone) out.notes.push_back("some processes of " + old->cfg.name + " are not gone yet after SIGKILL");
      out.old_primary_fenced = true;
      fence_notes_[old->cfg.name] = "fenced: server killed with SIGKILL (it did not answer)";
      out.notes.push_back("fenced " + old->cfg.name + ": it did not answer; its server on this host (postmaster " +
                          std::to_string(k->pid) + ") was killed with SIGKILL, " + std::to_string(k->killed) +
                          " processes");
      log::event(spdlog::level::warn, "fence", {{"NODE", old->cfg.name}},
                 "fenced " + old->cfg.name + ": not answering, its local server was killed (postmaster " +
                     std::to_string(k->pid) + ")");
    } else {
      out.notes.push_back(old->cfg.name + " does not answer: not fenced now (" +
                          (k ? std::string("not a server on this host") : k.error().message) +
                          "); drd fences it if it returns writable");
    }
  };
  // 2. Promote: the store already names the target, so from here on it is the primary.
  primary_ = req.target;
  fenced_.erase(primary_);
  fence_notes_.erase(primary_);
  applied_sync_names_.reset();
  sync_state_ = {};
  const auto tp = now();
  auto promoted = target->node->promote(left(deadline));
  kill_unanswering_old();
  if (auto st = promoted; !st) {
    needs_converge_ = true;  // tick() retries the promotion
    next_converge_ = now() + 1s;
    return make_error(st.error().code, "promotion of " + req.target + " failed: " + st.error().message, st.error().hint);
  }
  out.notes.push_back("promoted " + req.target + " with pg_promote; writable after " + std::to_string(ms_since(tp)) + " ms");
  crash_point("promoted");
  // 3. Synchronous mode: name the remaining standbys at once (commits wait for one of them).
  if (synchronous_) {
    if (auto st = apply_sync_names(pgha::synchronous_standby_names(sync_candidates())); !st)
      out.notes.push_back("could not set synchronous_standby_names: " + st.error().message);
  }
  // 4. The other standbys follow the new primary; one that is slow is noted, not fatal.
  repoint_standbys(standbys_except(""), std::min(left(deadline), Millis(10'000)), out.notes);
  {
    std::lock_guard g(mu_);
    snapshot_.erase(primary_);
    // Status shows the old primary's fence at once, not only after the next tick.
    if (old)
      if (auto n = fence_notes_.find(old->cfg.name); n != fence_notes_.end()) snapshot_[old->cfg.name].note = n->second;
  }
  return out;
}

void PostgresCluster::fence_and_catch_up(Member& target, const pgha::Probes& probes) {
  constexpr Millis kCatchUp{10'000};
  for (auto& m : members_) {
    const std::string& name = m.cfg.name;
    if (name == primary_ || outsider(name)) continue;
    auto it = probes.find(name);
    if (it == probes.end() || !it->second.ok || it->second.role != Role::primary || !it->second.writable) continue;
    fence_second_primary(name, "still writable while the promotion of " + primary_ + " was unfinished");
    const auto deadline = now() + kCatchUp;
    auto lsn = scalar(m.cfg, "SELECT pg_current_wal_flush_lsn()", now() + Millis(5000));
    if (!lsn || !lsn->has_value() || !pg::parse_lsn(**lsn)) {
      spdlog::warn("finishing the promotion of {}: cannot read the WAL position of {}; promoting without waiting",
                   primary_, name);
      continue;
    }
    const std::uint64_t want = *pg::parse_lsn(**lsn);
    std::uint64_t replayed = 0;
    while (now() < deadline) {
      auto r = scalar(target.cfg, "SELECT pg_last_wal_replay_lsn()", now() + Millis(2000));
      if (r && r->has_value()) replayed = pg::parse_lsn(**r).value_or(0);
      if (replayed >= want) break;
      std::this_thread::sleep_for(20ms);
    }
    if (replayed >= want)
      spdlog::info("finishing the promotion of {}: it replayed {}'s WAL up to {}", primary_, name, pg::format_lsn(want));
    else
      spdlog::error("finishing the promotion of {}: it replayed only up to {} of {}'s {} within {} ms; commits past "
                    "that are not on the new primary",
                    primary_, pg::format_lsn(replayed), name, pg::format_lsn(want), kCatchUp.count());
  }
}

Result<PromoteOutcome> PostgresCluster::switchover(const PromoteRequest& req, Member& old, Member& target,
                                                   PromoteOutcome out) {
  const auto deadline = now() + req.timeout;
  auto abort = [&](const std::string& why, const std::string& hint) -> Result<PromoteOutcome> {
    auto un = old.node->unfence(std::max(left(deadline), Millis(5000)));
    std::string undo = un ? old.cfg.name + " is writable again" : "could not unfence " + old.cfg.name + ": " +
                                                                     un.error().message;
    log::event(spdlog::level::err, "switchover_aborted", {{"NODE", req.target}, {"FROM", old.cfg.name}}, why + "; " + undo);
    return make_error(Errc::refused, "switchover aborted before promotion: " + why + " (" + undo + ")", hint);
  };
  // 0. The target must be able to catch up: a paused replay (or a long one) would leave the
  //    old primary fenced while nothing is replayed. Checked on fresh sessions, before any fence.
  {
    const auto check = now() + std::min(left(deadline), Millis(5000));
    auto paused = scalar(target.cfg, "SELECT pg_get_wal_replay_pause_state()", check);
    auto replayed = scalar(target.cfg, "SELECT pg_last_wal_replay_lsn()", check);
    auto current = scalar(old.cfg, "SELECT pg_current_wal_lsn()", check);
    std::optional<std::uint64_t> lag;
    if (replayed && current && replayed->has_value() && current->has_value()) {
      auto a = pg::parse_lsn(**current), b = pg::parse_lsn(**replayed);
      if (a && b) lag = *a > *b ? *a - *b : 0;
    }
    const bool is_paused = paused && paused->has_value() && **paused != "not paused";
    if (auto why = pgha::switchover_refusal(req.target, is_paused, lag, max_lag_bytes_)) {
      log::event(spdlog::level::err, "switchover_aborted", {{"NODE", req.target}, {"FROM", old.cfg.name}},
                 "switchover refused: " + *why + "; nothing was fenced");
      return make_error(Errc::refused, "switchover refused before anything was fenced: " + *why,
                        is_paused ? "resume it (SELECT pg_wal_replay_resume() on " + req.target + "), or pick another node"
                                  : "wait until " + req.target + " has replayed more, or pick another node");
    }
  }
  // 1. Fence: no new commit can land on the old primary from here on. Kept running (SQL fence):
  //    step 2 needs its WAL position and streams its WAL to the target (fence_keep_running).
  if (auto st = old.node->fence_keep_running(std::min(left(deadline), Millis(10'000))); !st)
    return abort("cannot fence " + old.cfg.name + ": " + st.error().message, "check the primary, then retry");
  out.old_primary_fenced = true;
  out.notes.push_back("fenced " + old.cfg.name + ": " + old.node->last_action());
  // 2. Everything it flushed must be replayed on the target before promotion.
  auto lsn_text = scalar(old.cfg, "SELECT pg_current_wal_flush_lsn()", now() + std::min(left(deadline), Millis(5000)));
  if (!lsn_text || !lsn_text->has_value() || !pg::parse_lsn(**lsn_text))
    return abort("cannot read the flushed WAL position of " + old.cfg.name +
                     (lsn_text ? std::string() : ": " + lsn_text.error().message),
                 "");
  const std::uint64_t want = *pg::parse_lsn(**lsn_text);
  const auto tw = now();
  std::uint64_t replayed = 0;
  std::string last_err;
  for (;;) {
    auto r = scalar(target.cfg, "SELECT pg_last_wal_replay_lsn()", now() + std::min(left(deadline), Millis(2000)));
    if (r && r->has_value()) replayed = pg::parse_lsn(**r).value_or(0);
    else if (!r) last_err = r.error().message;
    if (replayed >= want) break;
    if (left(deadline) <= Millis(20))
      return abort(req.target + " replayed only up to " + pg::format_lsn(replayed) + " of " + pg::format_lsn(want) +
                       " within " + format_duration(req.timeout) + (last_err.empty() ? "" : " (" + last_err + ")"),
                   "check that " + req.target + " streams from " + old.cfg.name);
    std::this_thread::sleep_for(10ms);
  }
  out.notes.push_back(req.target + " replayed " + old.cfg.name + "'s WAL up to " + pg::format_lsn(want) + " in " +
                      std::to_string(ms_since(tw)) + " ms");
  // 3. Promote.
  primary_ = req.target;
  fenced_.erase(primary_);
  applied_sync_names_.reset();
  sync_state_ = {};
  // The old primary is kept out of the followers until it is rewound.
  fenced_.insert(old.cfg.name);
  const auto tp = now();
  if (auto st = target.node->promote(std::max(left(deadline), Millis(5000))); !st) {
    needs_converge_ = true;
    next_converge_ = now() + 1s;
    return make_error(st.error().code, "switchover: promotion of " + req.target + " failed after fencing " +
                                           old.cfg.name + ": " + st.error().message,
                      "drd retries the promotion; " + old.cfg.name + " stays read-only");
  }
  out.notes.push_back("promoted " + req.target + " with pg_promote; writable after " + std::to_string(ms_since(tp)) + " ms");
  if (synchronous_) {
    if (auto st = apply_sync_names(pgha::synchronous_standby_names(sync_candidates())); !st)
      out.notes.push_back("could not set synchronous_standby_names: " + st.error().message);
  }
  // 4. The other standbys follow the new primary.
  repoint_standbys(standbys_except(old.cfg.name), std::min(std::max(left(deadline), Millis(3000)), Millis(10'000)),
                   out.notes);
  // 5. The old primary comes back as a standby of the target (its shutdown checkpoint is past the fork: rewind).
  const auto tr = now();
  auto rj = old.node->rejoin_with_rewind(target.cfg, kRewindTimeout);
  fenced_.erase(old.cfg.name);
  fence_notes_.erase(old.cfg.name);
  if (rj) {
    if (auto un = old.node->unfence(Millis(5000)); !un)
      out.notes.push_back("could not clear read-only on " + old.cfg.name + ": " + un.error().message);
    out.notes.push_back(old.cfg.name + " rejoined as a standby of " + req.target + " in " +
                        std::to_string(ms_since(tr)) + " ms: " + old.node->last_action());
  } else {
    out.notes.push_back("rejoin of " + old.cfg.name + " failed: " + rj.error().message + "; run `drctl rejoin " +
                        old.cfg.name + "`");
  }
  {
    std::lock_guard g(mu_);
    snapshot_.erase(primary_);
  }
  return out;
}

Status PostgresCluster::rejoin(const std::string& name, bool reclone) {
  Member* m = member(name);
  if (!m) return make_error(Errc::not_found, "no node named '" + name + "'");
  if (name == primary_) return make_error(Errc::refused, name + " is the primary; rejoin is for standbys");
  Member* p = member(primary_);
  if (!p) return make_error(Errc::unavailable, "no primary is known yet");
  if (outsider(name) && !reclone)
    return make_error(Errc::refused, "rejoin " + name + ": " + outsiders_[name] + "; pg_rewind cannot turn another "
                                     "cluster's server into a standby, and nothing was changed",
                      "to replace it by a copy of the primary (its folder is kept aside), run `drctl rejoin " + name +
                          " --reclone`");
  auto st = reclone ? m->node->reclone(p->cfg, kRecloneTimeout) : m->node->rejoin_with_rewind(p->cfg, kRewindTimeout);
  if (!st) return st;
  settle_rebuilt_standby(*m, name, "rejoin");
  spdlog::info("rejoin {}: {}", name, m->node->last_action());
  return ok_status();
}

void PostgresCluster::settle_rebuilt_standby(Member& m, const std::string& name, const std::string& action) {
  if (auto un = m.node->unfence(Millis(5000)); !un)
    spdlog::warn("{} {}: could not clear default_transaction_read_only: {}", action, name, un.error().message);
  fenced_.erase(name);
  fence_notes_.erase(name);
  m.not_streaming_since.reset();
  m.last_probe_failed = false;
}

Result<StandbyRestoreOutcome> PostgresCluster::restore_standby(const std::string& name, const std::string& prepared,
                                                               std::vector<std::string>& discard) {
  Member* m = member(name);
  Member* p = member(primary_);
  // Re-checked here (the backup was restored off this worker; a failover may have happened).
  std::string refusal;
  if (!m) refusal = "no node named '" + name + "'";
  else if (name == primary_) refusal = name + " became the primary while the backup was being restored";
  else if (!p) refusal = "no primary is known, so " + name + " would have nothing to stream from";
  if (!refusal.empty()) {
    discard.push_back(prepared);
    return make_error(Errc::refused, "restore onto " + name + ": " + refusal + "; nothing was changed");
  }
  auto st = m->node->reseed_from(p->cfg, prepared, kRecloneTimeout, discard);
  if (!st) return st.error();
  StandbyRestoreOutcome out{primary_, m->node->last_action()};  // before unfence() replaces it
  settle_rebuilt_standby(*m, name, "restore onto");
  return out;
}

Result<PrimaryRestoreOutcome> PostgresCluster::restore_primary(const std::string& name, const std::string& prepared,
                                                               std::uint32_t timeline, std::vector<std::string>& discard) {
  Member* p = member(name);
  // Re-checked here (the backup was restored off this worker).
  if (!p || name != primary_) {
    discard.push_back(prepared);
    return make_error(Errc::refused, "restore onto " + name + ": " +
                                         (p ? name + " is no longer the primary (now: " + primary_ + ")"
                                            : "no node named '" + name + "'") +
                                         "; nothing was changed");
  }
  auto st = p->node->replace_primary_data(prepared, timeline, kRecloneTimeout, discard);
  if (!st) return st.error();
  PrimaryRestoreOutcome out{p->node->last_action(), {}};
  p->last_probe_failed = false;
  if (synchronous_ && members_.size() > 1) {
    // No standby can stream until it is re-cloned, and no tick runs on this worker meanwhile to
    // degrade synchronous mode: commits would wait for the whole re-clone. Asynchronous until a
    // standby streams again (manage_sync restores it then).
    sync_state_.degraded = true;
    sync_state_.none_streaming_since = std::chrono::steady_clock::now();
    if (auto s = apply_sync_names(""); !s)
      spdlog::warn("restore onto the primary {}: cannot clear synchronous_standby_names: {}", name, s.error().message);
    log::event(spdlog::level::warn, "sync_degraded", {{"NODE", name}},
               "synchronous mode set to asynchronous on " + name + " while its standbys are re-cloned after the "
               "roll-back; restored when one streams again");
  }
  // The standbys hold WAL of the history the primary left: each is rebuilt from it.
  for (auto& m : members_) {
    if (m.cfg.name == name) continue;
    if (outsider(m.cfg.name)) {
      out.standbys[m.cfg.name] = "left alone: " + outsiders_[m.cfg.name];
      continue;
    }
    auto r = m.node->reclone(p->cfg, kRecloneTimeout);
    if (r) settle_rebuilt_standby(m, m.cfg.name, "restore onto the primary: re-clone");
    else spdlog::error("restore onto the primary {}: re-cloning {} failed: {}", name, m.cfg.name, r.error().message);
    out.standbys[m.cfg.name] = r ? "" : r.error().message;
  }
  return out;
}

// A clone is a reclone that also works for a node whose data folder does not exist yet
// (PostgresNode::reclone tells the cases apart).
Status PostgresCluster::clone(const std::string& name) { return rejoin(name, true); }

}  // namespace drd
