#include "daemon/observability/alert_manager.hpp"

#include <spdlog/spdlog.h>

namespace drd::monitoring {

namespace json = boost::json;

namespace {

std::map<std::string, std::shared_ptr<AlertChannel>> build_channels(const AlertsConfig& config, ProcessRunner& runner) {
  std::map<std::string, std::shared_ptr<AlertChannel>> out;
  for (const auto& c : config.channels) {
    auto ch = make_channel(c, runner);
    if (!ch) {
      spdlog::error("alert channel '{}' disabled: {}", c.name, ch.error().message);
      continue;
    }
    out[c.name] = std::shared_ptr<AlertChannel>(std::move(ch).value().release());
  }
  return out;
}

const AlertRuleConfig* find_rule(const std::vector<AlertRuleConfig>& rules, const std::string& name) {
  for (const auto& r : rules)
    if (r.name == name) return &r;
  return nullptr;
}

}  // namespace

AlertManager::AlertManager(const AlertsConfig& config, ProcessRunner& runner)
    : rules_(config.rules), channels_(build_channels(config, runner)), log_(std::make_shared<LogChannel>()) {}

AlertManager::AlertManager(std::vector<AlertRuleConfig> rules,
                           std::map<std::string, std::shared_ptr<AlertChannel>> channels)
    : rules_(std::move(rules)), channels_(std::move(channels)), log_(std::make_shared<LogChannel>()) {}

AlertManager::~AlertManager() { stop(); }

void AlertManager::reconfigure(const AlertsConfig& config, ProcessRunner& runner) {
  auto fresh = build_channels(config, runner);
  std::map<std::string, std::shared_ptr<AlertChannel>> old;
  {
    std::lock_guard lk(mu_);
    rules_ = config.rules;
    old.swap(channels_);
    channels_ = std::move(fresh);
    // States of removed rules are dropped by the next evaluate(); drop them now for alerts_json().
    for (auto it = states_.begin(); it != states_.end();)
      it = find_rule(rules_, it->first.rule) ? std::next(it) : states_.erase(it);
  }
  for (auto& [name, ch] : old) {
    ch->flush(Millis(2000));
    ch->stop();
  }
}

std::vector<AlertNotification> AlertManager::evaluate(const MetricsSnapshot& snapshot, SysTime now) {
  std::vector<AlertNotification> sent;
  {
    std::lock_guard lk(mu_);
    AlertEvaluation ev = evaluate_alerts(rules_, states_, snapshot, now);
    states_ = std::move(ev.states);
    for (auto& n : ev.notifications) {
      if (!n.repeat()) {
        recent_.push_front(n);
        if (recent_.size() > kRecent) recent_.pop_back();
      }
      dispatch(n);
    }
    sent = std::move(ev.notifications);
  }
  return sent;
}

std::vector<AlertNotification> AlertManager::on_failover(const FailoverEvent& e, SysTime now) {
  std::lock_guard lk(mu_);
  auto sent = failover_notifications(rules_, e, now);
  for (auto& n : sent) {
    recent_.push_front(n);
    if (recent_.size() > kRecent) recent_.pop_back();
    dispatch(n);
  }
  return sent;
}

void AlertManager::dispatch(const AlertNotification& n) {
  bool any = false;
  for (const auto& name : n.channels) {
    auto it = channels_.find(name);
    if (it == channels_.end()) continue;
    it->second->send(n);
    any = any || dynamic_cast<LogChannel*>(it->second.get()) != nullptr;
  }
  // Every alert reaches the log once, whatever else it is sent to.
  if (!any) log_->send(n);
}

json::value AlertManager::alerts_json() const {
  std::lock_guard lk(mu_);
  json::array firing, pending, recent;
  for (const auto& [key, st] : states_) {
    const AlertRuleConfig* r = find_rule(rules_, key.rule);
    if (!r) continue;
    json::object o{{"rule", key.rule},
                   {"node", key.node},
                   {"severity", r->severity},
                   {"state", alert_phase_name(st.phase)},
                   {"since", iso8601_ms(to_unix_ms(st.phase == AlertPhase::firing ? st.firing_since : st.pending_since))},
                   {"value", st.value},
                   {"message", alert_message(*r, key.node, st.value, false)}};
    (st.phase == AlertPhase::firing ? firing : pending).push_back(std::move(o));
  }
  for (const auto& n : recent_) {
    recent.push_back(json::object{{"rule", n.rule},
                                  {"node", n.node},
                                  {"severity", n.severity},
                                  {"state", notification_kind_name(n.kind)},
                                  {"since", iso8601_ms(to_unix_ms(n.since))},
                                  {"time", iso8601_ms(to_unix_ms(n.time))},
                                  {"value", n.value},
                                  {"message", n.message}});
  }
  return json::object{{"firing", std::move(firing)}, {"pending", std::move(pending)}, {"recent", std::move(recent)}};
}

AlertStates AlertManager::states() const {
  std::lock_guard lk(mu_);
  return states_;
}

std::vector<AlertRuleConfig> AlertManager::rules() const {
  std::lock_guard lk(mu_);
  return rules_;
}

bool AlertManager::flush(Millis timeout) {
  std::map<std::string, std::shared_ptr<AlertChannel>> chans;
  {
    std::lock_guard lk(mu_);
    chans = channels_;
  }
  bool ok = true;
  for (auto& [name, ch] : chans) ok = ch->flush(timeout) && ok;
  return ok;
}

void AlertManager::stop() {
  std::map<std::string, std::shared_ptr<AlertChannel>> chans;
  {
    std::lock_guard lk(mu_);
    chans = channels_;
  }
  for (auto& [name, ch] : chans) ch->stop();
}

}  // namespace drd::monitoring
