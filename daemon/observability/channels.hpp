#pragma once
// Alert notification channels: log, webhook, exec, email.
//
// Threading: send() may be called from any thread and never blocks on the
// network or a child process. The log channel writes synchronously (spdlog);
// webhook, exec and email hand the notification to their own worker thread
// through a bounded queue (QueuedChannel). When the queue is full the oldest
// waiting notification is dropped with a warning, so a dead webhook can never
// hold up probes or grow memory.
//
// Failure behaviour: a delivery that fails after its retries is logged (error
// level, EVENT=alert_delivery) and counted; nothing is thrown.
#include <boost/json.hpp>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "common/config.hpp"
#include "common/process.hpp"
#include "daemon/observability/alert_rules.hpp"
#include "daemon/observability/http_client.hpp"

namespace drd::monitoring {

// {rule, node, severity, state, value, threshold, message, time, since, metric, op}
boost::json::object notification_json(const AlertNotification& n);

struct ChannelStats {
  std::uint64_t delivered = 0, failed = 0, dropped = 0, attempts = 0;
};

class AlertChannel {
 public:
  virtual ~AlertChannel() = default;
  virtual void send(const AlertNotification& n) = 0;  // never blocks on I/O
  // Waits until everything queued so far was handled (tests, shutdown). True if drained in time.
  virtual bool flush(Millis timeout) { (void)timeout; return true; }
  // Stops the worker; queued notifications not yet started are dropped (logged). Idempotent.
  virtual void stop() {}
  virtual ChannelStats stats() const { return {}; }
  const std::string& name() const { return name_; }

 protected:
  explicit AlertChannel(std::string name) : name_(std::move(name)) {}
  std::string name_;
};

// spdlog line + journald event EVENT=alert; priority: critical->err, warning->warn, info->info.
class LogChannel : public AlertChannel {
 public:
  explicit LogChannel(std::string name = "log") : AlertChannel(std::move(name)) {}
  void send(const AlertNotification& n) override;
};

// A worker thread draining a bounded queue into deliver().
class QueuedChannel : public AlertChannel {
 public:
  ~QueuedChannel() override;
  void send(const AlertNotification& n) override;
  bool flush(Millis timeout) override;
  void stop() override;
  ChannelStats stats() const override;

 protected:
  QueuedChannel(std::string name, std::size_t capacity);
  void start_worker();  // subclasses call it last in their constructor
  // Blocking delivery on the worker thread; returns false (after logging) when it gave up.
  virtual bool deliver(const AlertNotification& n) = 0;
  // Sleeps up to `d`; returns false early when stop() was called.
  bool sleep_unless_stopped(Millis d);
  void count_attempt();

 private:
  void run();
  std::size_t capacity_;
  mutable std::mutex mu_;
  std::condition_variable cv_, idle_cv_;
  std::deque<AlertNotification> queue_;
  bool busy_ = false;
  bool stopping_ = false;
  ChannelStats stats_;
  std::thread worker_;
};

struct WebhookOptions {
  Millis timeout{5000};
  int retries = 3;                  // extra attempts after the first
  Millis backoff{500};              // doubled after each failed attempt
  Millis max_backoff{30'000};
  std::size_t capacity = 100;
};

// POSTs notification_json() as application/json; 2xx = delivered, 5xx/connection errors are
// retried with exponential backoff, other statuses are not (the receiver refused it).
class WebhookChannel : public QueuedChannel {
 public:
  WebhookChannel(std::string name, HttpUrl url, WebhookOptions opts);
  ~WebhookChannel() override;

 protected:
  bool deliver(const AlertNotification& n) override;

 private:
  HttpUrl url_;
  WebhookOptions opts_;
};

// Runs `command` with DRD_ALERT_RULE, _NODE, _SEVERITY, _STATE, _VALUE, _MESSAGE (and _THRESHOLD,
// _TIME) in the environment. Non-zero exit or timeout = failed (logged with the output's tail).
class ExecChannel : public QueuedChannel {
 public:
  ExecChannel(std::string name, std::vector<std::string> command, Millis timeout, ProcessRunner& runner,
              std::size_t capacity = 100);
  ~ExecChannel() override;

 protected:
  bool deliver(const AlertNotification& n) override;

 private:
  std::vector<std::string> command_;
  Millis timeout_;
  ProcessRunner& runner_;
};

// Pipes an RFC 5322 message into `sendmail -t`. Missing sendmail = a clear error per notification.
class EmailChannel : public QueuedChannel {
 public:
  EmailChannel(std::string name, std::string to, Millis timeout, ProcessRunner& runner,
               std::filesystem::path sendmail = "/usr/sbin/sendmail", std::size_t capacity = 100);
  ~EmailChannel() override;

 protected:
  bool deliver(const AlertNotification& n) override;

 private:
  std::string to_;
  Millis timeout_;
  ProcessRunner& runner_;
  std::filesystem::path sendmail_;
};

// The environment an exec channel gets (exposed for tests).
std::map<std::string, std::string> alert_env(const AlertNotification& n);
// The full message an email channel sends (exposed for tests). Header values are
// stripped of CR/LF so an alert message can never inject headers.
std::string email_message(const AlertNotification& n, const std::string& from, const std::string& to);

// Builds a channel from its config. Errors name the channel (e.g. a bad webhook URL).
Result<std::unique_ptr<AlertChannel>> make_channel(const AlertChannelConfig& c, ProcessRunner& runner);

}  // namespace drd::monitoring
