// The list-shaped results: history, backups, health, alerts, audit, and the
// backup / verify / restore outcomes.
#include <algorithm>
#include <cstdio>

#include "ctl/json_access.hpp"
#include "ctl/render.hpp"
#include "ctl/render_text.hpp"

namespace drd::ctl {

namespace json = boost::json;
using text::paint;
using text::Tone;
using text::tr;

std::string render_table(const std::vector<std::string>& headers,
                         const std::vector<std::vector<std::string>>& rows, const RenderOptions& o) {
  std::vector<std::size_t> w(headers.size(), 0);
  for (std::size_t c = 0; c < headers.size(); ++c) w[c] = display_width(headers[c]);
  for (const auto& r : rows)
    for (std::size_t c = 0; c < r.size() && c < w.size(); ++c) w[c] = std::max(w[c], display_width(r[c]));
  auto emit = [&](const std::vector<std::string>& cells, bool header) {
    std::string line;
    for (std::size_t c = 0; c < w.size(); ++c) {
      const std::string cell = c < cells.size() ? cells[c] : "";
      const bool last = c + 1 == w.size();
      line += header ? paint(o, Tone::bold, cell) : cell;
      if (!last) line += std::string(w[c] - display_width(cell) + 2, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    return line + "\n";
  };
  std::string out = emit(headers, true);
  for (const auto& r : rows) out += emit(r, false);
  return out;
}

namespace {

std::string ms_or_dash(const json::value& v, std::string_view key) {
  auto ms = jv::num(v, key);
  return ms ? format_ms(*ms) : "-";
}

std::string bytes_or_dash(const json::value& v, std::string_view key) {
  auto b = jv::num(v, key);
  return b && *b >= 0 ? format_bytes(static_cast<std::uint64_t>(*b)) : "-";
}

std::string yes_no(const RenderOptions& o, std::optional<bool> b) {
  if (!b) return "-";
  return *b ? tr(o, "yes", "是") : tr(o, "no", "否");
}

std::string int_text(std::optional<double> v) {
  if (!v) return "-";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.0f", *v);
  return buf;
}

}  // namespace

std::string render_history(const json::value& entries, const RenderOptions& o) {
  const auto& a = jv::as_arr(entries);
  if (a.empty()) return tr(o, "no failovers recorded\n", "没有故障转移记录\n");
  std::vector<std::vector<std::string>> rows;
  for (const auto& e : a)
    rows.push_back({format_time(jv::str(e, "time")), jv::str(e, "from", "-"), jv::str(e, "to", "-"),
                    jv::str(e, "mode", "-"), jv::str(e, "reason", "-"), ms_or_dash(e, "duration_ms"),
                    bytes_or_dash(e, "lag_bytes"), int_text(jv::num(e, "position"))});
  return render_table({tr(o, "TIME (UTC)", "时间 (UTC)"), tr(o, "FROM", "原主库"), tr(o, "TO", "新主库"),
                       tr(o, "MODE", "方式"), tr(o, "REASON", "原因"), tr(o, "DURATION", "耗时"),
                       tr(o, "LAG", "延迟"), tr(o, "POSITION", "位置")},
                      rows, o);
}

// WAL segments (point-in-time restore) are summed up in their full backup's RESTORABLE
// column; their own rows come only with `backups --segments`.
std::string render_backups(const json::value& backups, const RenderOptions& o) {
  const auto& a = jv::as_arr(backups);
  if (a.empty()) return tr(o, "no backups in the catalog\n", "备份目录为空\n");
  bool any_window = false;
  for (const auto& b : a) {
    if (b.is_object() && b.as_object().contains("restorable") && b.as_object().at("restorable").is_object()) any_window = true;
  }
  std::vector<std::vector<std::string>> rows;
  for (const auto& b : a) {
    std::vector<std::string> row{jv::str(b, "id", "-"), jv::str(b, "name", "-"), jv::str(b, "node", "-"),
                                 jv::str(b, "engine", "-"), jv::str(b, "kind", "-"), format_time(jv::str(b, "created_at")),
                                 bytes_or_dash(b, "size_bytes"),
                                 format_ratio(jv::num(b, "source_bytes"), jv::num(b, "size_bytes")),
                                 yes_no(o, jv::boolean(b, "encrypted")), yes_no(o, jv::boolean(b, "verified"))};
    if (any_window) {
      std::string w = "-";
      if (b.as_object().contains("restorable") && b.as_object().at("restorable").is_object()) {
        const auto& r = b.as_object().at("restorable");
        w = format_time(jv::str(r, "from")) + " .. " + format_time(jv::str(r, "to")).substr(11);
        if (jv::boolean(r, "archiving").value_or(false)) w += tr(o, " (live)", "（持续）");
      }
      row.push_back(w);
    }
    rows.push_back(std::move(row));
  }
  std::vector<std::string> head{"ID", tr(o, "NAME", "名称"), tr(o, "NODE", "节点"), tr(o, "ENGINE", "引擎"),
                                tr(o, "KIND", "类型"), tr(o, "TIME (UTC)", "时间 (UTC)"), tr(o, "SIZE", "大小"),
                                tr(o, "RATIO", "压缩比"), tr(o, "ENCRYPTED", "加密"), tr(o, "VERIFIED", "已校验")};
  if (any_window) head.push_back(tr(o, "RESTORABLE (--to-time)", "可恢复时间段 (--to-time)"));
  std::string out = render_table(head, rows, o);
  // Gaps in SQLite point-in-time coverage, oldest first (the listing is newest first).
  std::vector<std::string> gaps;
  for (const auto& b : a) {
    if (!b.is_object() || !b.as_object().contains("restorable") || !b.as_object().at("restorable").is_object()) continue;
    const auto& r = b.as_object().at("restorable").as_object();
    auto* g = r.if_contains("gap_after");
    if (!g || !g->is_object()) continue;
    const std::string to = jv::str(*g, "to");
    std::string l = tr(o, "GAP in point-in-time coverage: nothing can be restored to from ", "时间点恢复覆盖缺口: 无法恢复到 ") +
                    format_time(jv::str(*g, "from"));
    if (to.empty())
      l += tr(o, " until now (WAL archiving after " + jv::str(b, "id") + " ended; the next full backup starts a new chain)",
              " 至今（" + jv::str(b, "id") + " 之后的 WAL 归档已结束）");
    else
      l += tr(o, " to ", " 至 ") + format_time(to) + " (" + jv::str(b, "id") + " .. " + jv::str(*g, "before") + ")";
    gaps.insert(gaps.begin(), paint(o, Tone::bad, l));
  }
  for (auto& l : gaps) out += l + "\n";
  return out;
}

std::string render_backup_created(const json::value& b, const RenderOptions& o) {
  std::string out = tr(o, "backup ", "备份 ") + jv::str(b, "id", "-") + tr(o, " created", " 已创建") + "\n";
  out += tr(o, "path: ", "路径: ") + jv::str(b, "path", "-") + "\n";
  std::string details = bytes_or_dash(b, "size_bytes");
  std::string ratio = format_ratio(jv::num(b, "source_bytes"), jv::num(b, "size_bytes"));
  if (ratio != "-") details += ", " + ratio;
  if (auto k = jv::str(b, "kind"); !k.empty()) details += ", " + k;
  if (jv::boolean(b, "encrypted").value_or(false)) details += tr(o, ", encrypted", "，已加密");
  return out + tr(o, "size: ", "大小: ") + details + "\n";
}

std::string render_verify(const json::value& r, const RenderOptions& o) {
  std::string out;
  std::vector<std::vector<std::string>> rows;
  for (const auto& c : jv::arr(r, "checks")) {
    const bool ok = jv::boolean(c, "ok").value_or(false);
    rows.push_back({ok ? paint(o, Tone::good, "ok") : paint(o, Tone::bad, "FAILED"), jv::str(c, "name", "-"),
                    jv::str(c, "detail")});
  }
  if (!rows.empty()) out += render_table({tr(o, "RESULT", "结果"), tr(o, "CHECK", "检查"), tr(o, "DETAIL", "详情")}, rows, o);
  const std::string id = jv::str(r, "id", "-");
  if (jv::boolean(r, "ok").value_or(false))
    out += paint(o, Tone::good, tr(o, "backup " + id + " verified", "备份 " + id + " 校验通过")) + "\n";
  else
    out += paint(o, Tone::bad, tr(o, "backup " + id + " FAILED verification", "备份 " + id + " 校验失败")) + "\n";
  return out;
}

std::string render_restore(const json::value& r, const RenderOptions& o) {
  if (auto detail = jv::str(r, "detail"); !detail.empty()) {  // PostgreSQL: what was checked, how to start it
    std::string out = tr(o, "restored to ", "已恢复到 ") + jv::str(r, "restored_to", "-") + ": " + detail + "\n";
    if (auto from = jv::str(r, "streaming_from"); !from.empty())  // a standby re-seeded from the backup
      out += tr(o, "standby streaming from ", "备库正在从此节点流复制: ") + from + "\n";
    if (auto t = jv::str(r, "restored_time"); !t.empty()) out += tr(o, "as of ", "数据时间点: ") + format_time(t) + " UTC\n";
    if (auto s = jv::str(r, "safety_backup"); !s.empty())
      out += tr(o, "safety backup taken first: ", "恢复前的安全备份: ") + s + "\n";
    if (auto tl = jv::num(r, "timeline"))  // the primary rolled back: its new timeline, its standbys
      out += tr(o, "primary now on timeline ", "主库现在的时间线: ") + int_text(tl) + "\n";
    if (const auto* sb = jv::field(r, "standbys"); sb && sb->is_object())
      for (const auto& [name, state] : sb->as_object())
        out += tr(o, "standby ", "备库 ") + std::string(name) + ": " +
               (state.is_string() ? std::string(state.as_string()) : std::string("-")) + "\n";
    return out;
  }
  std::string out = tr(o, "restored to ", "已恢复到 ") + jv::str(r, "restored_to", "-") +
                    tr(o, " (integrity: ", "（完整性: ") + jv::str(r, "integrity", "-") + tr(o, ")", "）") + "\n";
  if (auto t = jv::str(r, "restored_time"); !t.empty())
    out += tr(o, "as of ", "数据时间点: ") + format_time(t) + " UTC\n";
  if (auto s = jv::str(r, "safety_backup"); !s.empty())
    out += tr(o, "safety backup taken first: ", "恢复前的安全备份: ") + s + "\n";
  if (auto rep = jv::str(r, "replication"); !rep.empty()) out += tr(o, "replication: ", "复制: ") + rep + "\n";
  return out;
}

std::string render_health(const json::value& r, const RenderOptions& o) {
  std::string out;
  if (auto since = jv::str(r, "since"); !since.empty())
    out += tr(o, "since ", "统计起点: ") + format_time(since) + "\n";
  const auto& nodes = jv::arr(r, "nodes");
  if (nodes.empty()) return out + tr(o, "no health samples recorded\n", "没有健康采样记录\n");
  std::vector<std::vector<std::string>> rows;
  for (const auto& n : nodes)
    rows.push_back({jv::str(n, "name", "-"), format_pct(jv::num(n, "availability_pct")), ms_or_dash(n, "p50_ms"),
                    ms_or_dash(n, "p95_ms"), ms_or_dash(n, "p99_ms"), int_text(jv::num(n, "failures")),
                    int_text(jv::num(n, "samples")), std::to_string(jv::arr(n, "outages").size())});
  out += render_table({tr(o, "NODE", "节点"), tr(o, "AVAILABILITY", "可用率"), "P50", "P95", "P99",
                       tr(o, "FAILURES", "失败"), tr(o, "SAMPLES", "采样"), tr(o, "OUTAGES", "中断")},
                      rows, o);
  std::vector<std::vector<std::string>> outages;
  for (const auto& n : nodes)
    for (const auto& x : jv::arr(n, "outages")) {
      std::string end = jv::str(x, "end");
      outages.push_back({jv::str(n, "name", "-"), format_time(jv::str(x, "start")),
                         end.empty() ? tr(o, "ongoing", "持续中") : format_time(end), ms_or_dash(x, "duration_ms")});
    }
  if (!outages.empty()) {
    out += "\n" + tr(o, "Outages:\n", "中断记录:\n");
    out += render_table({tr(o, "NODE", "节点"), tr(o, "START", "开始"), tr(o, "END", "结束"),
                         tr(o, "DURATION", "时长")},
                        outages, o);
  }
  if (auto n = jv::arr(r, "failovers").size(); n > 0)
    out += "\n" + tr(o, "failovers in this period: ", "期间故障转移次数: ") + std::to_string(n) + "\n";
  return out;
}

std::string render_alerts(const json::value& r, const RenderOptions& o) {
  auto table = [&](const json::array& a) {
    std::vector<std::vector<std::string>> rows;
    for (const auto& x : a) {
      const std::string sev = jv::str(x, "severity", "-");
      Tone t = sev == "critical" ? Tone::bad : sev == "warning" ? Tone::warn : Tone::dim;
      rows.push_back({format_time(jv::str(x, "since")), paint(o, t, sev), jv::str(x, "rule", "-"),
                      jv::str(x, "node", "-"), jv::str(x, "state", "-"), jv::str(x, "value", "-"),
                      jv::str(x, "message")});
    }
    return render_table({tr(o, "SINCE (UTC)", "开始 (UTC)"), tr(o, "SEVERITY", "级别"), tr(o, "RULE", "规则"),
                         tr(o, "NODE", "节点"), tr(o, "STATE", "状态"), tr(o, "VALUE", "数值"),
                         tr(o, "MESSAGE", "消息")},
                        rows, o);
  };
  std::string out;
  const auto& firing = jv::arr(r, "firing");
  const auto& recent = jv::arr(r, "recent");
  if (firing.empty()) out += tr(o, "no alerts firing\n", "没有正在触发的告警\n");
  else out += tr(o, "Firing:\n", "正在触发:\n") + table(firing);
  out += "\n";
  if (recent.empty()) out += tr(o, "no recent alerts\n", "没有最近的告警\n");
  else out += tr(o, "Recent:\n", "最近:\n") + table(recent);
  return out;
}

std::string render_audit(const json::value& entries, const RenderOptions& o) {
  const auto& a = jv::as_arr(entries);
  if (a.empty()) return tr(o, "no audit entries\n", "没有审计记录\n");
  std::vector<std::vector<std::string>> rows;
  for (const auto& e : a) {
    auto ok = jv::boolean(e, "ok");
    std::string params = "-";
    if (const auto* p = jv::field(e, "params"); p && !(p->is_object() && p->as_object().empty()) && !p->is_null())
      params = json::serialize(*p);
    rows.push_back({format_time(jv::str(e, "time")), int_text(jv::num(e, "uid")), int_text(jv::num(e, "pid")),
                    jv::str(e, "method", "-"),
                    !ok ? "-" : *ok ? paint(o, Tone::good, "ok") : paint(o, Tone::bad, tr(o, "failed", "失败")),
                    params});
  }
  return render_table({tr(o, "TIME (UTC)", "时间 (UTC)"), "UID", "PID", tr(o, "METHOD", "方法"),
                       tr(o, "RESULT", "结果"), tr(o, "PARAMS", "参数")},
                      rows, o);
}

}  // namespace drd::ctl
