#pragma once
// Operations on one standby file, each leaving it a valid SQLite database at
// every instant that matters for a crash (see docs/sqlite-replication.md).
// Standbys are private to drd: these assume no other process has them open.
// Not thread-safe per file.
#include <sqlite3.h>

#include <cstdint>
#include <filesystem>

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

}  // namespace drd::replication
