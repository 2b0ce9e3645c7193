#pragma once
// Operations on one standby file, each leaving it a valid SQLite database at
// every instant that matters for a crash (see docs/sqlite-replication.md).
// Standbys are private to drd: these assume no other process has them open.
// Not thread-safe per file.
#include <sqlite3.h>

#include <cstdint>
#include <filesystem>
#include <functional>

#include "common/result.hpp"

namespace drd::replication {

// Completes an apply interrupted by a crash: if `<db>-wal` exists, opens the
// database (SQLite's recovery keeps only checksummed frames through the last
// commit), checkpoints it with TRUNCATE, and removes the empty -wal/-shm.
Status recover_standby(const std::filesystem::path& db);

struct DbFileInfo {
  std::uint32_t page_size = 0;
  bool wal_mode = false;  // header bytes 18/19 == 2
};
// Reads the 100-byte database header (no SQLite connection).
Result<DbFileInfo> read_db_header(const std::filesystem::path& db);

// Opens the standby whose `-wal` was just written with `frames` frames,
// checks that SQLite accepted every one of them, checkpoints them into the
// database (TRUNCATE, synchronous=FULL) and closes, leaving no -wal/-shm.
Status checkpoint_standby(const std::filesystem::path& db, std::uint32_t frames);

// Copies the snapshot visible to `src` (its open read transaction if any)
// into `dst` atomically: backup API into `<dst>.drd-seed`, switch it to WAL
// mode, fsync, remove dst's -wal/-shm, rename over dst, fsync the folder.
// `src_name` is only used in messages.
Status seed_from_connection(sqlite3* src, const std::string& src_name, const std::filesystem::path& dst);

// An incremental seed: makes the standby `dst` (a WAL-mode database of `page_size`, private
// to drd) equal, page for page, to a snapshot of `pages` pages whose page `pgno` (1-based)
// `source_page` writes into `out`, by rewriting only the pages that differ. Crash-safe the
// way an apply is: the differing pages go into a fresh `<dst>-wal` as one transaction
// (commit frame last, carrying the snapshot's size), fsynced, then checkpointed into the
// file (which the checkpoint truncates to that size); a crash leaves the file as it was or
// as the snapshot. `before_write` runs after every source page was read and before the
// file changes (the caller checks the snapshot it read is still intact); an error there
// leaves the file untouched. The result passes quick_check. Errors: Errc::conflict when
// the file cannot be patched (another page size, not in WAL mode, unreadable): the caller
// copies the whole snapshot instead.
struct PatchStats {
  std::uint32_t pages = 0;          // pages in the snapshot
  std::uint32_t pages_written = 0;  // pages that differed (and were rewritten)
  std::uint64_t bytes_written = 0;  // bytes of those pages (written to its WAL; the checkpoint copies them in)
};
using PageSource = std::function<Status(std::uint32_t pgno, unsigned char* out)>;
Result<PatchStats> patch_standby(const std::filesystem::path& dst, std::uint32_t page_size, std::uint32_t pages,
                                 const PageSource& source_page, const std::function<Status()>& before_write);

}  // namespace drd::replication
