#pragma once
// Archived PostgreSQL WAL segments as the table-driven tests of daemon/backup/pg_wal*.hpp write
// them: 16 MiB segments, commit times as seconds past 2026-11-24 12:00:00 UTC.
#include <optional>
#include <string>

#include "daemon/backup/catalog_json.hpp"
#include "daemon/backup/pg_wal.hpp"

namespace drd::backup::test_rows {

inline constexpr std::uint64_t kSeg = 16u << 20;

inline SysTime at(const std::string& s) { return parse_time_utc(s).value(); }

// Segment `segno` on `tl` with commits at the given seconds past 12:00:00 (none: no commits).
inline PgWalSeg seg(std::uint32_t tl, std::uint64_t segno, std::optional<int> first = {}, std::optional<int> last = {}) {
  PgWalSeg s;
  s.wal_file = wal_file_name(tl, segno);
  s.id = pg_wal_id(s.wal_file);
  s.timeline = tl;
  s.start = segno * kSeg;
  s.end = (segno + 1) * kSeg;
  if (first) s.first_commit = at("2026-11-24T12:00:00Z") + std::chrono::seconds(*first);
  if (last) s.last_commit = at("2026-11-24T12:00:00Z") + std::chrono::seconds(*last);
  return s;
}

}  // namespace drd::backup::test_rows
