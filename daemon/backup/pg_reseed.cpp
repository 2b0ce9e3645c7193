#include "daemon/backup/pg_reseed.hpp"

#include <algorithm>

#include "daemon/backup/pg_wal.hpp"

namespace drd::backup {

PgReseedWal pg_reseed_wal(const Manifest& full, const std::vector<Manifest>& archived) {
  PgReseedWal out;
  auto base = pg_base_of(full);
  if (!base) return out;
  std::vector<PgWalSeg> segs;
  std::vector<const Manifest*> histories;
  for (auto& m : archived) {
    if (m.content == kPgHistoryContent) {
      if (m.pg_timeline >= base->timeline) histories.push_back(&m);
    } else if (auto s = pg_wal_seg(m)) {
      segs.push_back(*s);
    }
  }
  auto chain = pg_chain(*base, std::move(segs));
  out.gap = chain.gap;
  for (auto& s : chain.segments)
    for (auto& m : archived)
      if (m.id == s.id && m.content == kPgWalContent) {
        out.files.push_back(m);
        break;
      }
  out.segments = out.files.size();
  std::sort(histories.begin(), histories.end(),
            [](const Manifest* a, const Manifest* b) { return a->pg_timeline < b->pg_timeline; });
  for (auto* h : histories) out.files.push_back(*h);
  return out;
}

}  // namespace drd::backup
