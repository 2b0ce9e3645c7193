// The monitoring:, failover:, backup:, alerts: and http: sections.
#include <algorithm>
#include <sstream>

#include "common/config_detail.hpp"
#include "common/config_loader.hpp"

namespace drd::config_detail {

void Loader::load_monitoring(const YAML::Node& n, MonitoringConfig& m) {
  const std::string p = "monitoring";
  if (!section(n, p, {"enabled", "interval", "timeout", "failure_threshold", "quick_check_interval",
                      "history_retention", "raw_retention"}))
    return;
  if (auto b = boolean(child(n, "enabled"), p + ".enabled")) m.enabled = *b;
  if (auto d = duration(child(n, "interval"), p + ".interval", Millis(10))) m.interval = *d;
  if (auto d = duration(child(n, "timeout"), p + ".timeout", Millis(1), "must be greater than 0")) m.timeout = *d;
  if (auto v = integer(child(n, "failure_threshold"), p + ".failure_threshold", 1, 100))
    m.failure_threshold = static_cast<int>(*v);
  // 0 turns the periodic integrity check off.
  if (auto d = duration(child(n, "quick_check_interval"), p + ".quick_check_interval")) m.quick_check_interval = *d;
  if (auto d = duration(child(n, "history_retention"), p + ".history_retention", Millis(60'000)))
    m.history_retention = *d;
  if (auto d = duration(child(n, "raw_retention"), p + ".raw_retention", Millis(60'000))) m.raw_retention = *d;
}

void Loader::load_failover(const YAML::Node& n, FailoverConfig& f) {
  const std::string p = "failover";
  if (!section(n, p, {"auto", "max_lag", "synchronous", "synchronous_degrade_after", "restart_grace"})) return;
  if (auto b = boolean(child(n, "auto"), p + ".auto")) f.auto_failover = *b;
  if (auto s = size(child(n, "max_lag"), p + ".max_lag")) f.max_lag_bytes = *s;
  if (auto b = boolean(child(n, "synchronous"), p + ".synchronous")) f.synchronous = *b;
  if (auto d = duration(child(n, "synchronous_degrade_after"), p + ".synchronous_degrade_after"))
    f.synchronous_degrade_after = *d;
  if (auto d = duration(child(n, "restart_grace"), p + ".restart_grace")) f.restart_grace = *d;
}

void Loader::load_backup(const YAML::Node& n, BackupConfig& b) {
  const std::string p = "backup";
  if (!section(n, p, {"enabled", "directory", "schedule", "compression", "encryption", "retention",
                      "prefer_standby", "verify_schedule", "incremental", "pg_wal_archive"}))
    return;
  if (auto v = boolean(child(n, "enabled"), p + ".enabled")) b.enabled = *v;
  if (auto v = path(child(n, "directory"), p + ".directory")) b.directory = *v;
  for (auto [key, out] : {std::pair{"schedule", &b.schedule}, std::pair{"verify_schedule", &b.verify_schedule}}) {
    YAML::Node v = child(n, key);
    if (auto s = str(v, p + "." + key)) {
      if (auto err = check_schedule(*s)) add(where(v), p + "." + key + ": " + *err);
      else *out = *s;
    }
  }
  if (auto v = boolean(child(n, "prefer_standby"), p + ".prefer_standby")) b.prefer_standby = *v;

  // incremental: true|false, or { enabled, segment_size, segment_interval }.
  YAML::Node inc = child(n, "incremental");
  if (present(inc) && inc.IsScalar()) {
    if (auto v = boolean(inc, p + ".incremental")) b.incremental = *v;
  } else if (section(inc, p + ".incremental", {"enabled", "segment_size", "segment_interval"})) {
    if (auto v = boolean(child(inc, "enabled"), p + ".incremental.enabled")) b.incremental = *v;
    YAML::Node sz = child(inc, "segment_size");
    if (auto v = size(sz, p + ".incremental.segment_size")) {
      if (*v < (64u << 10)) add(where(sz), p + ".incremental.segment_size: must be at least 64KB");
      else b.segment_max_bytes = *v;
    }
    if (auto d = duration(child(inc, "segment_interval"), p + ".incremental.segment_interval", Millis(100)))
      b.segment_max_age = *d;
  }

  // pg_wal_archive: true|false, or { enabled, spool }.
  YAML::Node pw = child(n, "pg_wal_archive");
  if (present(pw) && pw.IsScalar()) {
    if (auto v = boolean(pw, p + ".pg_wal_archive")) b.pg_wal_archive = *v;
  } else if (section(pw, p + ".pg_wal_archive", {"enabled", "spool"})) {
    if (auto v = boolean(child(pw, "enabled"), p + ".pg_wal_archive.enabled")) b.pg_wal_archive = *v;
    if (auto v = path(child(pw, "spool"), p + ".pg_wal_archive.spool")) b.pg_wal_spool = *v;
  }

  // compression: { algorithm, level, threads }, or the shorthand "compression: zstd|none".
  YAML::Node c = child(n, "compression");
  const std::vector<std::string> algorithms = {"zstd", "none"};
  if (present(c) && c.IsScalar()) {
    if (auto a = one_of(c, p + ".compression", algorithms)) b.compression_algorithm = *a;
  } else if (section(c, p + ".compression", {"algorithm", "level", "threads"})) {
    if (auto a = one_of(child(c, "algorithm"), p + ".compression.algorithm", algorithms))
      b.compression_algorithm = *a;
    if (auto v = integer(child(c, "level"), p + ".compression.level", 1, 19)) b.compression_level = static_cast<int>(*v);
    if (auto v = integer(child(c, "threads"), p + ".compression.threads", 0, 256))
      b.compression_threads = static_cast<int>(*v);
  }

  YAML::Node e = child(n, "encryption");
  if (section(e, p + ".encryption", {"key_file"})) {
    if (auto v = path(child(e, "key_file"), p + ".encryption.key_file")) b.key_file = *v;
  }

  YAML::Node r = child(n, "retention");
  if (section(r, p + ".retention", {"keep_last", "keep_daily", "keep_weekly", "keep_monthly"})) {
    for (auto [key, out] : {std::pair{"keep_last", &b.keep_last}, std::pair{"keep_daily", &b.keep_daily},
                            std::pair{"keep_weekly", &b.keep_weekly}, std::pair{"keep_monthly", &b.keep_monthly}}) {
      if (auto v = integer(child(r, key), p + ".retention." + key, 0, 100000)) *out = static_cast<int>(*v);
    }
  }
}

namespace {

const std::vector<std::string> kMetrics = {"up",           "response_time_ms", "lag_bytes",    "lag_ms",
                                           "backup_age",   "backup_age_s",     "backup_failed", "failover",
                                           "disk_free_pct", "memory_rss_bytes", "sync_degraded",
                                           "copy_problem", "pitr_gap", "server_problem"};
const std::vector<std::string> kOps = {">", ">=", "<", "<=", "==", "!="};

// Metrics that are events (0 or a count): a rule on them may leave out op and threshold,
// meaning "> 0", i.e. "whenever it happens".
bool is_event_metric(const std::string& m) {
  return m == "failover" || m == "backup_failed" || m == "sync_degraded" || m == "copy_problem" ||
         m == "server_problem";
}

std::vector<std::string> split_words(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string w; ss >> w;) out.push_back(w);
  return out;
}

}  // namespace

void Loader::load_alerts(const YAML::Node& n, Config& cfg) {
  if (!section(n, "alerts", {"channels", "rules"})) return;

  YAML::Node chans = child(n, "channels");
  if (present(chans) && !chans.IsMap()) {
    add(where(chans), "alerts.channels: expected a mapping of NAME: { type: ... }, got " + describe(chans));
  } else if (present(chans)) {
    for (auto it = chans.begin(); it != chans.end(); ++it) {
      if (!it->first.IsScalar()) {
        add(where(it->first), "alerts.channels: keys must be plain names, got " + describe(it->first));
        continue;
      }
      AlertChannelConfig ch;
      ch.name = it->first.Scalar();
      const Where key_at = where(it->first);
      ch.line = key_at.line;
      ch.column = key_at.column;
      const std::string p = "alerts.channels." + ch.name;
      const YAML::Node e = it->second;
      if (!present(e)) {
        add(key_at, p + ": missing type (webhook, exec, email or log)");
        continue;
      }
      if (!section(e, p, {"type", "url", "command", "to", "timeout", "retries"})) continue;
      YAML::Node type = child(e, "type");
      if (!present(type)) {
        add(key_at, p + ": missing type (webhook, exec, email or log)");
        continue;
      }
      auto t = one_of(type, p + ".type", {"webhook", "exec", "email", "log"});
      if (!t) continue;
      ch.type = *t;
      if (auto d = duration(child(e, "timeout"), p + ".timeout", Millis(1), "must be greater than 0")) ch.timeout = *d;
      if (auto v = integer(child(e, "retries"), p + ".retries", 0, 100)) ch.retries = static_cast<int>(*v);

      const std::string own = ch.type == "webhook" ? "url" : ch.type == "exec" ? "command" : ch.type == "email" ? "to" : "";
      for (const char* k : {"url", "command", "to"}) {
        YAML::Node v = child(e, k);
        if (present(v) && own != k) add(where(v), p + "." + k + ": does not apply to " + ch.type + " channels");
      }
      if (!own.empty() && !present(child(e, own))) {
        add(key_at, p + ": a " + ch.type + " channel needs " + own + ":");
      }
      if (ch.type == "webhook") {
        YAML::Node v = child(e, "url");
        if (auto u = str(v, p + ".url")) {
          const std::string shown = redact_url(*u);
          if (u->rfind("https://", 0) == 0) {
            add(where(v), p + ".url: https is not supported; use an http:// endpoint (e.g. a local relay), got '" +
                              shown + "'");
          } else if (u->rfind("http://", 0) != 0 || u->size() <= 7 || (*u)[7] == '/') {
            add(where(v), p + ".url: expected http://HOST[:PORT]/PATH, got '" + shown + "'");
          } else {
            ch.url = *u;
          }
        }
      } else if (ch.type == "exec") {
        YAML::Node v = child(e, "command");
        if (present(v) && v.IsScalar()) {
          ch.command = split_words(v.Scalar());
        } else if (auto list = str_list(v, p + ".command")) {
          ch.command = *list;
        }
        if (present(v) && ch.command.empty() && (v.IsScalar() || v.IsSequence())) {
          add(where(v), p + ".command: must name a program to run");
        }
      } else if (ch.type == "email") {
        YAML::Node v = child(e, "to");
        if (auto s = str(v, p + ".to")) {
          if (s->find('@') == std::string::npos) add(where(v), p + ".to: expected an email address, got " + describe(v));
          else ch.to = *s;
        }
      }
      cfg.alerts.channels.push_back(std::move(ch));
    }
  }

  std::vector<std::string> channel_names, node_names;
  for (const auto& c : cfg.alerts.channels) channel_names.push_back(c.name);
  if (present(chans) && chans.IsMap()) {
    // Channels with errors are still names the rules may refer to: report them once.
    for (auto it = chans.begin(); it != chans.end(); ++it)
      if (it->first.IsScalar() &&
          std::find(channel_names.begin(), channel_names.end(), it->first.Scalar()) == channel_names.end())
        channel_names.push_back(it->first.Scalar());
  }
  for (const auto& nd : cfg.nodes) node_names.push_back(nd.name);

  YAML::Node rules = child(n, "rules");
  if (!present(rules)) return;
  if (!rules.IsSequence()) {
    add(where(rules), "alerts.rules: expected a list of rules (- name: ...), got " + describe(rules));
    return;
  }
  std::size_t index = 0;
  for (const auto& e : rules) {
    ++index;
    AlertRuleConfig r;
    const Where at = where(e);
    r.line = at.line;
    r.column = at.column;
    std::string p = "alerts.rules[" + std::to_string(index) + "]";
    if (!present(e) || !e.IsMap()) {
      add(at, p + ": expected a rule mapping (name:, metric:, op:, threshold:, ...), got " + describe(e));
      continue;
    }
    if (auto s = str(child(e, "name"), p + ".name"); s && !s->empty()) {
      r.name = *s;
      p = "alerts.rules." + r.name;
      for (const auto& other : cfg.alerts.rules)
        if (other.name == r.name)
          add(where(child(e, "name")), p + ": duplicate rule name (first at line " + std::to_string(other.line) + ")");
    } else {
      add(at, p + ": missing name");
    }
    section(e, p, {"name", "metric", "op", "threshold", "for", "severity", "nodes", "channels", "repeat"});
    YAML::Node metric = child(e, "metric");
    if (!present(metric)) add(at, p + ": missing metric (one of up, response_time_ms, lag_bytes, lag_ms, ...)");
    else if (auto m = one_of(metric, p + ".metric", kMetrics)) r.metric = *m;
    const bool event = is_event_metric(r.metric);
    r.op = ">";
    YAML::Node op = child(e, "op");
    if (present(op)) {
      auto s = str(op, p + ".op");
      if (s && std::find(kOps.begin(), kOps.end(), *s) != kOps.end()) {
        r.op = *s;
      } else if (s) {
        add(where(op), p + ".op: must be one of > >= < <= == != (quote it: op: \">\"), got " + describe(op));
      }
    } else if (!event && !r.metric.empty()) {
      add(at, p + ": missing op (one of > >= < <= == !=, quoted)");
    }
    YAML::Node th = child(e, "threshold");
    if (present(th)) {
      if (auto v = number(th, p + ".threshold")) r.threshold = *v;
    } else if (!event && !r.metric.empty()) {
      add(at, p + ": missing threshold");
    }
    if (auto d = duration(child(e, "for"), p + ".for")) r.for_duration = *d;
    if (auto d = duration(child(e, "repeat"), p + ".repeat")) r.repeat_interval = *d;
    if (auto s = one_of(child(e, "severity"), p + ".severity", {"info", "warning", "critical"})) r.severity = *s;
    const YAML::Node nodes = child(e, "nodes");
    if (auto list = str_list(nodes, p + ".nodes")) {
      std::size_t i = 0;
      for (const auto& name : *list) {
        const Where w = nodes.IsSequence() ? where(nodes[i]) : where(nodes);
        ++i;
        if (std::find(node_names.begin(), node_names.end(), name) != node_names.end()) {
          r.nodes.push_back(name);
          continue;
        }
        std::string msg = p + ".nodes: no database named '" + name + "'";
        if (auto near = nearest_key(name, node_names)) msg += " (did you mean '" + *near + "'?)";
        add(w, msg);
      }
    }
    const YAML::Node chs = child(e, "channels");
    if (auto list = str_list(chs, p + ".channels")) {
      std::size_t i = 0;
      for (const auto& name : *list) {
        const Where w = chs.IsSequence() ? where(chs[i]) : where(chs);
        ++i;
        if (std::find(channel_names.begin(), channel_names.end(), name) != channel_names.end()) {
          r.channels.push_back(name);
          continue;
        }
        std::string msg = p + ".channels: no alert channel named '" + name + "' under alerts.channels";
        if (auto near = nearest_key(name, channel_names)) msg += " (did you mean '" + *near + "'?)";
        add(w, msg);
      }
    }
    cfg.alerts.rules.push_back(std::move(r));
  }
}

void Loader::load_http(const YAML::Node& n, HttpConfig& h) {
  if (!section(n, "http", {"listen", "token_file"})) return;
  YAML::Node l = child(n, "listen");
  if (auto s = str(l, "http.listen"); s && !s->empty()) {
    if (auto err = check_listen(*s)) add(where(l), "http.listen: " + *err);
    else h.listen = *s;
  }
  if (auto v = path(child(n, "token_file"), "http.token_file")) h.token_file = *v;
}

}  // namespace drd::config_detail
