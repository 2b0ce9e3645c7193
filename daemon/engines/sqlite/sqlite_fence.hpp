#pragma once
// The persistent SQLite fence: a fence that outlives drd's process.
//
// drd's lock on a fenced file dies with drd. While drd is down (killed, restarting,
// upgraded) a new connection to the fenced file -- by its path or through an old link --
// could commit there. So a fenced file and its -wal and -shm are also made read-only
// (every write bit cleared), and `<db>.drd-fenced` records their original modes, why and
// when. A process of an ordinary user then opens the file read-only (SQLite falls back)
// and cannot commit. Root ignores file modes: see docs/sqlite-replication.md.
//
// The record is written atomically before the first chmod and removed only after the
// modes are restored, so a crash in between leaves the original modes on disk.
#include <filesystem>
#include <optional>
#include <string>

#include "common/result.hpp"

namespace drd::sqlite_fence {

struct FenceRecord {
  unsigned db_mode = 0;               // permission bits (07777) of the database file
  std::optional<unsigned> wal_mode;   // of -wal, when it existed at fencing
  std::optional<unsigned> shm_mode;   // of -shm, when it existed at fencing
  std::string since;                  // UTC, ISO 8601
  std::string reason;                 // one line
};

std::filesystem::path record_path(const std::filesystem::path& db);  // <db>.drd-fenced

// The record's text ("drd-fenced v1" then one "key value" line each) and back. Pure.
std::string format_record(const FenceRecord& r);
Result<FenceRecord> parse_record(const std::string& text);

// The file carries a fence record.
bool fenced_on_disk(const std::filesystem::path& db);

// Fences `db` on disk: writes the record the first time (an existing one keeps the
// original modes and is never overwritten), then clears the write bits of db, -wal and
// -shm (again each call: a -wal created since, or a chmod by hand, is fenced too).
// A missing db: nothing to fence.
Status apply(const std::filesystem::path& db, const std::string& reason);

// Lifts the fence: restores the recorded modes and removes the record. Returns the record
// (nullopt without one) so the caller can give a re-seeded file the original mode again.
Result<std::optional<FenceRecord>> lift(const std::filesystem::path& db);

// Gives db, -wal and -shm (those that exist) the record's modes.
Status restore_modes(const std::filesystem::path& db, const FenceRecord& r);

// Adds the owner's write bit to db, -wal and -shm for drd's own lock connection (a drd not
// running as root could not open its fenced file read-write); apply() clears it again.
void allow_owner_write(const std::filesystem::path& db);

}  // namespace drd::sqlite_fence
