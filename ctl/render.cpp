// Formatting helpers, the status panel, `test`, and the one-line
// confirmations. Tables live in render_tables.cpp.
#include "ctl/render.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "common/units.hpp"
#include "ctl/json_access.hpp"
#include "ctl/render_text.hpp"

namespace drd::ctl {

namespace json = boost::json;
using text::paint;
using text::Tone;
using text::tr;

std::string format_bytes(std::uint64_t bytes) { return format_size(bytes); }

std::string format_ms(double ms) {
  if (!std::isfinite(ms) || ms < 0) return "-";
  char buf[48];
  if (ms < 1000 && ms == std::floor(ms)) std::snprintf(buf, sizeof buf, "%.0f ms", ms);  // whole: "4 ms"
  else if (ms < 10) std::snprintf(buf, sizeof buf, "%.2f ms", ms);
  else if (ms < 100) std::snprintf(buf, sizeof buf, "%.1f ms", ms);
  else if (ms < 1000) std::snprintf(buf, sizeof buf, "%.0f ms", ms);
  else if (ms < 60'000) std::snprintf(buf, sizeof buf, "%.1f s", ms / 1000);
  else if (ms < 3'600'000) {
    auto s = static_cast<long long>(ms / 1000);
    std::snprintf(buf, sizeof buf, "%lldm%02llds", s / 60, s % 60);
  } else {
    auto m = static_cast<long long>(ms / 60'000);
    std::snprintf(buf, sizeof buf, "%lldh%02lldm", m / 60, m % 60);
  }
  return buf;
}

std::string format_lag(std::optional<double> bytes, std::optional<double> ms) {
  std::string b = bytes && *bytes >= 0 ? format_bytes(static_cast<std::uint64_t>(*bytes)) : "-";
  std::string t = ms ? format_ms(*ms) : "-";
  return b + ", " + t;
}

std::string format_time(std::string_view iso) {
  if (iso.empty()) return "-";
  // "YYYY-MM-DDTHH:MM:SS" and anything after it (fraction, zone: always UTC)
  if (iso.size() >= 19 && iso[4] == '-' && iso[10] == 'T') {
    std::string s(iso.substr(0, 19));
    s[10] = ' ';
    return s;
  }
  return std::string(iso);
}

std::string format_ratio(std::optional<double> source_bytes, std::optional<double> size_bytes) {
  if (!source_bytes || !size_bytes || *size_bytes <= 0) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1fx", *source_bytes / *size_bytes);
  return buf;
}

std::string format_pct(std::optional<double> pct) {
  if (!pct) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f%%", *pct);
  return buf;
}

std::size_t display_width(std::string_view s) {
  std::size_t width = 0;
  for (std::size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    char32_t cp;
    std::size_t len;
    if (c < 0x80) { cp = c; len = 1; }
    else if ((c >> 5) == 0x6) { cp = c & 0x1F; len = 2; }
    else if ((c >> 4) == 0xE) { cp = c & 0x0F; len = 3; }
    else if ((c >> 3) == 0x1E) { cp = c & 0x07; len = 4; }
    else { ++width; ++i; continue; }  // stray byte: count it, move on
    for (std::size_t k = 1; k < len && i + k < s.size(); ++k)
      cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
    i += len;
    if (c == 0x1B) {  // skip an ANSI colour sequence "\033[...m"
      while (i < s.size() && s[i] != 'm') ++i;
      ++i;
      continue;
    }
    if (cp == 0x200D || (cp >= 0xFE00 && cp <= 0xFE0F) || (cp >= 0x300 && cp <= 0x36F)) continue;
    bool wide = (cp >= 0x1100 && cp <= 0x115F) || (cp >= 0x2E80 && cp <= 0xA4CF) ||
                (cp >= 0xAC00 && cp <= 0xD7A3) || (cp >= 0xF900 && cp <= 0xFAFF) ||
                (cp >= 0xFE30 && cp <= 0xFE4F) || (cp >= 0xFF00 && cp <= 0xFF60) ||
                (cp >= 0xFFE0 && cp <= 0xFFE6) || (cp >= 0x1F300 && cp <= 0x1FAFF);
    width += wide ? 2 : 1;
  }
  return width;
}

std::string progress_line(double done, std::optional<double> total, std::string_view phase, int bar_width) {
  std::string out;
  std::string done_s = format_bytes(done > 0 ? static_cast<std::uint64_t>(done) : 0);
  if (total && *total > 0) {
    double frac = std::clamp(done / *total, 0.0, 1.0);
    int filled = static_cast<int>(std::lround(frac * bar_width));
    out = "[" + std::string(filled, '#') + std::string(bar_width - filled, '-') + "]";
    char pct[16];
    std::snprintf(pct, sizeof pct, " %3d%%", static_cast<int>(std::floor(frac * 100)));
    out += pct;
    out += "  " + done_s + " / " + format_bytes(static_cast<std::uint64_t>(*total));
  } else {
    out = done_s;
  }
  if (!phase.empty()) out += "  " + std::string(phase);
  return out;
}

// ---- status panel -----------------------------------------------------------

namespace {

std::string connection_of(const json::value& n) {
  std::string c = jv::str(n, "connection");
  if (!c.empty()) return c;
  auto h = jv::boolean(n, "healthy");
  return !h ? "unknown" : *h ? "ok" : "failed";
}

bool is_fenced(const json::value& n) {
  return jv::boolean(n, "fenced").value_or(false) || jv::str(n, "role") == "fenced";
}

// Monitoring stopped: the node's verdict is the last probe's, however old.
bool is_stale(const json::value& n) { return jv::boolean(n, "stale").value_or(false) || jv::str(n, "health") == "stale"; }

// "12s", "3m05s": how long ago the last probe ran, or "never".
std::string probe_age_text(const json::value& n) {
  auto age = jv::num(n, "last_probe_age_ms");
  if (!age) return "never";
  auto s = static_cast<long long>(*age / 1000);
  char buf[48];
  if (s < 60) std::snprintf(buf, sizeof buf, "%llds ago", s);
  else if (s < 3600) std::snprintf(buf, sizeof buf, "%lldm%02llds ago", s / 60, s % 60);
  else std::snprintf(buf, sizeof buf, "%lldh%02lldm ago", s / 3600, (s / 60) % 60);
  return buf;
}

std::string marker(const json::value& n, const RenderOptions& o) {
  const std::string conn = connection_of(n);
  const bool healthy = jv::boolean(n, "healthy").value_or(false);
  if (is_fenced(n)) return o.emoji ? "🔴" : paint(o, Tone::bad, "[fenced]");
  if (is_stale(n)) return o.emoji ? "⚪" : paint(o, Tone::warn, "[stale]");
  if (healthy && jv::str(n, "role") != "down") return o.emoji ? "🟢" : paint(o, Tone::good, "[ok]");
  if (conn == "unknown") return o.emoji ? "⚪" : paint(o, Tone::warn, "[unknown]");
  return o.emoji ? "🔴" : paint(o, Tone::bad, "[down]");
}

std::string connection_text(const std::string& conn, const RenderOptions& o) {
  if (conn == "ok") return paint(o, Tone::good, tr(o, "ok", "正常"));
  if (conn == "failed") return paint(o, Tone::bad, tr(o, "failed", "失败"));
  return paint(o, Tone::warn, tr(o, conn.empty() ? "unknown" : conn, "未知"));
}

std::string health_word(const json::value& n) {
  if (is_fenced(n)) return "fenced";
  if (is_stale(n)) return "stale";
  if (connection_of(n) == "unknown") return "unknown";
  return jv::boolean(n, "healthy").value_or(false) ? "healthy" : "unhealthy";
}

Tone tone_of(std::string_view word) {
  if (word == "healthy" || word == "normal" || word == "ok") return Tone::good;
  if (word == "degraded" || word == "failing" || word == "unknown" || word == "stale" || word == "failing_over") return Tone::warn;
  return Tone::bad;
}

std::string flag(const json::value& s, std::string_view key, const RenderOptions& o) {
  auto b = jv::boolean(s, key);
  return b ? text::on_off(o, *b) : "-";
}

std::string num_text(std::optional<double> v) {
  if (!v) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.0f", *v);
  return buf;
}

}  // namespace

std::string overall_health(const json::value& s) {
  std::string given = jv::str(s, "overall");
  if (!given.empty()) return given;
  if (jv::boolean(s, "monitoring") == false) return "unknown";  // nothing is checked: no verdict
  const std::string primary = jv::str(s, "primary");
  bool primary_ok = false, all_ok = true;
  for (const auto& n : jv::arr(s, "nodes")) {
    const bool ok = jv::boolean(n, "healthy").value_or(false) && !is_fenced(n);
    if (jv::str(n, "name") == primary) primary_ok = ok;
    all_ok = all_ok && ok;
  }
  if (!primary_ok) return "critical";
  return all_ok ? "healthy" : "degraded";
}

// Multi-host mode (store.type etcd): which drd leads, each drd's lease age, the store's health.
template <class Line>
void render_cluster(const json::value& s, const RenderOptions& o, Line& line) {
  const json::value* c = jv::field(s, "cluster");
  if (!c || jv::str(*c, "store") != "etcd") return;
  line("");
  line(tr(o, "--- Cluster (etcd) ---", "--- 集群 (etcd) ---"));
  const json::value* h = jv::field(*c, "store_health");
  const bool ok = h && jv::boolean(*h, "ok").value_or(false);
  line(tr(o, "Store: ", "存储: ") + (ok ? paint(o, Tone::good, "etcd ok")
                                         : paint(o, Tone::bad, "etcd unreachable: " + (h ? jv::str(*h, "error", "-") : "-"))));
  if (h)
    for (const auto& e : jv::arr(*h, "per_endpoint")) {
      std::string l = "  " + jv::str(e, "endpoint", "?") + ": ";
      if (jv::boolean(e, "reachable").value_or(false)) {
        l += jv::boolean(e, "ok").value_or(false) ? paint(o, Tone::good, "ok") : paint(o, Tone::bad, jv::str(e, "error", "no leader"));
        l += ", member " + jv::str(e, "member_id", "?");
        const std::string leader_id = jv::str(e, "leader_id");
        if (jv::boolean(e, "is_leader").value_or(false)) l += " (raft leader)";
        else if (!leader_id.empty()) l += ", leader " + leader_id;
      } else {
        l += paint(o, Tone::bad, "unreachable: " + jv::str(e, "error", "-"));
      }
      if (auto rtt = jv::num(e, "round_trip_ms")) {
        char buf[40];
        std::snprintf(buf, sizeof buf, ", %.1f ms", *rtt);
        l += buf;
      }
      line(l);
    }
  const std::string leader = jv::str(*c, "leader");
  line(tr(o, "This drd: ", "本 drd: ") + jv::str(*c, "drd", "-") + ", leader " + (leader.empty() ? "(none)" : leader));
  if (jv::boolean(*c, "self_fenced").value_or(false))
    line(paint(o, Tone::bad, tr(o, "Local database fenced: ", "本地数据库已隔离: ") + jv::str(*c, "fence_reason", "-")));
  for (const auto& m : jv::arr(*c, "members")) {
    std::string l = "  " + jv::str(m, "name", "?") + (jv::boolean(m, "leader").value_or(false) ? " (leader)" : "");
    if (auto age = jv::num(m, "lease_age_ms")) {
      char buf[48];
      std::snprintf(buf, sizeof buf, ", lease renewed %.1fs ago", *age / 1000.0);
      l += buf;
    }
    if (auto up = jv::boolean(m, "local_up")) l += *up ? ", database up" : ", database down";
    if (jv::boolean(m, "fenced_self").value_or(false)) l += ", fenced itself";
    line(l);
  }
}

std::string render_status(const json::value& s, const RenderOptions& o) {
  std::string out;
  auto line = [&out](const std::string& l) { out += l; out += '\n'; };
  const std::string primary = jv::str(s, "primary");

  line(paint(o, Tone::bold, tr(o, "=== Disaster Recovery Status ===", "=== 容灾备份系统状态 ===")));
  line(tr(o, "Disaster recovery: ", "容灾备份功能: ") + flag(s, "enabled", o));
  line("");
  line(tr(o, "--- Databases ---", "--- 数据库状态 ---"));
  line(tr(o, "Current primary: ", "当前主数据库: ") + (primary.empty() ? "-" : primary));
  line(tr(o, "Auto backup: ", "自动备份: ") + flag(s, "auto_backup", o));
  line(tr(o, "Health monitoring: ", "健康监控: ") + flag(s, "monitoring", o));
  line(tr(o, "Auto failover: ", "自动故障转移: ") + flag(s, "auto_failover", o));

  for (const auto& n : jv::arr(s, "nodes")) {
    const std::string name = jv::str(n, "name", "?");
    const std::string role = jv::str(n, "role");
    line("");
    std::string head = "  " + marker(n, o) + " " + paint(o, Tone::bold, name);
    if (name == primary) head += o.emoji ? " 👑" : " (primary)";
    line(head);
    line(tr(o, "    Type: ", "    类型: ") + jv::str(n, "type", "-"));
    if (!role.empty()) line(tr(o, "    Role: ", "    角色: ") + role);
    line(tr(o, "    Priority: ", "    优先级: ") + num_text(jv::num(n, "priority")));
    line(tr(o, "    Connection: ", "    连接状态: ") + connection_text(connection_of(n), o));
    if (role == "standby" && (jv::num(n, "lag_bytes") || jv::num(n, "lag_ms")))
      line(tr(o, "    Replication lag: ", "    复制延迟: ") + format_lag(jv::num(n, "lag_bytes"), jv::num(n, "lag_ms")));
    if (auto rl = jv::num(n, "replay_lag_bytes"); role == "standby" && (rl || jv::boolean(n, "replay_paused").value_or(false))) {
      std::string t = num_text(rl.value_or(0)) + tr(o, " bytes", " 字节");
      if (jv::boolean(n, "replay_paused").value_or(false))
        t += paint(o, Tone::warn, tr(o, " (replay paused)", " (回放已暂停)"));
      line(tr(o, "    Replay lag: ", "    回放延迟: ") + t);
    }
    if (auto st = jv::str(n, "server_state"); !st.empty()) {
      std::string word = st == "saturated" ? tr(o, "saturated (up, no free connection slot)", "连接已满 (运行中)")
                         : st == "shutting_down" ? tr(o, "shutting down", "正在关闭")
                         : st == "starting_up" ? tr(o, "starting up", "正在启动")
                         : st;
      line(tr(o, "    Server: ", "    服务器: ") + paint(o, Tone::warn, word));
    }
    if (jv::str(n, "health") == "restarting")
      line(tr(o, "    Health: ", "    健康: ") + paint(o, Tone::warn, tr(o, "restarting", "重启中")));
    const std::string err = jv::str(n, "last_error");
    if (!err.empty() && !jv::boolean(n, "healthy").value_or(false))
      line(tr(o, "    Last error: ", "    最近错误: ") + err);
    if (auto h = n.is_object() ? n.as_object().if_contains("history") : nullptr; h && h->is_object())
      line(tr(o, "    History: term ", "    历史: 任期 ") + num_text(jv::num(*h, "term")) + tr(o, ", epoch ", ", 纪元 ") +
           num_text(jv::num(*h, "epoch")));
    if (auto cp = jv::str(n, "copy_problem"); !cp.empty())
      line(paint(o, Tone::bad, tr(o, "    Copy at risk: ", "    副本风险: ") + cp));
  }
  // Which copy holds the most of the database's history, when some copy is at risk.
  std::string best;
  double best_term = -1, best_epoch = -1;
  bool at_risk = false;
  for (const auto& n : jv::arr(s, "nodes")) {
    if (!jv::str(n, "copy_problem").empty()) at_risk = true;
    auto h = n.is_object() ? n.as_object().if_contains("history") : nullptr;
    if (!h || !h->is_object()) continue;
    const double t = jv::num(*h, "term").value_or(0), e = jv::num(*h, "epoch").value_or(0);
    if (t > best_term || (t == best_term && e > best_epoch)) best = jv::str(n, "name"), best_term = t, best_epoch = e;
  }
  if (at_risk && !best.empty())
    line(tr(o, "  Most advanced standby copy: ", "  最新的备库副本: ") + best + " (term " + num_text(best_term) +
         ", epoch " + num_text(best_epoch) + ")");

  line("");
  line(tr(o, "--- Health ---", "--- 健康状态 ---"));
  const std::string overall = overall_health(s);
  const bool stopped = jv::boolean(s, "monitoring") == false;
  line(tr(o, "Overall: ", "整体状态: ") + paint(o, tone_of(overall), overall) +
       (stopped ? paint(o, Tone::warn, tr(o, " (monitoring stopped: nothing is checked; drctl start-monitoring)",
                                          "（健康监控已停止：不再检查任何节点；drctl start-monitoring）"))
                : ""));
  for (const auto& n : jv::arr(s, "nodes")) {
    const std::string word = health_word(n);
    std::string l = "  " + jv::str(n, "name", "?") + ": " + paint(o, tone_of(word), word);
    if (is_stale(n))
      l += paint(o, Tone::warn, tr(o, " (monitoring stopped: nothing is checked; last probe ", "（健康监控已停止：不再检查；上次探测 ") +
                                    probe_age_text(n) + tr(o, ")", "）"));
    line(l);
    std::string rt = "-";  // a failed probe's time says nothing about the node
    if (auto ms = jv::num(n, "response_time_ms"); ms && jv::boolean(n, "healthy").value_or(false)) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.2fms", *ms);
      rt = buf;
    }
    line(tr(o, "    Response time: ", "    响应时间: ") + rt);
    if (auto f = jv::num(n, "consecutive_failures"); f && *f > 0)
      line(tr(o, "    Consecutive failures: ", "    连续失败次数: ") + num_text(f));
  }

  line("");
  line(tr(o, "--- Failover ---", "--- 故障转移状态 ---"));
  const std::string state = jv::str(s, "failover_state", "-");
  line(tr(o, "State: ", "当前状态: ") + paint(o, tone_of(state), state));
  line(tr(o, "Auto failover: ", "自动故障转移: ") + flag(s, "auto_failover", o));
  line(tr(o, "Threshold: ", "检测阈值: ") + num_text(jv::num(s, "failure_threshold")));
  const std::string reason = jv::str(s, "failover_reason");
  if (state != "normal" && !reason.empty()) line(tr(o, "Reason: ", "原因: ") + reason);
  if (auto paused = jv::str(s, "primary_paused"); !paused.empty())  // a restore onto the primary runs
    line(tr(o, "Primary paused: ", "主库暂停: ") + paused + tr(o, " (automatic failover waits)", "（自动故障转移等待中）"));
  if (auto* p = s.is_object() ? s.as_object().if_contains("pitr") : nullptr; p && p->is_object()) {
    line("");
    line(tr(o, "--- Point-in-time restore ---", "--- 时间点恢复 ---"));
    const std::string arch = jv::str(*p, "archiving", "-");
    const Tone tone = arch == "live" ? Tone::good : arch == "stopped" ? Tone::bad : Tone::warn;
    line(tr(o, "WAL archiving: ", "WAL 归档: ") + paint(o, tone, arch));
    if (auto from = jv::str(*p, "restorable_from"); !from.empty())
      line(tr(o, "Restorable: ", "可恢复: ") + format_time(from) + " .. " + format_time(jv::str(*p, "restorable_to")) +
           (arch == "live" ? tr(o, " (live)", "（持续）") : ""));
    for (const auto& g : jv::arr(*p, "gaps")) {
      const std::string to = jv::str(g, "to");
      line(paint(o, Tone::bad, tr(o, "GAP: nothing can be restored to from ", "缺口: 无法恢复到 ") + format_time(jv::str(g, "from")) +
                                   (to.empty() ? tr(o, " until now", " 至今") : tr(o, " to ", " 至 ") + format_time(to))));
    }
    if (auto why = jv::str(*p, "reason"); !why.empty()) line(tr(o, "Reason: ", "原因: ") + why);
  }
  render_cluster(s, o, line);
  return out;
}

// ---- test, primary, confirmations -------------------------------------------

std::string render_test(const json::value& r, const RenderOptions& o) {
  const auto& nodes = jv::arr(r, "nodes");
  if (nodes.empty()) return tr(o, "no nodes configured\n", "未配置数据库节点\n");
  std::size_t w = 0;
  for (const auto& n : nodes) w = std::max(w, display_width(jv::str(n, "name", "?")));
  std::string out;
  for (const auto& n : nodes) {
    std::string name = jv::str(n, "name", "?");
    name += std::string(w - display_width(name), ' ');
    if (jv::boolean(n, "ok").value_or(false)) {
      auto ms = jv::num(n, "response_time_ms");
      out += name + "  " + paint(o, Tone::good, "ok") + "      " + (ms ? format_ms(*ms) : "-") + "\n";
    } else {
      out += name + "  " + paint(o, Tone::bad, "FAILED") + "  " + jv::str(n, "error", "no answer") + "\n";
    }
  }
  return out;
}

std::string render_primary(const json::value& r, bool url) {
  return jv::str(r, url ? "url" : "name", "-") + "\n";
}

std::string render_transition(const json::value& e, std::string_view verb, std::string_view node,
                              const RenderOptions& o) {
  std::string to = jv::str(e, "to", std::string(node));
  std::string out = std::string(verb) + tr(o, " to ", " 至 ") + to + tr(o, " done", " 完成");
  if (auto d = jv::num(e, "duration_ms")) out += tr(o, " in ", "，耗时 ") + format_ms(*d);
  if (auto t = jv::num(e, "term")) out += " (term " + num_text(t) + ")";
  return out + "\n";
}

std::string render_rejoin(const json::value& r, std::string_view verb, std::string_view node,
                          const RenderOptions& o) {
  std::string name = jv::str(r, "node", std::string(node));
  std::string role = jv::str(r, "role", "standby");
  std::string primary = jv::str(r, "primary", "");
  if (verb == "clone") {
    if (primary.empty()) return name + tr(o, " cloned from the primary, now ", " 已从主库克隆，当前角色 ") + role + "\n";
    return name + tr(o, " cloned from ", " 已从 ") + primary + tr(o, ", now a standby of it", " 克隆，现为其备库") + "\n";
  }
  if (primary.empty()) return name + tr(o, " rejoined as ", " 已重新加入，角色 ") + role + "\n";
  return name + tr(o, " rejoined as a standby of ", " 已作为备库重新加入，主库 ") + primary + "\n";
}

std::string render_confirmation(const json::value& r, std::string_view method, const RenderOptions& o) {
  if (method == "monitoring.start") return tr(o, "health monitoring started\n", "健康监控已启动\n");
  if (method == "monitoring.stop") return tr(o, "health monitoring stopped\n", "健康监控已停止\n");
  if (method == "auto_failover.enable") return tr(o, "auto failover enabled\n", "自动故障转移已启用\n");
  if (method == "auto_failover.disable") return tr(o, "auto failover disabled\n", "自动故障转移已禁用\n");
  if (method == "reload") {
    std::string cfg = jv::str(r, "config");
    return tr(o, "configuration reloaded", "配置已重新加载") + (cfg.empty() ? "" : " (" + cfg + ")") + "\n";
  }
  return "done\n";
}

}  // namespace drd::ctl
