#pragma once
// Re-seeding a PostgreSQL standby from a physical base backup (drctl restore ID --node STANDBY):
// which of the WAL files archived beside the backup (`<backups>/pg-wal/`, backup/pg_wal.hpp) go
// into the restored copy's pg_wal/ before it starts as a standby. The standby replays what it
// finds in pg_wal/ first and only then streams from the primary, so the primary no longer needs
// to hold the WAL written since the backup.
//
// Pure logic; the I/O is bkrt::prepare_standby_restore (daemon/backup/service/backup_pg_standby.cpp).
#include <string>
#include <vector>

#include "daemon/backup/manifest.hpp"

namespace drd::backup {

struct PgReseedWal {
  std::vector<Manifest> files;  // segments in chain order, then history files by timeline
  std::size_t segments = 0;     // how many of `files` are segments
  std::string gap;              // first segment missing from the archive (later ones exist), else ""
};

// Every archived segment of `full`'s chain (pg_chain: contiguous from the segment holding its
// stop LSN, highest timeline per LSN range, up to the first gap) and every timeline history file
// from `full`'s timeline up (a standby following the primary onto a later timeline needs them;
// older ones describe history the base backup already contains). Nothing when `full` is not a
// physical base backup with a stop LSN.
PgReseedWal pg_reseed_wal(const Manifest& full, const std::vector<Manifest>& archived);

}  // namespace drd::backup
