#pragma once
// SQLite incremental backups: WAL segments on top of a full backup, for point-in-time restore.
//
// The replication engine hands over committed WAL frames (page images) read from the primary
// since the previous segment — the first segment starts exactly at the full backup's snapshot;
// guaranteeing that is the caller's job. Each call writes one segment:
//   <dir>/<full-id>/seg-<n>        DRDBK1 container (compressed, encrypted like the full)
//   <dir>/<full-id>/seg-<n>.json   {"n", "time", "frames", "page_size", "file_sha256", ...}
// both via `.partial` + fsync + rename, the JSON last. Segment plaintext: "DRDSEG1\0", u32
// page_size, u32 frame count, then per frame u32 page_no, u32 commit_db_size, page bytes.
//
// restore_sqlite_to_time restores the full, then applies segments with time <= to_time in
// order, like a checkpoint: each page written at (page_no-1)*page_size, the file truncated to
// commit_db_size pages at each commit frame; frames after a segment's last commit are ignored.
// Then integrity_check, fsync and the same atomic rename as restore_sqlite.
//
// Threading: appends for one full must be serialized by the caller.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <vector>

#include "common/clock.hpp"
#include "common/result.hpp"
#include "daemon/backup/session.hpp"
#include "daemon/backup/sqlite_backup.hpp"

namespace drd::backup {

// One WAL frame as the replication engine sees it. commit_db_size != 0 marks a commit frame
// (the database size in pages after that commit).
struct WalFrame {
  std::uint32_t page_no = 0;
  std::uint32_t commit_db_size = 0;
  std::vector<std::uint8_t> bytes;  // exactly page_size bytes
};

struct SegmentInfo {
  std::uint64_t n = 0;      // 1, 2, ...
  SysTime time{};
  std::uint64_t frames = 0;
  std::uint32_t page_size = 0;
  std::string file_sha256, plaintext_sha256;
  std::filesystem::path path;
};

// Appends segment n+1 for full backup `full_id` in `s.directory`. Errors: not_found (no such
// full), invalid_argument (frame sizes differ from page_size, page_no 0), io.
Result<SegmentInfo> append_wal_segment(const BackupSettings& s, const std::string& full_id, std::uint32_t page_size,
                                       const std::vector<WalFrame>& frames, SysTime time);

// Segments of a full backup, in order. Missing or unreadable sidecars are errors (a gap would
// make later segments unusable).
Result<std::vector<SegmentInfo>> list_segments(const std::filesystem::path& dir, const std::string& full_id);

// `full` must resolve to a full SQLite backup with its manifest (segments are found in
// `<dir>/<full-id>/`). Every appended segment ends with a commit frame (append refuses others).
struct PitrResult {
  RestoreResult restore;
  std::uint64_t applied_segments = 0;
  std::optional<SysTime> restored_time;  // time of the last applied segment (or the full's)
};
Result<PitrResult> restore_sqlite_to_time(const BackupRef& full, const std::filesystem::path& target, SysTime to_time,
                                          const RestoreOptions& opts);

}  // namespace drd::backup
