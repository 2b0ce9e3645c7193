#pragma once
// SQLite point-in-time coverage: which stretches of time a `restore ID --to-time T` can
// reach, put together from the windows of every SQLite full backup's WAL chain, and the
// gaps between them — times nothing can be restored to (docs/backups.md, "Coverage gaps").
//
// A gap opens when a chain ends (switchover or failover replaced the primary, replication
// restarted, a segment could not be written, drd stopped) and closes where a newer chain's
// window starts. While incremental archiving is expected and no chain is being extended the
// last gap is open (`to` unset): nothing after its `from` can be restored to yet.
//
// Pure: no I/O, no clock (tests/backup/pitr_coverage_test.cpp).
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/clock.hpp"
#include "daemon/backup/catalog.hpp"

namespace drd::backup {

// One full backup's restorable window (catalog_json's "restorable"): [from, to].
struct ChainWindow {
  std::string full_id;
  SysTime from{}, to{};
  bool live = false;  // its chain is still being extended: covered up to now
};

// The windows of the SQLite full backups in `list` that have WAL segments (contiguous from
// segment 1, as the replay needs them); `live` names the fulls whose chain is still extended.
std::vector<ChainWindow> sqlite_chain_windows(const std::vector<CatalogEntry>& list, const std::set<std::string>& live);

struct CoverageGap {
  SysTime from{};                // restorable up to here (the end of `after_id`'s window)
  std::optional<SysTime> to;     // restorable again from here (`before_id`'s window); unset: open
  std::string after_id;          // the backup whose window ends at `from`
  std::string before_id;         // the backup whose window starts at `to` ("" while open)
};

struct Coverage {
  std::optional<SysTime> from;   // the oldest restorable time
  std::optional<SysTime> to;     // the newest (of a live chain: its last cut so far)
  bool live = false;             // a chain is being extended
  std::vector<CoverageGap> gaps; // oldest first; only the last can be open
  const CoverageGap* open_gap() const { return !gaps.empty() && !gaps.back().to ? &gaps.back() : nullptr; }
};

// `expected`: incremental archiving is configured for the SQLite primary, so coverage that
// is not being extended is an open gap (without it old gaps are still listed, none is open).
Coverage pitr_coverage(std::vector<ChainWindow> windows, bool expected);

// The gap `t` falls in (strictly after its `from`, strictly before its `to`), if any.
std::optional<CoverageGap> gap_at(const Coverage& c, SysTime t);

// "from 2026-12-07 16:01:02.345 to 2026-12-07 16:03:00.001 UTC (between backups A and B)",
// or "from ... UTC until now (after backup A)" for an open gap.
std::string describe_gap(const CoverageGap& g);

}  // namespace drd::backup
