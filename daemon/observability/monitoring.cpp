#include "daemon/observability/monitoring.hpp"

#include <spdlog/spdlog.h>
#include <sys/statvfs.h>

namespace drd::monitoring {

namespace json = boost::json;

std::optional<double> disk_free_pct(const std::filesystem::path& path) {
  std::filesystem::path p = path;
  std::error_code ec;
  while (!p.empty() && !std::filesystem::exists(p, ec)) {
    if (p == p.parent_path()) break;
    p = p.parent_path();
  }
  if (p.empty()) return std::nullopt;
  struct statvfs st{};
  if (statvfs(p.c_str(), &st) != 0 || st.f_blocks == 0) return std::nullopt;
  return 100.0 * static_cast<double>(st.f_bavail) / static_cast<double>(st.f_blocks);
}

namespace {

const json::array& nodes_of(const json::value& status) {
  static const json::array empty;
  if (!status.is_object()) return empty;
  auto* n = status.as_object().if_contains("nodes");
  return n && n->is_array() ? n->as_array() : empty;
}
std::string jstr(const json::value& o, const char* key) {
  auto* v = o.is_object() ? o.as_object().if_contains(key) : nullptr;
  return v && v->is_string() ? std::string(v->as_string()) : std::string();
}
std::optional<bool> jbool(const json::value& o, const char* key) {
  auto* v = o.is_object() ? o.as_object().if_contains(key) : nullptr;
  return v && v->is_bool() ? std::optional<bool>(v->as_bool()) : std::nullopt;
}
std::optional<double> jnum(const json::value& o, const char* key) {
  auto* v = o.is_object() ? o.as_object().if_contains(key) : nullptr;
  if (!v) return std::nullopt;
  if (v->is_double()) return v->as_double();
  if (v->is_int64()) return static_cast<double>(v->as_int64());
  if (v->is_uint64()) return static_cast<double>(v->as_uint64());
  return std::nullopt;
}

// The folder whose disk a node's data lives on (nullopt when drd cannot know it).
std::optional<std::filesystem::path> data_folder(const NodeConfig& n) {
  if (n.engine == Engine::sqlite && !n.sqlite_path.empty()) return n.sqlite_path.parent_path();
  if (n.data_dir) return *n.data_dir;
  return std::nullopt;
}

}  // namespace

Monitoring::Monitoring(boost::asio::io_context& io, boost::asio::any_io_executor control, const Config& config,
                       ProcessRunner& runner, Hooks hooks, std::string version)
    : io_(io),
      control_(std::move(control)),
      config_(config),
      runner_(runner),
      hooks_(std::move(hooks)),
      version_(std::move(version)),
      alerts_(effective_alerts(config), runner) {}

Monitoring::~Monitoring() { stop(); }

Status Monitoring::start() {
  HttpConfig http;
  {
    std::lock_guard lk(mu_);
    http = config_.http;
  }
  if (http.listen.empty()) return ok_status();
  HttpServerOptions opts;
  opts.listen = http.listen;
  if (http.token_file) {
    auto t = read_token_file(*http.token_file);
    if (!t) return t.error();
    opts.token = *t;
  }
  HttpProviders p;
  p.alive = [this] { return !hooks_.alive || hooks_.alive(); };
  p.status = [this] { return hooks_.status ? hooks_.status() : json::value(json::object{}); };
  p.alerts = [this] { return alerts_json(); };
  p.metrics = [this] { return prometheus_snapshot(hooks_.status ? hooks_.status() : json::value(json::object{})); };
  p.chart = [this](SysTime now) {
    std::vector<std::string> order;
    {
      std::lock_guard lk(mu_);
      for (const auto& n : config_.nodes) order.push_back(n.name);
    }
    return recorder_.chart(now, order);
  };
  http_ = std::make_unique<HttpServer>(io_, control_, opts, std::move(p));
  auto s = http_->start();
  if (!s) http_.reset();
  return s;
}

void Monitoring::stop() {
  if (http_) http_->stop();
  alerts_.stop();
}

void Monitoring::on_probe(const std::string& node, SysTime t, bool ok, double response_ms) {
  recorder_.on_probe(node, t, ok, response_ms);
}
void Monitoring::on_failover(SysTime t, const std::string& from, const std::string& to, const std::string& mode,
                             std::int64_t term) {
  recorder_.on_failover(t);
  FailoverEvent e{from, to, mode, term, recorder_.failovers_since(t - std::chrono::minutes(1))};
  alerts_.on_failover(e, t);
}
void Monitoring::on_backup(SysTime t, bool ok, std::uint64_t size_bytes) { recorder_.on_backup(t, ok, size_bytes); }

MetricsSnapshot Monitoring::alert_snapshot(const json::value& status, SysTime now) const {
  MetricsSnapshot snap;
  Config cfg;
  {
    std::lock_guard lk(mu_);
    cfg = config_;
  }
  for (const auto& n : nodes_of(status)) {
    const std::string name = jstr(n, "name");
    if (name.empty()) continue;
    const std::string conn = jstr(n, "connection");
    const std::string role = jstr(n, "role");
    // Before the first probe (or while monitoring is stopped) there is no data, not "down".
    if (conn != "unknown") {
      if (auto h = jbool(n, "healthy")) snap.set(name, "up", *h ? 1 : 0);
    }
    if (conn == "ok") {
      if (auto rt = jnum(n, "response_time_ms")) snap.set(name, "response_time_ms", *rt);
      if (role == "standby") {
        if (auto v = jnum(n, "lag_bytes")) snap.set(name, "lag_bytes", *v);
        if (auto v = jnum(n, "lag_ms")) snap.set(name, "lag_ms", *v);
      }
    }
    // A copy drd will not overwrite, a standby that cannot apply, a lost primary: 1.
    snap.set(name, "copy_problem", jstr(n, "copy_problem").empty() ? 0 : 1);
    // A server that answers but is not plainly serving (saturated, shutting down, starting up,
    // refusing drd), or a standby whose replay is paused: 1.
    if (conn != "unknown") {
      const bool paused = n.is_object() && n.as_object().if_contains("replay_paused") &&
                          n.as_object().at("replay_paused").is_bool() && n.as_object().at("replay_paused").as_bool();
      snap.set(name, "server_problem", (!jstr(n, "server_state").empty() || paused) ? 1 : 0);
    }
    if (const NodeConfig* nc = cfg.find_node(name))
      if (auto dir = data_folder(*nc))
        if (auto pct = disk_free_pct(*dir)) snap.set(name, "disk_free_pct", *pct);
  }
  snap.set("", "failover", recorder_.failovers_since(now - std::chrono::minutes(1)));
  // Synchronous mode: "degraded" while commits no longer wait for a standby. No data when off.
  if (const std::string sync = jstr(status, "synchronous"); sync == "degraded" || sync == "on")
    snap.set("", "sync_degraded", sync == "degraded" ? 1 : 0);
  // SQLite point-in-time coverage: seconds since nothing can be restored to, while no chain
  // is archived and no new base backup is under way (docs/monitoring.md, pitr_gap).
  if (auto* pitr = status.is_object() ? status.as_object().if_contains("pitr") : nullptr; pitr && pitr->is_object()) {
    const auto& p = pitr->as_object();
    double gap = 0;
    if (auto* a = p.if_contains("archiving"); a && a->is_string() && a->as_string() == "stopped")
      if (auto* g = p.if_contains("open_gap_s"); g && g->is_number()) gap = g->to_number<double>();
    snap.set("", "pitr_gap", gap);
  }
  if (auto p = read_process_stats()) snap.set("", "memory_rss_bytes", static_cast<double>(p->rss_bytes));
  if (cfg.backup.enabled) {
    const auto good = recorder_.last_good_backup();
    // Never backed up: count from when monitoring began, so "no backup for a day" still fires.
    SysTime since = good ? from_unix_ms(good->time_ms) : first_evaluation_.value_or(now);
    snap.set("", "backup_age_s", std::chrono::duration<double>(now - since).count());
    const auto last = recorder_.last_backup();
    snap.set("", "backup_failed", last && !last->ok ? 1 : 0);
    if (!cfg.backup.directory.empty())
      if (auto pct = disk_free_pct(cfg.backup.directory)) snap.set("", "disk_free_pct", *pct);
  }
  return snap;
}

std::vector<AlertNotification> Monitoring::evaluate(SysTime now) {
  if (!first_evaluation_) first_evaluation_ = now;
  json::value status = hooks_.status ? hooks_.status() : json::value(json::object{});
  return alerts_.evaluate(alert_snapshot(status, now), now);
}

json::value Monitoring::alerts_json() const { return alerts_.alerts_json(); }

PrometheusSnapshot Monitoring::prometheus_snapshot(const json::value& status) const {
  PrometheusSnapshot s;
  s.version = version_;
  s.primary = jstr(status, "primary");
  s.term = static_cast<std::int64_t>(jnum(status, "term").value_or(0));
  s.monitoring = jbool(status, "monitoring").value_or(false);
  s.auto_failover = jbool(status, "auto_failover").value_or(false);
  s.failovers_total = recorder_.failovers_total();
  auto hist = recorder_.histograms();
  for (const auto& n : nodes_of(status)) {
    NodeMetrics m;
    m.name = jstr(n, "name");
    m.role = jstr(n, "role");
    m.engine = jstr(n, "engine");
    m.up = jbool(n, "healthy").value_or(false);
    if (jstr(n, "connection") == "ok") m.response_ms = jnum(n, "response_time_ms");
    if (m.role == "standby") {
      m.lag_bytes = jnum(n, "lag_bytes");
      m.lag_ms = jnum(n, "lag_ms");
      m.replay_lag_bytes = jnum(n, "replay_lag_bytes");
      m.replay_paused = jbool(n, "replay_paused");
    }
    // status names the server's answer only when it is not plainly serving.
    const std::string connection = jstr(n, "connection");
    m.server_state = jstr(n, "server_state");
    if (m.server_state.empty() && connection == "ok") m.server_state = "answering";
    if (m.server_state.empty() && connection == "failed") m.server_state = "no_answer";
    if (auto it = hist.find(m.name); it != hist.end()) m.response = it->second;
    s.nodes.push_back(std::move(m));
  }
  s.last_backup = recorder_.last_backup();
  s.last_good_backup = recorder_.last_good_backup();
  auto rules = alerts_.rules();
  for (const auto& [key, st] : alerts_.states()) {
    std::string severity;
    for (const auto& r : rules)
      if (r.name == key.rule) severity = r.severity;
    s.alerts.push_back({key.rule, key.node, severity, alert_phase_name(st.phase)});
  }
  s.process = read_process_stats();
  return s;
}

void Monitoring::reconfigure(const Config& config) {
  {
    std::lock_guard lk(mu_);
    if (config.http.listen != config_.http.listen || config.http.token_file != config_.http.token_file)
      spdlog::warn("http: listen/token_file changes take effect when drd restarts");
    HttpConfig keep = config_.http;
    config_ = config;
    config_.http = keep;
  }
  alerts_.reconfigure(effective_alerts(config), runner_);
}

unsigned short Monitoring::http_port() const { return http_ ? http_->port() : 0; }

}  // namespace drd::monitoring
