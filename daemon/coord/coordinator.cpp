#include "daemon/coord/coordinator.hpp"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <future>

#include "common/clock.hpp"
#include "common/log.hpp"
#include "daemon/observability/http_client.hpp"

namespace drd::coord {

namespace json = boost::json;
using steady = std::chrono::steady_clock;

namespace {

constexpr Millis kLoop{250};    // etcd round cadence while all is well
constexpr Millis kWatch{50};    // fence watch cadence
constexpr Millis kHealth{2000};  // endpoint health cadence (status only)

double ms_since(const std::optional<steady::time_point>& t, steady::time_point now) {
  if (!t) return -1;
  return std::chrono::duration<double, std::milli>(now - *t).count();
}

EtcdOptions etcd_options(const Config& cfg, std::string password) {
  EtcdOptions o;
  o.endpoints = cfg.store.endpoints;
  o.ca_file = cfg.store.ca_file;
  o.cert_file = cfg.store.cert_file;
  o.key_file = cfg.store.key_file;
  o.username = cfg.store.username;
  o.password = std::move(password);
  // A sixth of the TTL: a renewal that fails this way leaves time for three more
  // attempts before fence_after(ttl).
  o.timeout = cfg.store.ttl / 6;
  return o;
}

}  // namespace

Coordinator::Coordinator(const Config& cfg, std::string password, std::string peer_token, ProcessRunner& runner)
    : name_(cfg.local), node_(cfg.local), peer_(cfg.store.peer_listen), ttl_(cfg.store.ttl),
      failsafe_(cfg.store.failsafe), peer_token_(std::move(peer_token)),
      client_(std::make_shared<EtcdClient>(etcd_options(cfg, std::move(password)))),
      store_(std::make_unique<EtcdClusterStore>(client_, cfg.store.prefix, cfg.local)) {
  if (const NodeConfig* n = cfg.find_node(cfg.local)) fence_ = std::make_unique<LocalFence>(*n, runner);
  store_->on_written = [this](const std::string& primary, std::int64_t term) {
    std::lock_guard lk(mu_);
    if (term > snap_.term) {
      snap_.term = term;
      snap_.primary = primary;
    }
  };
}

Coordinator::~Coordinator() { stop(); }

void Coordinator::start(std::function<void(const Snapshot&)> on_update) {
  on_update_ = std::move(on_update);
  etcd_thread_ = std::thread([this] { etcd_loop(); });
  watch_thread_ = std::thread([this] { watch_loop(); });
  failsafe_thread_ = std::thread([this] { failsafe_loop(); });
  health_thread_ = std::thread([this] { health_loop(); });
}

void Coordinator::stop() {
  {
    std::lock_guard lk(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  cv_.notify_all();
  if (etcd_thread_.joinable()) etcd_thread_.join();
  if (watch_thread_.joinable()) watch_thread_.join();
  if (failsafe_thread_.joinable()) failsafe_thread_.join();
  if (health_thread_.joinable()) health_thread_.join();
  // A clean stop hands the lead over at once instead of after the TTL. A held fence is
  // kept as it is: an SQLite lock ends with the process anyway, a PostgreSQL one stays.
  std::int64_t lease;
  {
    std::lock_guard lk(mu_);
    lease = lease_;
  }
  if (lease) (void)client_->lease_revoke(lease);
}

Snapshot Coordinator::snapshot() const {
  std::lock_guard lk(mu_);
  Snapshot s = snap_;
  auto now = steady::now();
  s.since_renewal_ms = ms_since(renewed_at_, now);
  s.since_confirmed_ms = ms_since(confirmed_at_, now);
  s.endpoints_age_ms = ms_since(health_at_, now);
  return s;
}

// One endpoint after the other, each bounded (a stopped member costs its timeout, a
// paused one too): on this thread only, so the lease loop never waits for it.
void Coordinator::health_loop() {
  const Millis per_endpoint = std::min<Millis>(ttl_ / 6, Millis(500));
  std::unique_lock lk(mu_);
  while (!stopping_) {
    lk.unlock();
    auto h = client_->health(per_endpoint);
    lk.lock();
    endpoint_health_ = std::move(h);
    health_at_ = steady::now();
    snap_.endpoints = endpoint_health_;
    cv_.wait_for(lk, kHealth, [&] { return stopping_; });
  }
}

void Coordinator::set_local_report(bool local_up, const std::string& detail) {
  std::lock_guard lk(mu_);
  local_up_ = local_up;
  local_detail_ = detail;
}

std::optional<std::string> Coordinator::leader_peer() const {
  std::lock_guard lk(mu_);
  for (auto& m : snap_.members)
    if (m.is_leader && !m.peer.empty()) return m.peer;
  return std::nullopt;
}

FailsafeAnswer Coordinator::failsafe_request(const FailsafeAsk& ask) {
  std::lock_guard lk(mu_);
  const auto now = steady::now();
  const bool reachable = snap_.etcd_ok && read_at_ && now - *read_at_ < 2 * kLoop;
  auto a = answer_failsafe(ask, FailsafeView{reachable, snap_.primary, snap_.term});
  if (a.confirm) confirmed_for_[ask.node] = now;
  return a;
}

bool Coordinator::failsafe_hold(const std::string& node) const {
  std::lock_guard lk(mu_);
  auto it = confirmed_for_.find(node);
  return it != confirmed_for_.end() && steady::now() - it->second < ttl_;
}

// While renewals are overdue and the local node is primary, ask every peer every 200 ms:
// confirmations must keep arriving within fence_after(ttl) or the watch fences.
void Coordinator::failsafe_loop() {
  std::unique_lock lk(mu_);
  while (!stopping_) {
    cv_.wait_for(lk, Millis(200), [&] { return stopping_; });
    if (stopping_) break;
    const auto now = steady::now();
    const bool ask = failsafe_ && renewed_at_ && now - *renewed_at_ >= ttl_ / 3 + Millis(200) &&
                     snap_.primary == node_ &&
                     std::find(snap_.fenced.begin(), snap_.fenced.end(), node_) == snap_.fenced.end();
    if (!ask) continue;
    lk.unlock();
    ask_peers();
    lk.lock();
  }
}

void Coordinator::etcd_loop() {
  std::unique_lock lk(mu_);
  while (!stopping_) {
    lk.unlock();
    auto t0 = steady::now();
    round();
    lk.lock();
    if (stopping_) break;
    auto next = t0 + kLoop;
    // While renewals fail, retry at once rather than wait a whole round.
    cv_.wait_until(lk, next, [&] { return stopping_; });
  }
}

void Coordinator::round() {
  const auto t0 = steady::now();
  std::int64_t lease;
  bool renew_due;
  {
    std::lock_guard lk(mu_);
    lease = lease_;
    renew_due = !renewed_at_ || t0 - *renewed_at_ >= ttl_ / 3;
  }
  std::string error;
  bool renewed_now = false;
  if (!lease) {
    auto g = client_->lease_grant(ttl_.count() / 1000);
    if (g) {
      lease = *g;
      renewed_now = true;
      std::lock_guard lk(mu_);
      lease_ = lease;
      renewed_at_ = t0;
    } else {
      error = g.error().message;
    }
  } else if (renew_due) {
    auto k = client_->lease_keepalive(lease);
    if (!k) {
      error = k.error().message;
    } else if (*k <= 0) {
      // Expired while we could not renew: the keys on it are gone; start over.
      log::event(spdlog::level::warn, "lease_lost", {{"DRD", name_}}, "etcd lease of drd " + name_ + " expired; taking a new one");
      std::lock_guard lk(mu_);
      lease_ = 0;
      lease = 0;
      renewed_at_.reset();
      error = "lease expired";
    } else {
      renewed_now = true;
      std::lock_guard lk(mu_);
      renewed_at_ = t0;
    }
  }

  // Member report, rewritten with each renewal (its renewed_ms is the lease age others see).
  std::string member_value;
  bool write_member = false;
  if (lease) {
    std::lock_guard lk(mu_);
    json::object rep{{"name", name_},
                     {"node", node_},
                     {"peer", peer_},
                     {"lease", std::to_string(lease)},
                     {"pid", static_cast<std::int64_t>(::getpid())},
                     {"local_up", local_up_},
                     {"local_detail", local_detail_},
                     {"fenced_self", fence_ && fence_->holding()},
                     {"primary_seen", snap_.primary},
                     {"term_seen", snap_.term}};
    std::string stable = json::serialize(rep);
    write_member = renewed_now || stable != last_member_value_;
    last_member_value_ = stable;
    rep["renewed_ms"] = renewed_at_ ? to_unix_ms(std::chrono::system_clock::now()) -
                                          static_cast<std::int64_t>(ms_since(renewed_at_, steady::now()))
                                    : 0;
    member_value = json::serialize(rep);
  }

  Snapshot s;
  const auto read_sent = steady::now();
  // When the renewal could not reach etcd, the read would not either: keep the round short
  // so the failsafe and the fence watch see fresh facts.
  if (error.empty()) {
    const std::string leader_key = store_->key("state/leader");
    std::vector<TxnOp> common;
    if (lease && write_member)
      common.push_back(TxnOp{TxnOp::Kind::put, store_->key("state/members/" + name_), member_value, lease, false});
    common.push_back(TxnOp{TxnOp::Kind::range, store_->key("state/"), {}, 0, true});
    std::vector<Compare> cmp;
    std::vector<TxnOp> success = common;
    if (lease) {
      // Take the lead when nobody holds it (the key's create revision is 0 while absent).
      cmp.push_back(Compare{leader_key, Compare::Target::create, Compare::Op::equal, {}, 0});
      success.insert(success.begin(), TxnOp{TxnOp::Kind::put, leader_key, name_, lease, false});
    }
    auto r = lease ? client_->txn(cmp, success, common) : client_->txn({}, common);
    if (!r) {
      if (error.empty()) error = r.error().message;
    } else if (!r->ranges.empty()) {
      s.etcd_ok = error.empty();
      const std::string pre = store_->key("state/");
      std::map<std::string, std::int64_t> member_lease;
      std::int64_t leader_lease = 0;
      for (auto& kv : r->ranges.back()) {
        std::string rel = kv.key.substr(pre.size());
        if (rel == "term") s.term = std::atoll(kv.value.c_str());
        else if (rel == "primary") s.primary = kv.value;
        else if (rel == "leader") {
          s.leader = kv.value;
          leader_lease = kv.lease;
        } else if (rel.rfind("flags/", 0) == 0) s.flags[rel.substr(6)] = kv.value == "true";
        else if (rel.rfind("fenced/", 0) == 0) s.fenced.push_back(rel.substr(7));
        else if (rel.rfind("members/", 0) == 0) {
          Member m;
          m.name = rel.substr(8);
          m.lease = kv.lease;
          boost::system::error_code ec;
          auto v = json::parse(kv.value, ec);
          if (!ec && v.is_object()) {
            m.report = v.as_object();
            if (auto* p = m.report.if_contains("peer"); p && p->is_string()) m.peer = std::string(p->as_string());
          }
          s.members.push_back(std::move(m));
        }
      }
      for (auto& m : s.members) m.is_leader = m.name == s.leader;
      std::lock_guard lk(mu_);
      holds_lead_key_ = lease && s.leader == name_ && leader_lease == lease;
    }
  }
  if (!s.etcd_ok && error.empty()) error = "no answer";
  s.error = error;

  Snapshot out;
  {
    std::lock_guard lk(mu_);
    if (!s.etcd_ok) {
      // Keep the last view of the cluster; only the health part changes.
      Snapshot keep = snap_;
      keep.etcd_ok = false;
      keep.error = s.error;
      s = std::move(keep);
    } else {
      read_at_ = read_sent;
    }
    if (s.etcd_ok && s.term < snap_.term) {
      // Read before this drd's own write landed: the term never goes back.
      s.term = snap_.term;
      s.primary = snap_.primary;
    }
    s.lease_id = lease_;
    const bool fresh = renewed_at_ && steady::now() - *renewed_at_ < fence_after(ttl_);
    const bool was_leading = snap_.leading;
    s.leading = holds_lead_key_ && fresh;
    if (s.leading != was_leading)
      log::event(s.leading ? spdlog::level::info : spdlog::level::warn, s.leading ? "leader_acquired" : "leader_lost",
                 {{"DRD", name_}}, s.leading ? "drd " + name_ + " now leads the cluster" : "drd " + name_ + " no longer leads: " + (s.error.empty() ? "lead taken" : s.error));
    s.local_fenced = snap_.local_fenced;
    s.fence_reason = snap_.fence_reason;
    s.endpoints = endpoint_health_;
    snap_ = s;
    out = snap_;
    out.since_renewal_ms = ms_since(renewed_at_, steady::now());
    out.since_confirmed_ms = ms_since(confirmed_at_, steady::now());
    out.endpoints_age_ms = ms_since(health_at_, steady::now());
  }
  if (on_update_) on_update_(out);
}

void Coordinator::ask_peers() {
  std::vector<Member> peers;
  std::int64_t term;
  {
    std::lock_guard lk(mu_);
    for (auto& m : snap_.members)
      if (m.name != name_) peers.push_back(m);
    term = snap_.term;
  }
  if (peers.empty()) {  // nobody known to confirm: the deadline decides alone
    if (!warned_no_peers_.exchange(true)) spdlog::warn("failsafe: no other drd known to confirm {} as primary", node_);
    return;
  }
  warned_no_peers_ = false;
  const auto sent = steady::now();
  std::vector<std::future<std::pair<bool, std::string>>> answers;
  for (auto& p : peers) {
    answers.push_back(std::async(std::launch::async, [this, p, term]() -> std::pair<bool, std::string> {
      if (p.peer.empty()) return {false, p.name + " has no peer endpoint"};
      auto url = monitoring::parse_http_url("http://" + p.peer + "/peer/v1/failsafe");
      if (!url) return {false, url.error().message};
      monitoring::HttpRequest req;
      req.method = "POST";
      req.content_type = "application/json";
      req.body = json::serialize(json::object{{"from", name_}, {"node", node_}, {"term", term}});
      if (!peer_token_.empty()) req.headers.emplace_back("Authorization", "Bearer " + peer_token_);
      req.timeout = ttl_ / 10;
      auto r = monitoring::http_request(*url, req);
      if (!r) return {false, p.name + ": " + r.error().message};
      boost::system::error_code ec;
      auto v = json::parse(r->body, ec);
      if (ec || !v.is_object()) return {false, p.name + ": unreadable answer"};
      auto* c = v.as_object().if_contains("confirm");
      bool yes = r->status == 200 && c && c->is_bool() && c->as_bool();
      auto* why = v.as_object().if_contains("reason");
      return {yes, p.name + ": " + (why && why->is_string() ? std::string(why->as_string()) : "HTTP " + std::to_string(r->status))};
    }));
  }
  bool all = true;
  std::string refusals;
  for (auto& a : answers) {
    auto [yes, why] = a.get();
    if (!yes) {
      all = false;
      refusals += (refusals.empty() ? "" : "; ") + why;
    }
  }
  std::lock_guard lk(mu_);
  if (all) confirmed_at_ = sent;
  else spdlog::warn("failsafe: not every peer confirms {} as primary: {}", node_, refusals);
}

void Coordinator::watch_loop() {
  bool listed_since_hold = false;
  std::string last_error;
  std::unique_lock lk(mu_);
  while (!stopping_) {
    cv_.wait_for(lk, kWatch, [&] { return stopping_; });
    if (stopping_ || !fence_) break;
    const auto now = steady::now();
    SelfFenceInputs in;
    const bool listed = std::find(snap_.fenced.begin(), snap_.fenced.end(), node_) != snap_.fenced.end();
    if (listed) in.role = LocalRole::fenced;
    else if (!snap_.primary.empty() && snap_.primary == node_) in.role = LocalRole::primary;
    else in.role = LocalRole::standby;
    in.holding = fence_->holding();
    if (!in.holding) listed_since_hold = false;
    if (listed) listed_since_hold = true;
    in.listed_since_hold = listed_since_hold;
    // Never renewed yet (start-up): count from the start, like a renewal at start.
    in.since_renewal = renewed_at_ ? std::chrono::duration_cast<Millis>(now - *renewed_at_) : Millis(0);
    if (confirmed_at_) in.since_confirmed = std::chrono::duration_cast<Millis>(now - *confirmed_at_);
    in.ttl = ttl_;
    in.failsafe = failsafe_;
    in.view_after_renewal = read_at_ && renewed_at_ && *read_at_ >= *renewed_at_;
    // The lead goes with the fence deadline: a drd that cannot renew stops acting
    // before its lease could pass to another.
    bool step_down = snap_.leading && renewed_at_ && now - *renewed_at_ >= fence_after(ttl_);
    if (step_down) {
      snap_.leading = false;
      log::event(spdlog::level::warn, "leader_lost", {{"DRD", name_}},
                 "drd " + name_ + " stops leading: no lease renewal for " +
                     format_duration(std::chrono::duration_cast<Millis>(now - *renewed_at_)));
    }
    SelfFenceDecision d = decide_self_fence(in);
    Snapshot out;
    bool changed = step_down;
    if (d.action != FenceAction::none) {
      lk.unlock();
      // Bounded: the fence must land well inside the remaining third of the TTL.
      Status st = d.action == FenceAction::fence ? fence_->fence(ttl_ / 6) : fence_->unfence(ttl_ / 3);
      lk.lock();
      if (st) {
        changed = true;
        snap_.local_fenced = fence_->holding();
        snap_.fence_reason = d.action == FenceAction::fence ? d.reason : "";
        log::event(d.action == FenceAction::fence ? spdlog::level::err : spdlog::level::warn,
                   d.action == FenceAction::fence ? "self_fenced" : "self_unfenced", {{"NODE", node_}},
                   (d.action == FenceAction::fence ? "fenced local database " : "unfenced local database ") + node_ +
                       ": " + d.reason);
        last_error.clear();
      } else if (st.error().message != last_error) {
        last_error = st.error().message;
        spdlog::error("cannot {} local database {}: {}", d.action == FenceAction::fence ? "fence" : "unfence", node_,
                      last_error);
      }
    }
    if (changed && on_update_) {
      out = snap_;
      out.since_renewal_ms = ms_since(renewed_at_, steady::now());
      out.since_confirmed_ms = ms_since(confirmed_at_, steady::now());
      out.endpoints_age_ms = ms_since(health_at_, steady::now());
      lk.unlock();
      on_update_(out);
      lk.lock();
    }
  }
}

}  // namespace drd::coord
