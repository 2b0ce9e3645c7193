#pragma once
// SQLite incremental backups: WAL segments on top of a full backup, for point-in-time restore.
//
// The replication engine hands over committed WAL frames (page images) read from the primary
// since the previous segment — the first segment starts exactly at the full backup's snapshot;
// guaranteeing that is the caller's job. Each call writes one segment:
//   <dir>/<full-id>/seg-<n>        DRDBK1 container (compressed, encrypted like the full)
//   <dir>/<full-id>/seg-<n>.json   {"n", "time", "first_time", "base", "frames", "page_size",
//                                   "file_sha256", ...}
// both via `.partial` + fsync + rename, the JSON last. Segment plaintext: "DRDSEG2\0", u32
// page_size, u32 frame count, then per frame u32 page_no, u32 commit_db_size, u64 commit time
// (ms since the epoch, UTC; the same for every frame of a transaction), page bytes. DRDSEG1
// (no per-frame time: every frame has the segment's time) is still read.
//
// Times: a segment's `time` is when it was cut; it holds every commit drd saw up to then, so
// the restorable window of a full backup ends at its last contiguous segment's `time`. A
// `base` segment (the daemon's first one) carries the frames from before the full backup's
// snapshot was known to be complete up to a point after it: it is always applied whole, and
// the window starts at its `time` (page images replayed from before the snapshot are
// overwritten by later ones, so the result is exact from there on). Without a base segment
// (segments appended by hand) the window starts at the full's created_at.
//
// restore_sqlite_to_time restores the full, then applies the base segment and every later
// frame whose commit time is <= to_time, in order, like a checkpoint: each page written at
// (page_no-1)*page_size, the file truncated to commit_db_size pages at each commit frame.
// Then integrity_check, fsync and the same atomic rename as restore_sqlite. A to_time outside
// the window, or a missing segment the replay needs, is an error and nothing is written.
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

// Catalog rows of WAL segments: id "<full-id>.seg-<n>", kind "incremental", parent the full,
// content kWalSegmentContent, data file "seg-<n>" in the row's directory "<backups>/<full-id>".
inline constexpr const char* kWalSegmentContent = "sqlite-wal";
std::string segment_id(const std::string& full_id, std::uint64_t n);
bool is_wal_segment(const Manifest& m);  // SQLite segments and PostgreSQL archived WAL

// One WAL frame as the replication engine sees it. commit_db_size != 0 marks a commit frame
// (the database size in pages after that commit).
struct WalFrame {
  std::uint32_t page_no = 0;
  std::uint32_t commit_db_size = 0;
  std::vector<std::uint8_t> bytes;  // exactly page_size bytes
};

struct SegmentInfo {
  std::uint64_t n = 0;      // 1, 2, ...
  SysTime time{};           // cut time: every commit seen up to here is in segments 1..n
  SysTime first_time{};     // first transaction's commit time (time when unknown)
  bool base = false;
  std::uint64_t raw_bytes = 0;  // plaintext size
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

// The contiguous run of segments 1..k and, when a later one exists past a hole, what is wrong
// with the first missing one (the replay cannot go past it).
struct SegmentScan {
  std::vector<SegmentInfo> segments;
  std::uint64_t highest = 0;       // highest segment number found
  std::string hole;                // "" or e.g. "segment 3 (…/seg-3) is missing"
};
SegmentScan scan_segments(const std::filesystem::path& dir, const std::string& full_id);

// [from, to] a full backup can be restored to with --to-time; nullopt without segments.
struct RestoreWindow {
  SysTime from{}, to{};
  std::uint64_t segments = 0;
};
std::optional<RestoreWindow> restore_window(SysTime full_created_at, const std::vector<SegmentInfo>& segments);

// A SQLite WAL segment's catalog row, decoded from what the archiver keeps in its
// source_position (number, base, frames, first commit): n, base, frames, time (the row's
// created_at, the cut) and first_time. nullopt when the row is not a readable segment row.
// The one decoder for the catalog listing and the point-in-time coverage.
std::optional<SegmentInfo> segment_row(const Manifest& m);
// The rows of one chain in order, cut at the first missing number (a replay stops there).
std::vector<SegmentInfo> contiguous_segments(std::vector<SegmentInfo> rows);

// The spool the archiver (wal_archive.hpp) writes while a segment is open: the segment's
// frame records (kSegFrameHeader bytes from put_frame_header, then the page) without the
// segment header. write_segment_from_spool streams it into segment `n` and removes it.
inline constexpr std::size_t kSegFrameHeader = 16;
void put_frame_header(std::uint8_t* out, std::uint32_t page_no, std::uint32_t commit_db_size, SysTime commit_time);
struct SpooledSegment {
  std::string full_id;
  std::uint64_t n = 0;
  std::filesystem::path spool;
  std::uint32_t page_size = 0;
  std::uint64_t frames = 0;
  SysTime first_time{}, time{};
  bool base = false;
};
// Errors: not_found (no such full), corrupt (spool size does not match), io (disk full names the file).
Result<SegmentInfo> write_segment_from_spool(const BackupSettings& s, const SpooledSegment& seg);

// `full` must resolve to a full SQLite backup with its manifest (segments are found in
// `<dir>/<full-id>/`). Every appended segment ends with a commit frame (append refuses others).
struct PitrResult {
  RestoreResult restore;
  std::uint64_t applied_segments = 0;
  std::optional<SysTime> restored_time;  // time of the last applied segment (or the full's)
};
Result<PitrResult> restore_sqlite_to_time(const BackupRef& full, const std::filesystem::path& target, SysTime to_time,
                                          const RestoreOptions& opts);

// The "segments" check of a verify: every WAL segment of `full_id` decrypts, decompresses and
// matches its checksums, with no hole. nullopt when the backup has no segments.
std::optional<Check> verify_segments(const std::filesystem::path& dir, const std::string& full_id, const MasterKey* key);

}  // namespace drd::backup
