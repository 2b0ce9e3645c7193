#include "daemon/backup/pitr_coverage.hpp"

#include <algorithm>
#include <map>

#include <boost/json.hpp>

#include "daemon/backup/incremental.hpp"
#include "daemon/backup/manifest.hpp"

namespace drd::backup {

namespace json = boost::json;

std::vector<ChainWindow> sqlite_chain_windows(const std::vector<CatalogEntry>& list, const std::set<std::string>& live) {
  std::map<std::string, std::vector<SegmentInfo>> segs;  // by parent
  for (auto& e : list)
    if (e.manifest.content == kWalSegmentContent)
      if (auto si = segment_row(e.manifest)) segs[e.manifest.parent].push_back(*si);
  std::vector<ChainWindow> out;
  for (auto& e : list) {
    const Manifest& m = e.manifest;
    if (m.engine != "sqlite" || m.kind != "full" || is_wal_segment(m)) continue;
    auto it = segs.find(m.id);
    if (it == segs.end()) continue;
    if (auto w = restore_window(m.created_at, contiguous_segments(it->second))) out.push_back({m.id, w->from, w->to, live.count(m.id) > 0});
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
