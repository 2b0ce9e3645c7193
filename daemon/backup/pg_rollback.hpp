#pragma once
// Rolling a live PostgreSQL primary back to a physical backup (drctl restore ID --node PRIMARY
// --force [--to-time T]): the timeline decisions. The restored copy is recovered and promoted
// beside the primary's data folder before the swap; promotion picks the new timeline as one
// above the newest history file recovery can find from the one it follows. So every timeline the
// cluster has ever used must have its history file staged, else the copy could reuse a timeline
// ID the archive already holds WAL for (two different histories under one name).
//
// Pure logic; the I/O is bkrt::prepare_primary_restore (daemon/backup/service/backup_pg_primary.cpp).
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace drd::backup {

struct PgRollbackTimelines {
  std::uint32_t highest = 0;          // the newest timeline in use anywhere: the copy must end above it
  std::vector<std::uint32_t> fetch;   // timelines whose history file the archive lacks, to read from the primary
};
// `backup_tl`: the backup's timeline; `primary_tl`: the primary's current one; `archived`: the
// timelines of the history files in the archive. History files are needed for every timeline
// above the backup's up to the highest (promotion probes them one after another and stops at the
// first gap); those not archived are read from the primary, which holds its own ancestry.
PgRollbackTimelines pg_rollback_timelines(std::uint32_t backup_tl, std::uint32_t primary_tl,
                                          const std::vector<std::uint32_t>& archived);

// The recovery settings for the roll-back: to `time_setting` (recovery_time_setting's line)
// along the primary's own timeline, else only to the end of the backup ('immediate') on the
// backup's timeline ('current': the backup may be on a branch the primary left behind).
std::string pg_rollback_settings(const std::optional<std::string>& time_setting, std::uint32_t primary_tl);

// Why a copy promoted onto `copy_tl` cannot replace the primary when `highest` is in use;
// nullopt when it is above.
std::optional<std::string> pg_rollback_timeline_problem(std::uint32_t copy_tl, std::uint32_t highest);

}  // namespace drd::backup
