#include "daemon/backup/pitr_coverage.hpp"

#include <algorithm>
#include <map>

#include <boost/json.hpp>

#include "daemon/backup/incremental.hpp"
#include "daemon/backup/manifest.hpp"

namespace drd::backup {

namespace json = boost::json;

namespace {

// The segment facts kept in a segment row's source_position (daemon_archive.cpp writes them).
std::optional<SegmentInfo> seg_info(const Manifest& m) {
  boost::system::error_code ec;
  auto v = json::parse(m.source_position, ec);
  if (ec || !v.is_object()) return std::nullopt;
  const auto& o = v.as_object();
  SegmentInfo si;
  si.time = m.created_at;
  si.first_time = m.created_at;
  if (auto* n = o.if_contains("segment"); n && n->is_int64() && n->as_int64() > 0)
    si.n = static_cast<std::uint64_t>(n->as_int64());
  if (auto* b = o.if_contains("base"); b && b->is_bool()) si.base = b->as_bool();
  if (si.n == 0) return std::nullopt;
  return si;
}

}  // namespace

std::vector<ChainWindow> sqlite_chain_windows(const std::vector<CatalogEntry>& list, const std::set<std::string>& live) {
  std::map<std::string, std::vector<SegmentInfo>> segs;  // by parent
  for (auto& e : list)
    if (e.manifest.content == kWalSegmentContent)
      if (auto si = seg_info(e.manifest)) segs[e.manifest.parent].push_back(*si);
  std::vector<ChainWindow> out;
  for (auto& e : list) {
    const Manifest& m = e.manifest;
    if (m.engine != "sqlite" || m.kind != "full" || is_wal_segment(m)) continue;
    auto it = segs.find(m.id);
    if (it == segs.end()) continue;
    auto rows = it->second;
    std::sort(rows.begin(), rows.end(), [](const SegmentInfo& a, const SegmentInfo& b) { return a.n < b.n; });
    std::vector<SegmentInfo> contiguous;
    for (auto& r : rows) {
      if (r.n != contiguous.size() + 1) break;
      contiguous.push_back(r);
    }
    if (auto w = restore_window(m.created_at, contiguous)) out.push_back({m.id, w->from, w->to, live.count(m.id) > 0});
  }
  return out;
}

Coverage pitr_coverage(std::vector<ChainWindow> windows, bool expected) {
  Coverage c;
  if (windows.empty()) return c;
  std::stable_sort(windows.begin(), windows.end(),
                   [](const ChainWindow& a, const ChainWindow& b) { return a.from < b.from; });
  c.from = windows.front().from;
  // The end of what is covered so far, which window reaches it, and whether that one is live
  // (a live chain covers everything after its start: its next cut extends it).
  SysTime end = windows.front().to;
  std::string end_id = windows.front().full_id;
  bool end_live = windows.front().live;
  for (std::size_t i = 1; i < windows.size(); ++i) {
    const ChainWindow& w = windows[i];
    if (!end_live && w.from > end) c.gaps.push_back({end, w.from, end_id, w.full_id});
    if (w.live || (!end_live && w.to >= end)) end_id = w.full_id;
    end = std::max(end, w.to);
    end_live = end_live || w.live;
  }
  c.to = end;
  c.live = end_live;
  if (expected && !end_live) c.gaps.push_back({end, std::nullopt, end_id, ""});
  return c;
}

std::optional<CoverageGap> gap_at(const Coverage& c, SysTime t) {
  for (auto& g : c.gaps)
    if (t > g.from && (!g.to || t < *g.to)) return g;
  return std::nullopt;
}

std::string describe_gap(const CoverageGap& g) {
  std::string from = format_time_utc(g.from);
  if (!g.to) return "from " + from + " until now (archiving after backup " + g.after_id + " ended)";
  return "from " + from + " to " + format_time_utc(*g.to) + " (between backups " + g.after_id + " and " +
         g.before_id + ")";
}

}  // namespace drd::backup
