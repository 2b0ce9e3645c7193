#include "daemon/observability/channels.hpp"

#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <ctime>

#include "common/json_text.hpp"
#include "common/log.hpp"

namespace drd::monitoring {

namespace json = boost::json;

json::object notification_json(const AlertNotification& n) {
  return json::object{{"rule", n.rule},
                      {"node", n.node},
                      {"severity", n.severity},
                      {"state", notification_kind_name(n.kind)},
                      {"repeat", n.repeat()},
                      {"metric", n.metric},
                      {"op", n.op},
                      {"value", n.value},
                      {"threshold", n.threshold},
                      {"message", n.message},
                      {"time", iso8601_ms(to_unix_ms(n.time))},
                      {"since", iso8601_ms(to_unix_ms(n.since))}};
}

namespace {

spdlog::level::level_enum level_for(const std::string& severity, NotificationKind kind) {
  if (kind == NotificationKind::resolved) return spdlog::level::info;
  if (severity == "critical") return spdlog::level::err;
  if (severity == "warning") return spdlog::level::warn;
  return spdlog::level::info;
}

std::string headline(const AlertNotification& n) {
  std::string s = n.kind == NotificationKind::resolved ? "RESOLVED" : n.repeat() ? "STILL FIRING" : "FIRING";
  return s + " [" + n.severity + "] " + n.rule + (n.node.empty() ? "" : " on " + n.node);
}

void log_delivery_failure(const std::string& channel, const AlertNotification& n, const std::string& why) {
  log::event(spdlog::level::err, "alert_delivery", {{"CHANNEL", channel}, {"RULE", n.rule}, {"NODE", n.node}},
             "alert channel '" + channel + "' could not deliver " + n.rule + " (" + notification_kind_name(n.kind) +
                 "): " + why);
}

std::string one_line(std::string s) {
  for (char& c : s)
    if (c == '\r' || c == '\n') c = ' ';
  return s;
}

std::string tail(const std::string& s, std::size_t n = 300) {
  std::string t = s.size() > n ? "..." + s.substr(s.size() - n) : s;
  while (!t.empty() && (t.back() == '\n' || t.back() == ' ')) t.pop_back();
  return one_line(t);
}

}  // namespace

// ---- log ------------------------------------------------------------------------

void LogChannel::send(const AlertNotification& n) {
  log::event(level_for(n.severity, n.kind), "alert",
             {{"RULE", n.rule},
              {"NODE", n.node},
              {"SEVERITY", n.severity},
              {"ALERT_STATE", notification_kind_name(n.kind)},
              {"VALUE", format_value(n.value)}},
             headline(n) + ": " + n.message);
}

// ---- queue ----------------------------------------------------------------------

QueuedChannel::QueuedChannel(std::string name, std::size_t capacity)
    : AlertChannel(std::move(name)), capacity_(std::max<std::size_t>(1, capacity)) {}

QueuedChannel::~QueuedChannel() { stop(); }

void QueuedChannel::start_worker() { worker_ = std::thread([this] { run(); }); }

void QueuedChannel::send(const AlertNotification& n) {
  std::optional<AlertNotification> dropped;
  {
    std::lock_guard lk(mu_);
    if (stopping_) return;
    if (queue_.size() >= capacity_) {
      dropped = std::move(queue_.front());
      queue_.pop_front();
      ++stats_.dropped;
    }
    queue_.push_back(n);
  }
  cv_.notify_all();
  if (dropped)
    spdlog::warn("alert channel '{}': queue full ({} waiting), dropped the oldest notification ({} {})", name_,
                 capacity_, dropped->rule, notification_kind_name(dropped->kind));
}

bool QueuedChannel::flush(Millis timeout) {
  std::unique_lock lk(mu_);
  return idle_cv_.wait_for(lk, timeout, [this] { return queue_.empty() && !busy_; });
}

void QueuedChannel::stop() {
  std::size_t left = 0;
  {
    std::lock_guard lk(mu_);
    if (stopping_ && !worker_.joinable()) return;
    stopping_ = true;
    left = queue_.size();
    stats_.dropped += left;
    queue_.clear();
  }
  cv_.notify_all();
  if (worker_.joinable() && worker_.get_id() != std::this_thread::get_id()) worker_.join();
  if (left) spdlog::warn("alert channel '{}': stopping with {} undelivered notification(s)", name_, left);
}

ChannelStats QueuedChannel::stats() const {
  std::lock_guard lk(mu_);
  return stats_;
}

bool QueuedChannel::sleep_unless_stopped(Millis d) {
  std::unique_lock lk(mu_);
  return !cv_.wait_for(lk, d, [this] { return stopping_; });
}

void QueuedChannel::count_attempt() {
  std::lock_guard lk(mu_);
  ++stats_.attempts;
}

void QueuedChannel::run() {
  for (;;) {
    AlertNotification n;
    {
      std::unique_lock lk(mu_);
      cv_.wait(lk, [this] { return stopping_ || !queue_.empty(); });
      if (stopping_) break;
      n = std::move(queue_.front());
      queue_.pop_front();
      busy_ = true;
    }
    bool ok = false;
    try {
      ok = deliver(n);
    } catch (const std::exception& e) {
      log_delivery_failure(name_, n, e.what());
    }
    {
      std::lock_guard lk(mu_);
      busy_ = false;
      ++(ok ? stats_.delivered : stats_.failed);
    }
    idle_cv_.notify_all();
  }
  std::lock_guard lk(mu_);
  busy_ = false;
  idle_cv_.notify_all();
}

// ---- webhook --------------------------------------------------------------------

WebhookChannel::WebhookChannel(std::string name, HttpUrl url, WebhookOptions opts)
    : QueuedChannel(std::move(name), opts.capacity), url_(std::move(url)), opts_(opts) {
  start_worker();
}

WebhookChannel::~WebhookChannel() { stop(); }

bool WebhookChannel::deliver(const AlertNotification& n) {
  HttpRequest req;
  req.method = "POST";
  req.content_type = "application/json";
  req.body = serialize_plain(notification_json(n));
  req.timeout = opts_.timeout;
  Millis backoff = opts_.backoff;
  std::string why;
  for (int attempt = 0; attempt <= opts_.retries; ++attempt) {
    if (attempt > 0) {
      if (!sleep_unless_stopped(backoff)) {
        log_delivery_failure(name_, n, "drd is stopping (last error: " + why + ")");
        return false;
      }
      backoff = std::min(opts_.max_backoff, backoff * 2);
    }
    count_attempt();
    auto r = http_request(url_, req);
    if (!r) {
      why = r.error().message;
    } else if (r->status >= 200 && r->status < 300) {
      return true;
    } else {
      why = url_.shown() + " answered HTTP " + std::to_string(r->status);
      if (r->status < 500 && r->status != 429) {  // the receiver refused this document: retrying won't help
        log_delivery_failure(name_, n, why);
        return false;
      }
    }
    spdlog::debug("alert channel '{}': attempt {} failed: {}", name_, attempt + 1, why);
  }
  log_delivery_failure(name_, n, why + " (after " + std::to_string(opts_.retries + 1) + " attempts)");
  return false;
}

// ---- exec -----------------------------------------------------------------------

std::map<std::string, std::string> alert_env(const AlertNotification& n) {
  return {{"DRD_ALERT_RULE", n.rule},
          {"DRD_ALERT_NODE", n.node},
          {"DRD_ALERT_SEVERITY", n.severity},
          {"DRD_ALERT_STATE", notification_kind_name(n.kind)},
          {"DRD_ALERT_REPEAT", n.repeat() ? "1" : "0"},
          {"DRD_ALERT_VALUE", format_value(n.value)},
          {"DRD_ALERT_THRESHOLD", format_value(n.threshold)},
          {"DRD_ALERT_METRIC", n.metric},
          {"DRD_ALERT_MESSAGE", n.message},
          {"DRD_ALERT_TIME", iso8601_ms(to_unix_ms(n.time))}};
}

ExecChannel::ExecChannel(std::string name, std::vector<std::string> command, Millis timeout, ProcessRunner& runner,
                         std::size_t capacity)
    : QueuedChannel(std::move(name), capacity), command_(std::move(command)), timeout_(timeout), runner_(runner) {
  start_worker();
}

ExecChannel::~ExecChannel() { stop(); }

bool ExecChannel::deliver(const AlertNotification& n) {
  count_attempt();
  ProcessSpec spec;
  spec.argv = command_;
  spec.env = alert_env(n);
  spec.timeout = timeout_;
  spec.max_output = 4096;
  auto r = runner_.run(spec);
  const std::string prog = command_.empty() ? std::string("?") : command_.front();
  if (!r) {
    log_delivery_failure(name_, n, "could not run " + prog + ": " + r.error().message);
    return false;
  }
  if (r->timed_out) {
    log_delivery_failure(name_, n, prog + " did not finish within " + format_duration(timeout_) + " and was killed");
    return false;
  }
  if (!r->success()) {
    std::string why = prog + (r->signal ? " was killed by signal " + std::to_string(r->signal)
                                        : " exited with status " + std::to_string(r->exit_code));
    if (!r->output.empty()) why += ": " + tail(r->output);
    log_delivery_failure(name_, n, why);
    return false;
  }
  return true;
}

// ---- email ----------------------------------------------------------------------

std::string email_message(const AlertNotification& n, const std::string& from, const std::string& to) {
  char date[64];
  std::time_t t = std::chrono::system_clock::to_time_t(n.time);
  std::tm tm{};
  gmtime_r(&t, &tm);
  std::strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", &tm);
  std::string m;
  m += "From: " + one_line(from) + "\r\n";
  m += "To: " + one_line(to) + "\r\n";
  m += "Subject: [drd] " + one_line(headline(n)) + "\r\n";
  m += std::string("Date: ") + date + "\r\n";
  m += "MIME-Version: 1.0\r\n";
  m += "Content-Type: text/plain; charset=utf-8\r\n";
  m += "Content-Transfer-Encoding: 8bit\r\n";
  m += "Auto-Submitted: auto-generated\r\n";
  m += "\r\n";
  m += headline(n) + "\r\n\r\n";
  m += one_line(n.message) + "\r\n\r\n";
  m += "rule:      " + n.rule + "\r\n";
  m += "node:      " + (n.node.empty() ? std::string("(cluster)") : n.node) + "\r\n";
  m += "severity:  " + n.severity + "\r\n";
  m += "metric:    " + n.metric + " " + n.op + " " + format_value(n.threshold) + "\r\n";
  m += "value:     " + format_value(n.value) + "\r\n";
  m += "since:     " + iso8601_ms(to_unix_ms(n.since)) + "\r\n";
  m += "time:      " + iso8601_ms(to_unix_ms(n.time)) + "\r\n";
  return m;
}

EmailChannel::EmailChannel(std::string name, std::string to, Millis timeout, ProcessRunner& runner,
                           std::filesystem::path sendmail, std::size_t capacity)
    : QueuedChannel(std::move(name), capacity),
      to_(std::move(to)),
      timeout_(timeout),
      runner_(runner),
      sendmail_(std::move(sendmail)) {
  start_worker();
}

EmailChannel::~EmailChannel() { stop(); }

bool EmailChannel::deliver(const AlertNotification& n) {
  count_attempt();
  if (access(sendmail_.c_str(), X_OK) != 0) {
    log_delivery_failure(name_, n, sendmail_.string() +
                                       " not found or not executable: install a mail transfer agent "
                                       "(e.g. apt install msmtp-mta or postfix) to use email channels");
    return false;
  }
  char host[256] = "localhost";
  gethostname(host, sizeof host - 1);
  ProcessSpec spec;
  spec.argv = {sendmail_.string(), "-t"};
  spec.stdin_data = email_message(n, std::string("drd@") + host, to_);
  spec.timeout = timeout_;
  spec.max_output = 4096;
  auto r = runner_.run(spec);
  if (!r) {
    log_delivery_failure(name_, n, "could not run " + sendmail_.string() + ": " + r.error().message);
    return false;
  }
  if (!r->success()) {
    std::string why = r->timed_out ? sendmail_.string() + " did not finish within " + format_duration(timeout_)
                                   : sendmail_.string() + " exited with status " + std::to_string(r->exit_code);
    if (!r->output.empty()) why += ": " + tail(r->output);
    log_delivery_failure(name_, n, why);
    return false;
  }
  return true;
}

// ---- factory ----------------------------------------------------------------------

Result<std::unique_ptr<AlertChannel>> make_channel(const AlertChannelConfig& c, ProcessRunner& runner) {
  if (c.type == "log") return std::unique_ptr<AlertChannel>(std::make_unique<LogChannel>(c.name));
  if (c.type == "webhook") {
    auto url = parse_http_url(c.url);
    if (!url) return make_error(Errc::invalid_argument, "alerts.channels." + c.name + ".url: " + url.error().message);
    WebhookOptions o;
    o.timeout = c.timeout;
    o.retries = c.retries;
    return std::unique_ptr<AlertChannel>(std::make_unique<WebhookChannel>(c.name, *url, o));
  }
  if (c.type == "exec") {
    if (c.command.empty())
      return make_error(Errc::invalid_argument, "alerts.channels." + c.name + ".command: must name a program");
    return std::unique_ptr<AlertChannel>(std::make_unique<ExecChannel>(c.name, c.command, c.timeout, runner));
  }
  if (c.type == "email")
    return std::unique_ptr<AlertChannel>(std::make_unique<EmailChannel>(c.name, c.to, c.timeout, runner));
  return make_error(Errc::invalid_argument,
                    "alerts.channels." + c.name + ".type: unknown channel type '" + c.type + "'");
}

}  // namespace drd::monitoring
