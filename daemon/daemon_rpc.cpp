// The control-socket methods (docs/rpc.md): turning daemon state into the
// documented JSON shapes and routing state changes to the failover code.
#include "drd_version.hpp"
#include <spdlog/spdlog.h>

#include <algorithm>
#include <unistd.h>

#include "common/log.hpp"
#include "common/node_url.hpp"
#include "daemon/backup/schedule.hpp"
#include "daemon/coord/cluster_link.hpp"
#include "daemon/daemon.hpp"
#include "daemon/engines/postgres/postgres_identity.hpp"
#include "daemon/monitor/health_report.hpp"
#include "daemon/rpc/params.hpp"
#include "daemon/rpc/records.hpp"

namespace drd {

namespace {


}  // namespace

json::value Daemon::node_json(const std::string& name, const ProbeLoop::NodeState& n) const {
  const NodeConfig& c = *config_.find_node(name);
  bool fenced = state_.is_fenced(name);
  std::string role;
  if (fenced) role = "fenced";
  else if (n.health.health == Health::down) role = "down";
  else if (name == state_.primary()) role = "primary";
  else role = "standby";
  std::string connection = !n.last_probe_at ? "unknown" : (n.last.ok ? "ok" : "failed");
  json::object o{{"name", name},
                 {"type", c.type == NodeType::primary ? "primary" : "secondary"},
                 {"role", role},
                 {"priority", c.priority},
                 {"engine", engine_name(c.engine)},
                 {"healthy", n.health.health == Health::up},
                 {"health", health_name(n.health.health)},
                 {"connection", connection},
                 {"response_time_ms", rpc::round2(n.last.response_ms)},
                 {"lag_bytes", 0},
                 {"lag_ms", 0},
                 {"url", display_url(c)},
                 {"consecutive_failures", n.health.consecutive_failures},
                 {"last_error", n.last.error},
                 {"fenced", fenced},
                 {"last_probe", n.last_probe_at ? json::value(iso8601_ms(to_unix_ms(*n.last_probe_at))) : json::value(nullptr)},
                 {"last_probe_age_ms", n.last_probe_at ? json::value(std::max<std::int64_t>(
                                                              0, to_unix_ms(clock_.now()) - to_unix_ms(*n.last_probe_at)))
                                                        : json::value(nullptr)}};
  // Monitoring stopped: nothing is checked, so the last verdict is only history. `health`
  // says so; `healthy` keeps the last probe's verdict because HAProxy checks and the
  // metrics read it, and stopping the checks must not take a serving primary out of them.
  if (!state_.monitoring()) {
    o["health"] = "stale";
    o["stale"] = true;
  }
  // Unreachable for drd because of its configuration (TLS, password, pg_hba): no failover on it.
  if (!n.last.ok && n.last.config_problem) o["config_problem"] = *n.last.config_problem;
  // What the server answered when it is not plainly serving: "saturated" (up, no free
  // connection slot), "shutting_down" / "starting_up" (restarting), "refuses_drd", "crashed".
  if (n.last_probe_at && n.last.server != ServerState::answering && n.last.server != ServerState::no_answer)
    o["server_state"] = server_state_name(n.last.server);
  if (n.health.health == Health::restarting && n.health.restarting_since_ms) {
    const auto steady_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(clock_.steady().time_since_epoch()).count();
    o["restarting_for_ms"] = std::max<std::int64_t>(0, steady_ms - *n.health.restarting_since_ms);
  }
  if (driver_ && name != state_.primary()) {
    auto reps = driver_->replicas();
    if (auto r = reps.find(name); r != reps.end()) {
      o["lag_bytes"] = r->second.lag_bytes;
      o["lag_ms"] = rpc::round2(r->second.lag_ms);
      if (r->second.replay_lag_bytes) o["replay_lag_bytes"] = *r->second.replay_lag_bytes;
      if (c.engine == Engine::postgresql) o["replay_paused"] = r->second.replay_paused;
      if (r->second.position) o["position"] = *r->second.position;
      if (!r->second.note.empty()) o["replication"] = r->second.note;
      // SQLite: the copy's own history, and anything that puts this copy at risk.
      if (r->second.history_known)
        o["history"] = json::object{{"term", r->second.history_term}, {"epoch", r->second.history_epoch}};
      if (!r->second.history_problem.empty()) o["copy_problem"] = "not overwritten: " + r->second.history_problem;
      else if (r->second.apply_failing && r->second.position) o["copy_problem"] = "cannot apply: " + r->second.note;
    } else if (fenced) {
      o["replication"] = "fenced";  // the engine has not published this node's state yet
    }
  } else if (n.last.position) {
    o["position"] = *n.last.position;
  }
  if (driver_ && name == state_.primary())
    if (auto lost = driver_->primary_problem(); !lost.empty()) o["copy_problem"] = "lost: " + lost;
  if (n.last.timeline) o["timeline"] = *n.last.timeline;
  if (n.last.ok && n.last.system_identifier) o["system_identifier"] = *n.last.system_identifier;
  if (c.engine == Engine::postgresql && n.last.ok) {
    if (auto why = pgid::not_member_reason(failover_->system_id(), n.last.system_identifier)) {
      // Another cluster's server in this node's place: say so wherever status is read
      // (drctl status prints role and, for an unusable node, last_error).
      o["role"] = "not a member";
      o["member"] = false;
      o["healthy"] = false;
      o["health"] = "not a member";
      o["replication"] = *why;
      o["last_error"] = *why;
      o["lag_bytes"] = 0;
      o.erase("position");
    }
  }
  return o;
}

json::value Daemon::status_json() const {
  json::array nodes;
  for (auto& name : probes_->names()) nodes.push_back(node_json(name, probes_->at(name)));
  auto uptime = std::chrono::duration_cast<std::chrono::seconds>(clock_.steady() - started_at_).count();
  json::object out{
      {"enabled", config_.enabled},
      {"primary", state_.primary()},
      {"term", state_.term()},
      {"monitoring", state_.monitoring()},
      {"auto_failover", state_.auto_failover()},
      {"auto_backup", config_.backup.enabled && !config_.backup.schedule.empty()},
      {"failure_threshold", config_.monitoring.failure_threshold},
      {"interval_ms", config_.monitoring.interval.count()},
      {"failover_state", failover_->promoting() ? "failing_over" : failover_state_name(failover_->last_decision().state)},
      {"failover_reason", failover_->promoting() && failover_->last_decision().state != FailoverState::failing_over
                              ? "a failover away from " + state_.primary() + " is running"
                              : failover_->last_decision().reason},
      {"synchronous", driver_ ? driver_->synchronous_state() : std::string("off")},
      {"nodes", std::move(nodes)},
      {"cluster", link_ ? link_->status_json() : json::value(json::object{{"store", "local"}})},
      {"daemon", json::object{{"pid", static_cast<std::int64_t>(::getpid())},
                              {"version", drd::kVersion},
                              {"uptime_s", uptime},
                              {"config", config_.file.string()}}},
  };
  if (state_.paused()) out["primary_paused"] = state_.primary_paused();  // a restore onto it is running
  out["backups"] = backups_summary_json();
  if (auto p = pitr_json(); !p.is_null()) out["pitr"] = std::move(p);  // SQLite point-in-time coverage
  return out;
}

// The last good backup and the next scheduled one, for status and the status page. Cheap:
// the monitoring recorder already knows the newest backup (catalog at start, then every
// attempt), and the next run is a pure function of the schedule.
json::value Daemon::backups_summary_json() const {
  const SysTime now = clock_.now();
  const std::int64_t now_ms = to_unix_ms(now);
  json::object b{{"schedule", config_.backup.schedule},
                 {"last_good", nullptr},
                 {"last_good_age_s", nullptr},
                 {"last_attempt_failed", false},
                 {"next_scheduled", nullptr},
                 {"next_in_s", nullptr}};
  if (auto good = mon_->recorder().last_good_backup()) {
    b["last_good"] = iso8601_ms(good->time_ms);
    b["last_good_age_s"] = std::max<std::int64_t>(0, (now_ms - good->time_ms) / 1000);
  }
  if (auto last = mon_->recorder().last_backup()) b["last_attempt_failed"] = !last->ok;
  if (config_.backup.enabled && !config_.backup.directory.empty() && !config_.backup.schedule.empty())
    if (auto sched = backup::parse_schedule(config_.backup.schedule))
      if (auto next = backup::next_run(*sched, now)) {
        b["next_scheduled"] = iso8601_ms(to_unix_ms(*next));
        b["next_in_s"] = std::max<std::int64_t>(0, (to_unix_ms(*next) - now_ms) / 1000);
      }
  return b;
}

Result<json::value> Daemon::set_flag(const std::string& flag, bool value) {
  if (auto st = cluster_store().set_flag(flag, value); !st) return st.error();
  if (flag == "monitoring") {
    bool was = state_.set_monitoring(value);
    if (value && !was) probes_->schedule_all(Millis(0));
    if (!value) probes_->cancel_all();
    log::event(spdlog::level::info, value ? "monitoring_started" : "monitoring_stopped", {}, 
               std::string("health monitoring ") + (value ? "started" : "stopped"));
    after_round();  // status shows the new state (and its reason) at once
    return json::value(json::object{{"monitoring", value}});
  }
  state_.set_auto_failover(value);
  log::event(spdlog::level::info, value ? "auto_failover_enabled" : "auto_failover_disabled", {},
             std::string("automatic failover ") + (value ? "enabled" : "disabled"));
  after_round();
  return json::value(json::object{{"auto_failover", value}});
}

void Daemon::manual_failover(const json::object& params, const std::string& mode, Reply reply) {
  auto node = rpc::text_param(params, "node", true);
  if (!node) return reply(node.error());
  if (!probes_->has(*node)) return reply(make_error(Errc::not_found, "no node named '" + *node + "'"));
  if (*node == state_.primary()) return reply(make_error(Errc::refused, *node + " is already the primary"));
  if (state_.paused())
    return reply(make_error(Errc::conflict, "the primary " + state_.primary() + " is stopped on purpose: " + state_.primary_paused(),
                            "wait for the restore to finish (drctl status), then retry"));
  auto force = rpc::flag_param(params, "force");
  if (!force) return reply(force.error());
  if (mode == "switchover") {
    if (!probes_->is(state_.primary(), Health::up))
      return reply(make_error(Errc::refused, "switchover needs a healthy primary; " + state_.primary() + " is not",
                              "use `drctl failover " + *node + "` instead"));
  }
  failover_->begin(*node, mode, mode == "switchover" ? "switchover requested by the operator"
                                                   : "manual failover requested by the operator",
                 *force, std::move(reply));
}

void Daemon::rejoin(const json::object& params, Reply reply, bool clone) {
  auto node = rpc::text_param(params, "node", true);
  if (!node) return reply(node.error());
  if (!probes_->has(*node)) return reply(make_error(Errc::not_found, "no node named '" + *node + "'"));
  if (*node == state_.primary()) return reply(make_error(Errc::refused, *node + " is the primary; rejoin is for standbys"));
  if (!driver_) return reply(make_error(Errc::unsupported, "this drd cannot rejoin nodes of this engine yet"));
  if (state_.paused())
    return reply(make_error(Errc::conflict, "the primary " + state_.primary() + " is stopped on purpose: " + state_.primary_paused() +
                                                "; its standbys are rebuilt when that is done",
                            "wait for the restore to finish (drctl status), then retry"));
  auto reclone_p = rpc::flag_param(params, "reclone");
  if (!reclone_p) return reply(reclone_p.error());
  auto discard_p = rpc::flag_param(params, "discard");
  if (!discard_p) return reply(discard_p.error());
  const bool reclone = *reclone_p, discard = *discard_p;
  // Rejoin lifts a fence. A node that is not fenced already follows the primary: saying
  // "rejoined" there would claim work that was not done. --reclone and clone still rebuild
  // it, and so does rejoin of a copy drd refused to overwrite or cannot apply to (--discard).
  bool copy_at_risk = false;
  if (driver_)
    if (auto reps = driver_->replicas(); reps.count(*node))
      copy_at_risk = !reps[*node].history_problem.empty() || reps[*node].apply_failing;
  if (!clone && !reclone && !discard && !copy_at_risk &&
      !state_.is_fenced(*node)) {
    bool up = probes_->is(*node, Health::up);
    return reply(make_error(
        Errc::refused,
        *node + " is not fenced: it is already a standby following the primary " + state_.primary() +
            (up ? "" : " (it is down now)") + "; nothing done",
        up ? "rejoin is for a fenced old primary; to copy it afresh anyway: drctl rejoin " + *node + " --reclone"
           : "start it again (it catches up by itself), or rebuild it: drctl rejoin " + *node + " --reclone"));
  }
  auto* d = driver_.get();
  std::string name = *node;
  cluster_worker_->post([this, d, name, reclone, discard, clone, reply = std::move(reply)]() mutable {
    if (discard) d->allow_discard(name);
    Status st = clone ? d->clone(name) : d->rejoin(name, reclone);
    asio::post(control_, [this, name, st = std::move(st), reply = std::move(reply)]() mutable {
      if (!st && link_ && name != config_.local && st.error().message.find("data_dir") != std::string::npos) {
        // Multi-host: the files are on another host (daemon/coord/host_files.hpp), not missing.
        Error e = st.error();
        e.hint = "in multi-host mode only the drd on " + name + "'s own host touches its files, and this one leads; "
                 "rejoin it by hand on that host (pg_rewind, standby.signal)";
        return reply(e);
      }
      if (!st) return reply(st.error());
      if (auto s2 = cluster_store().set_fenced(name, false); !s2) return reply(s2.error());
      state_.unfence(name);
      failover_->forget_failed_promotion(name);
      log::event(spdlog::level::info, "rejoin", {{"NODE", name}}, name + " rejoined as a standby of " + state_.primary());
      reply(json::value(json::object{{"node", name}, {"role", "standby"}, {"primary", state_.primary()}}));
    });
  });
}

void Daemon::dispatch(const std::string& method, const json::object& params, const Caller& caller, Reply reply,
                      ProgressSink progress) {
  if (!ready_) {
    // Starting (the first probes are bounded by monitoring.timeout): answer once the
    // primary is settled rather than turning the caller away. This is what a client
    // queued on a systemd-activated socket expects.
    if (waiting_for_ready_.size() >= 1000)
      return reply(make_error(Errc::unavailable, "drd is still starting", "retry in a moment"));
    waiting_for_ready_.push_back([this, method, params, caller, reply = std::move(reply), progress]() mutable {
      dispatch(method, params, caller, std::move(reply), std::move(progress));
    });
    return;
  }
  const rpc::Method* m = rpc::find_method(method);
  if (!m) return reply(make_error(Errc::not_found, "unknown method '" + method + "'"));
  if (m->forwardable && link_ && link_->forward_if_follower(method, params, caller, reply)) return;
  rpc::Call call{params, caller, reply, progress};
  m->handler(*this, call);
}

namespace rpc {

std::span<const Method> methods() {
  // Lambdas in this friend of Daemon: each handler is one line into the part that owns it.
  static const Method kMethods[] = {
      {"ping", true, false,
       [](Daemon&, Call& c) { c.reply(json::value(json::object{{"pong", true}, {"version", drd::kVersion}})); }},
      {"status", true, false, [](Daemon& d, Call& c) { c.reply(d.status_json()); }},
      {"test", true, false, [](Daemon& d, Call& c) {
         auto node = text_param(c.params, "node");
         if (!node) return c.reply(node.error());
         std::optional<std::string> only;
         if (!node->empty()) {
           if (!d.probes_->has(*node)) return c.reply(make_error(Errc::not_found, "no node named '" + *node + "'"));
           only = *node;
         }
         d.probes_->probe_all_now(
             [&d, reply = std::move(c.reply)](json::value v) {
               // Each row says what the node is, as the status panel would after this probe.
               for (auto& row : v.as_object()["nodes"].as_array()) {
                 auto& r = row.as_object();
                 const std::string name(r["name"].as_string());
                 const ProbeLoop::NodeState* n = d.probes_->find(name);
                 if (!n) continue;
                 auto nj = d.node_json(name, *n).as_object();
                 r["role"] = nj.at("role");
                 r["health"] = nj.at("health");
                 // A server that answered but is not plainly serving (saturated, restarting...).
                 if (auto* s = nj.if_contains("server_state")) r["server_state"] = *s;
               }
               reply(std::move(v));
             },
             only);
       }},
      {"primary", true, false, [](Daemon& d, Call& c) {
         const NodeConfig* n = d.config_.find_node(d.state_.primary());
         c.reply(json::value(json::object{{"name", d.state_.primary()}, {"url", n ? display_url(*n) : ""}, {"term", d.state_.term()}}));
       }},
      {"history", true, false, [](Daemon& d, Call& c) { c.reply(history_answer(d.cluster_store(), c.params)); }},
      {"health", true, false, [](Daemon& d, Call& c) {
         d.probes_->flush_samples();  // the answer includes the probes of the last moments
         c.reply(health_answer(*d.store_, d.cluster_store(), d.probes_->names(), to_unix_ms(d.clock_.now()), c.params));
       }},
      {"alerts", true, false, [](Daemon& d, Call& c) { c.reply(d.mon_->alerts_json()); }},
      {"audit", true, false, [](Daemon& d, Call& c) { c.reply(audit_answer(*d.store_, c.params)); }},
      // The backup catalog of record is the leader's.
      {"backup.list", true, true, [](Daemon& d, Call& c) { c.reply(d.backup_list(c.params)); }},
      {"monitoring.start", false, true, [](Daemon& d, Call& c) { c.reply(d.set_flag("monitoring", true)); }},
      {"monitoring.stop", false, true, [](Daemon& d, Call& c) { c.reply(d.set_flag("monitoring", false)); }},
      {"auto_failover.enable", false, true, [](Daemon& d, Call& c) { c.reply(d.set_flag("auto_failover", true)); }},
      {"auto_failover.disable", false, true,
       [](Daemon& d, Call& c) { c.reply(d.set_flag("auto_failover", false)); }},
      // Each drd reads its own config file.
      {"reload", false, false, [](Daemon& d, Call& c) { c.reply(d.reload()); }},
      {"failover", false, true, [](Daemon& d, Call& c) { d.manual_failover(c.params, "manual", std::move(c.reply)); }},
      {"switchover", false, true,
       [](Daemon& d, Call& c) { d.manual_failover(c.params, "switchover", std::move(c.reply)); }},
      {"rejoin", false, true, [](Daemon& d, Call& c) { d.rejoin(c.params, std::move(c.reply)); }},
      {"clone", false, true, [](Daemon& d, Call& c) { d.rejoin(c.params, std::move(c.reply), /*clone=*/true); }},
      {"backup.create", false, true,
       [](Daemon& d, Call& c) { d.backup_create(c.params, std::move(c.reply), std::move(c.progress)); }},
      {"backup.verify", false, true, [](Daemon& d, Call& c) { d.backup_verify(c.params, std::move(c.reply)); }},
      {"restore", false, true, [](Daemon& d, Call& c) { d.restore(c.params, std::move(c.reply), std::move(c.progress)); }},
  };
  return kMethods;
}

const Method* find_method(std::string_view name) {
  for (const auto& m : methods())
    if (m.name == name) return &m;
  return nullptr;
}

}  // namespace rpc

}  // namespace drd
