#pragma once
// The `backups` listing (RPC backup.list, `drctl backups --json`): backup_to_json for every
// catalog entry, plus
//   SQLite full backups: "restorable": {"from", "to", "segments", "archiving"} — the window
//     `restore ID --to-time T` accepts (from the catalog rows of its WAL segments; see
//     incremental.hpp for what the bounds mean), or null without segments;
//   WAL segments (kind "incremental", content "sqlite-wal"): "segment" (n), "base",
//     "first_commit_at" and "last_commit_at" (= created_at, the cut time), "frames".
//   PostgreSQL physical full backups: "restorable": {"from", "to", "segments", "archiving",
//     "gap"?} from the archived WAL rows (pg_wal.hpp: pg_chain/pg_window), or null;
//   PostgreSQL archived WAL (content "pg-wal", "pg-wal-history"): "wal_file", "timeline",
//     "start_lsn", "end_lsn", "first_commit_at", "last_commit_at".
// Pure: no I/O. `archiving` names the fulls whose chain is still being extended, and holds
// kPgArchivingLive while PostgreSQL WAL archiving runs.
#include <set>
#include <string>
#include <vector>

#include <boost/json.hpp>

#include "daemon/backup/catalog.hpp"

namespace drd::backup {

inline constexpr const char* kPgArchivingLive = "*postgresql*";

// Segment rows are left out unless `segments` (they are counted in "restorable").
boost::json::array catalog_json(const std::vector<CatalogEntry>& list, const std::set<std::string>& archiving,
                                bool segments = true);

}  // namespace drd::backup
