#pragma once
// The `backups` listing (RPC backup.list, `drctl backups --json`): backup_to_json for every
// catalog entry, plus
//   SQLite full backups: "restorable": {"from", "to", "segments", "archiving"} — the window
//     `restore ID --to-time T` accepts (from the catalog rows of its WAL segments; see
//     incremental.hpp for what the bounds mean), or null without segments;
//   WAL segments (kind "incremental", content "sqlite-wal"): "segment" (n), "base",
//     "first_commit_at" and "last_commit_at" (= created_at, the cut time), "frames".
// Pure: no I/O. `archiving` names the fulls whose chain is still being extended.
#include <set>
#include <string>
#include <vector>

#include <boost/json.hpp>

#include "daemon/backup/catalog.hpp"

namespace drd::backup {

// Segment rows are left out unless `segments` (they are counted in "restorable").
boost::json::array catalog_json(const std::vector<CatalogEntry>& list, const std::set<std::string>& archiving,
                                bool segments = true);

}  // namespace drd::backup
