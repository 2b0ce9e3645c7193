#pragma once
// AlertManager: owns the alert rule states, the channels, and a bounded
// in-memory history of recent alerts (the last kRecent firing/resolved
// transitions). State is not persisted: after a restart a condition that still
// holds fires again once its for: has elapsed (documented in docs/monitoring.md).
//
// Threading: every method is thread-safe (one mutex). evaluate() is meant to be
// called on the daemon's control strand after each probe round; it only
// computes states and hands notifications to the channels, whose send() never
// blocks on I/O. Channels without a rule-level name (rules with no channels:)
// go to a LogChannel.
#include <boost/json.hpp>

#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "common/config.hpp"
#include "common/process.hpp"
#include "daemon/observability/alert_rules.hpp"
#include "daemon/observability/channels.hpp"

namespace drd::monitoring {

class AlertManager {
 public:
  static constexpr std::size_t kRecent = 100;

  // Builds the channels. A channel that cannot be built (bad URL) is logged and skipped;
  // rules naming it still log their notifications.
  AlertManager(const AlertsConfig& config, ProcessRunner& runner);
  // For tests: channels supplied by the caller, keyed by name.
  AlertManager(std::vector<AlertRuleConfig> rules, std::map<std::string, std::shared_ptr<AlertChannel>> channels);
  ~AlertManager();

  // On reload: new rules and channels. States of rules that keep their name survive
  // (no re-notification); old channels are stopped after their queues drain (up to 2 s).
  void reconfigure(const AlertsConfig& config, ProcessRunner& runner);

  // Evaluates every rule against `snapshot` and sends the resulting notifications.
  // Returns them (for logging/tests).
  std::vector<AlertNotification> evaluate(const MetricsSnapshot& snapshot, SysTime now);
  // A failover happened: the failover rules notify now, once each (failover_notifications).
  std::vector<AlertNotification> on_failover(const FailoverEvent& e, SysTime now);

  // {"firing": [...], "pending": [...], "recent": [...]} each
  // {"rule","node","severity","state","since","value","message"}; recent adds "time", newest first.
  boost::json::value alerts_json() const;
  AlertStates states() const;
  std::vector<AlertRuleConfig> rules() const;

  // Waits for every channel's queue to drain (tests, shutdown).
  bool flush(Millis timeout);
  void stop();  // stops channel workers; idempotent

 private:
  void dispatch(const AlertNotification& n);
  mutable std::mutex mu_;
  std::vector<AlertRuleConfig> rules_;
  AlertStates states_;
  std::map<std::string, std::shared_ptr<AlertChannel>> channels_;
  std::shared_ptr<AlertChannel> log_;
  std::deque<AlertNotification> recent_;  // newest first
};

}  // namespace drd::monitoring
