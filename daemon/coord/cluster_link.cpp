// The daemon's side of multi-host mode (cluster_link.hpp).
#include "daemon/coord/cluster_link.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <set>

#include "common/log.hpp"
#include "daemon/coord/coordinator.hpp"
#include "daemon/coord/local_fence.hpp"
#include "daemon/coord/peer_server.hpp"
#include "daemon/observability/http_client.hpp"

namespace drd::coord {

namespace asio = boost::asio;
namespace json = boost::json;

ClusterLink::ClusterLink(Host& host, asio::io_context& io, asio::strand<asio::io_context::executor_type>& control,
                         const Config& config, Clock& clock, ClusterState& state,
                         std::unique_ptr<Coordinator> coordinator)
    : host_(host), io_(io), control_(control), config_(config), clock_(clock), state_(state),
      coord_(std::move(coordinator)), worker_(std::make_unique<BlockingWorker>()) {}

ClusterLink::~ClusterLink() { stop(); }

ClusterStore& ClusterLink::store() { return coord_->store(); }
const std::string& ClusterLink::name() const { return coord_->name(); }

Status ClusterLink::start() {
  if (!config_.store.peer_listen.empty()) {
    PeerHandlers h;
    h.failsafe = [this](const json::object& body) -> json::object {
      FailsafeAsk ask;
      if (auto* n = body.if_contains("node"); n && n->is_string()) ask.node = std::string(n->as_string());
      if (auto* t = body.if_contains("term"); t && t->is_int64()) ask.term = t->as_int64();
      auto a = coord_->failsafe_request(ask);
      return json::object{{"confirm", a.confirm}, {"reason", a.reason}, {"drd", coord_->name()}};
    };
    h.rpc = [this](const std::string& method, const json::object& params,
                   std::function<void(Result<json::value>)> done) {
      Caller caller;
      caller.admin = true;  // the forwarding drd checked its caller's rights
      caller.forwarded = true;
      host_.dispatch(method, params, caller, std::move(done));
    };
    peer_server_ = std::make_unique<PeerServer>(io_, control_, config_.store.peer_listen, coord_->peer_token(),
                                                       std::move(h));
    if (auto st = peer_server_->start(); !st) return st;
  }
  coord_->start([this, alive = alive_](const Snapshot& s) {
    auto copy = std::make_shared<const Snapshot>(s);
    asio::post(control_, [this, alive, copy] {
      if (*alive && !host_.stopped()) on_snapshot(*copy);
    });
  });
  return ok_status();
}

void ClusterLink::on_snapshot(const Snapshot& s) {
  snap_ = std::make_shared<const Snapshot>(s);
  for (auto& m : s.members)
    if (std::find(known_hosts_.begin(), known_hosts_.end(), m.name) == known_hosts_.end()) known_hosts_.push_back(m.name);
  if (s.etcd_ok && !state_.leading()) {
    // Followers mirror the shared state, so status and a later lead start from it.
    state_.mirror(s.primary, s.term, s.fenced);
    if (auto a = s.flags.find("auto_failover"); a != s.flags.end() && config_.enabled) state_.set_auto_failover(a->second);
  }
  if (const ProbeResult* local = host_.last_probe(config_.local))
    coord_->set_local_report(host_.local_up(), local->ok ? "" : local->error);
  if (s.leading && !state_.leading()) {
    state_.set_leading(true);
    if (host_.ready()) {  // before that, the startup settle does the same
      log::event(spdlog::level::warn, "leading", {{"DRD", coord_->name()}},
                 "drd " + coord_->name() + " leads the cluster; taking over from the shared state");
      host_.took_lead();
    }
  } else if (!s.leading && state_.leading()) {
    state_.set_leading(false);
    log::event(spdlog::level::warn, "following", {{"DRD", coord_->name()}},
               "drd " + coord_->name() + " no longer leads; stopping replication and automatic actions");
    primary_host_fenced_ = false;
    host_.lost_lead();
  }
  if (state_.leading() && host_.ready()) check_primary_host();
}

void ClusterLink::stop() {
  *alive_ = false;
  if (peer_server_) peer_server_->stop();
  if (coord_) coord_->stop();  // hands the lead over at once (lease revoked)
  worker_.reset();
}

bool ClusterLink::allows_failover(std::string& reason) const {
  if (!snap_) return true;
  if (coord_->failsafe_hold(state_.primary())) {
    reason = "this drd confirmed " + state_.primary() + " as primary to its drd (failsafe) less than a TTL ago";
    return false;
  }
  std::optional<coord::HostView> host;
  if (std::find(known_hosts_.begin(), known_hosts_.end(), state_.primary()) != known_hosts_.end()) {
    host = coord::HostView{};
    for (auto& m : snap_->members) {
      if (m.name != state_.primary()) continue;
      host->member_present = true;
      auto* up = m.report.if_contains("local_up");
      host->reports_local_up = up && up->is_bool() && up->as_bool();
    }
  }
  auto g = failover_host_gate(state_.primary(), host);
  reason = g.reason;
  return g.allow;
}

// A primary whose host drd vanished from the store is either on a dead host or was
// fenced by that drd before its lease ran out (then it still answers probes but takes
// no writes). A drd that merely crashed leaves its database writable: no failover.
void ClusterLink::check_primary_host() {
  const bool known = std::find(known_hosts_.begin(), known_hosts_.end(), state_.primary()) != known_hosts_.end();
  bool present = false;
  if (snap_)
    for (auto& m : snap_->members) present = present || m.name == state_.primary();
  if (!known || present || state_.primary().empty()) {
    primary_host_fenced_ = false;
    return;
  }
  const NodeConfig* nc = config_.find_node(state_.primary());
  const ProbeResult* last = host_.last_probe(state_.primary());
  if (!nc || !last) return;
  if (nc->engine == Engine::postgresql) {
    bool fenced = last->ok && !last->writable;
    if (fenced != primary_host_fenced_) {
      primary_host_fenced_ = fenced;
      if (fenced) host_.after_round();
    }
    return;
  }
  if (host_check_running_ || clock_.steady() - last_host_check_ < config_.monitoring.interval) return;
  host_check_running_ = true;
  last_host_check_ = clock_.steady();
  auto path = nc->sqlite_path;
  auto name = state_.primary();
  const Millis wait = std::min<Millis>(config_.monitoring.timeout, Millis(300));
  worker_->post([this, path, name, wait] {
    auto locked = sqlite_write_locked(path, wait);
    asio::post(control_, [this, alive = alive_, name, locked] {
      if (!*alive) return;
      host_check_running_ = false;
      if (host_.stopped() || name != state_.primary()) return;
      bool fenced = locked.ok() && *locked;
      if (fenced && !primary_host_fenced_)
        spdlog::warn("primary {}: its host drd left the cluster and its database refuses writes (fenced by that drd)", name);
      primary_host_fenced_ = fenced;
      if (fenced) host_.after_round();
    });
  });
}

bool ClusterLink::forward_if_follower(const std::string& method, const json::object& params, const Caller& caller,
                                 Reply& reply) {
  if (state_.leading()) return false;  // only rpc::Method::forwardable methods get here
  const std::string leader = snap_ ? snap_->leader : "";
  if (caller.forwarded) {
    reply(make_error(Errc::unavailable, "drd " + coord_->name() + " does not lead the cluster" +
                                            (leader.empty() ? std::string() : " (" + leader + " does)"),
                     "retry in a moment"));
    return true;
  }
  auto peer = coord_->leader_peer();
  if (!peer) {
    reply(make_error(Errc::unavailable,
                     leader.empty() ? "no drd leads the cluster right now (etcd unreachable or an election under way)"
                                    : "the leading drd " + leader + " has no peer endpoint (store.peer_listen)",
                     leader.empty() ? "retry within the store TTL" : "run the command on " + leader + "'s host"));
    return true;
  }
  auto url = monitoring::parse_http_url("http://" + *peer + "/peer/v1/rpc");
  if (!url) {
    reply(url.error());
    return true;
  }
  const std::string token = coord_->peer_token();
  const std::string body = json::serialize(json::object{{"method", method}, {"params", params}});
  spdlog::info("forwarding {} to the leading drd {} at {}", method, leader, *peer);
  worker_->post([this, u = *url, token, body, leader, reply = std::move(reply)]() mutable {
    monitoring::HttpRequest req;
    req.method = "POST";
    req.content_type = "application/json";
    req.body = body;
    if (!token.empty()) req.headers.emplace_back("Authorization", "Bearer " + token);
    req.timeout = Millis(600'000);  // a forwarded restore or backup may run for minutes
    auto r = monitoring::http_request(u, req);
    Result<json::value> out = make_error(Errc::internal, "");
    if (!r) {
      out = make_error(Errc::unavailable, "cannot reach the leading drd " + leader + ": " + r.error().message);
    } else {
      boost::system::error_code ec;
      auto v = json::parse(r->body, ec);
      if (ec || !v.is_object()) out = make_error(Errc::internal, "unreadable answer from the leading drd " + leader);
      else if (auto* res = v.as_object().if_contains("result")) out = *res;
      else if (auto* err = v.as_object().if_contains("error")) out = error_from_json(*err);
      else out = make_error(Errc::internal, "empty answer from the leading drd " + leader);
    }
    asio::post(control_, [reply = std::move(reply), out = std::move(out)]() mutable { reply(std::move(out)); });
  });
  return true;
}

json::value ClusterLink::status_json() const {
  const auto now_ms = to_unix_ms(clock_.now());
  json::array members;
  std::string leader;
  bool etcd_ok = false, self_fenced = false;
  std::string error, fence_reason;
  double since_renewal = -1;
  if (snap_) {
    leader = snap_->leader;
    etcd_ok = snap_->etcd_ok;
    error = snap_->error;
    self_fenced = snap_->local_fenced;
    fence_reason = snap_->fence_reason;
    since_renewal = snap_->since_renewal_ms;
    for (auto& m : snap_->members) {
      json::object o{{"name", m.name}, {"leader", m.is_leader}, {"peer", m.peer}};
      auto get = [&](const char* k) -> const json::value* { return m.report.if_contains(k); };
      if (auto* r = get("renewed_ms"); r && r->is_int64() && r->as_int64() > 0)
        o["lease_age_ms"] = std::max<std::int64_t>(0, now_ms - r->as_int64());
      else o["lease_age_ms"] = nullptr;
      for (const char* k : {"local_up", "fenced_self", "term_seen"})
        if (auto* v = get(k)) o[k] = *v;
      members.push_back(std::move(o));
    }
  }
  json::object st{{"ok", etcd_ok}, {"endpoints", json::array(config_.store.endpoints.begin(), config_.store.endpoints.end())}};
  if (!etcd_ok) st["error"] = error;
  // Each endpoint's own answer, from the coordinator's health thread (every 2 s).
  json::array per;
  if (snap_)
    for (auto& e : snap_->endpoints) {
      json::object o{{"endpoint", e.endpoint},
                     {"reachable", e.reachable},
                     {"ok", e.ok},
                     {"member_id", e.member_id},
                     {"leader_id", e.leader_id},
                     {"is_leader", !e.member_id.empty() && e.member_id == e.leader_id},
                     {"version", e.version},
                     {"round_trip_ms", std::round(e.round_trip_ms * 10) / 10}};
      if (!e.ok) o["error"] = e.error;
      per.push_back(std::move(o));
    }
  st["per_endpoint"] = std::move(per);
  st["checked_ms_ago"] = snap_ && snap_->endpoints_age_ms >= 0
                             ? json::value(static_cast<std::int64_t>(snap_->endpoints_age_ms))
                             : json::value(nullptr);
  return json::object{{"store", "etcd"},
                      {"prefix", config_.store.prefix},
                      {"ttl_ms", config_.store.ttl.count()},
                      {"drd", coord_->name()},
                      {"leader", leader},
                      {"leading", state_.leading()},
                      {"lease_age_ms", since_renewal < 0 ? json::value(nullptr) : json::value(static_cast<std::int64_t>(since_renewal))},
                      {"store_health", std::move(st)},
                      {"self_fenced", self_fenced},
                      {"fence_reason", fence_reason},
                      {"members", std::move(members)}};
}

}  // namespace drd::coord
