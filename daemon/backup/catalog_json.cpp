#include "daemon/backup/catalog_json.hpp"

#include <algorithm>
#include <map>

#include "daemon/backup/incremental.hpp"
#include "daemon/backup/pg_wal.hpp"

namespace drd::backup {

namespace json = boost::json;

json::array catalog_json(const std::vector<CatalogEntry>& list, const std::set<std::string>& archiving, bool segments) {
  std::map<std::string, std::vector<SegmentInfo>> segs;  // by parent
  std::vector<PgWalSeg> pg_segs;                     // PostgreSQL: one archive for every base backup
  for (auto& e : list) {
    if (e.manifest.content == kWalSegmentContent)
      if (auto r = segment_row(e.manifest)) segs[e.manifest.parent].push_back(*r);
    if (auto p = pg_wal_seg(e.manifest)) pg_segs.push_back(*p);
  }
  json::array out;
  for (auto& e : list) {
    json::object o = backup_to_json(e);
    const Manifest& m = e.manifest;
    o["content"] = m.content;
    if (is_pg_wal(m)) {
      if (!segments) continue;
      auto p = pg_wal_seg(m);
      o["wal_file"] = m.id.rfind("pg-wal-", 0) == 0 ? m.id.substr(7) : m.id;
      o["timeline"] = m.pg_timeline;
      o["start_lsn"] = m.pg_start_lsn.empty() ? json::value(nullptr) : json::value(m.pg_start_lsn);
      o["end_lsn"] = m.pg_stop_lsn.empty() ? json::value(nullptr) : json::value(m.pg_stop_lsn);
      o["first_commit_at"] = p && p->first_commit ? json::value(format_time_utc(*p->first_commit)) : json::value(nullptr);
      o["last_commit_at"] = p && p->last_commit ? json::value(format_time_utc(*p->last_commit)) : json::value(nullptr);
    } else if (is_wal_segment(m)) {
      if (!segments) continue;
      auto r = segment_row(m);
      o["segment"] = r ? json::value(r->n) : json::value(nullptr);
      o["base"] = r && r->base;
      o["first_commit_at"] = r ? json::value(format_time_utc(r->first_time)) : json::value(nullptr);
      o["last_commit_at"] = format_time_utc(m.created_at);
      o["frames"] = r ? r->frames : 0;
    } else if (m.engine == "sqlite" && m.kind == "full") {
      auto it = segs.find(m.id);
      json::value window = nullptr;
      if (it != segs.end()) {
        if (auto w = restore_window(m.created_at, contiguous_segments(it->second)))
          window = json::object{{"from", format_time_utc(w->from)},
                                {"to", format_time_utc(w->to)},
                                {"segments", w->segments},
                                {"archiving", archiving.count(m.id) > 0}};
      }
      o["restorable"] = window;
    } else if (auto base = pg_base_of(m)) {
      auto chain = pg_chain(*base, pg_segs);
      json::value window = nullptr;
      if (auto w = pg_window(*base, chain)) {
        json::object wo{{"from", format_time_utc(w->from)},
                        {"to", format_time_utc(w->to)},
                        {"segments", w->segments},
                        {"archiving", archiving.count(kPgArchivingLive) > 0}};
        if (!chain.gap.empty()) wo["gap"] = chain.gap;
        window = std::move(wo);
      }
      o["restorable"] = window;
    }
    out.push_back(std::move(o));
  }
  return out;
}

}  // namespace drd::backup
