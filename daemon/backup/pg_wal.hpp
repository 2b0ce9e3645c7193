#pragma once
// PostgreSQL WAL archive: completed WAL segment files (and timeline .history files) received
// by pg_receivewal, each stored as its own DRDBK1 backup in `<backups>/pg-wal/`:
//   pg-wal-<walfile>.drdbk            the 16 MiB segment, compressed/encrypted like a full backup
//   pg-wal-<walfile>.manifest.json    kind "incremental", content "pg-wal" (or "pg-wal-history"),
//                                     parent = the newest physical full when it was archived,
//                                     postgresql {start_lsn, stop_lsn (= end of the segment),
//                                     timeline}, source_position = {"wal_file", "first_commit_at",
//                                     "last_commit_at", "commits"}
// The id is derived from the WAL file name, so archiving a file twice (drd restarted between
// writing it and removing it from the spool) finds the manifest and adds nothing.
//
// Commit times come from `pg_waldump -r Transaction` over the segment before it is archived:
// PostgreSQL's recovery_target_time is compared with commit record times, so the restorable
// window is stated in the same terms. A base backup's window starts at its stop_time (when
// pg_basebackup finished: every later commit lies after its end LSN) and ends just before the
// last archived commit (recovery stops at the first commit after T, so one must exist).
//
// Pure logic (names, LSNs, window, plan, gaps) is separate from the I/O below it and tested
// table-driven in tests/backup/pg_wal_test.cpp.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.hpp"
#include "common/process.hpp"
#include "common/result.hpp"
#include "daemon/backup/manifest.hpp"
#include "daemon/backup/session.hpp"
#include "daemon/backup/sqlite_backup.hpp"

namespace drd::backup {

inline constexpr const char* kPgWalContent = "pg-wal";
inline constexpr const char* kPgHistoryContent = "pg-wal-history";
inline constexpr const char* kPgWalFolder = "pg-wal";
inline constexpr std::uint64_t kDefaultWalSegSize = 16u << 20;

bool is_pg_wal(const Manifest& m);  // a segment or a history file of the PostgreSQL archive
std::string pg_wal_id(const std::string& wal_file);  // "pg-wal-000000010000000000000003"

// "0/3000028" <-> 0x3000028. nullopt when malformed.
std::optional<std::uint64_t> parse_lsn(const std::string& text);
std::string format_lsn(std::uint64_t lsn);

// A WAL file name "TTTTTTTTXXXXXXXXYYYYYYYY" (segment) or "TTTTTTTT.history".
struct WalName {
  std::uint32_t timeline = 0;
  std::uint64_t segno = 0;  // segments only
  bool history = false;
};
std::optional<WalName> parse_wal_name(const std::string& name, std::uint64_t seg_size = kDefaultWalSegSize);
std::string wal_file_name(std::uint32_t timeline, std::uint64_t segno, std::uint64_t seg_size = kDefaultWalSegSize);

// Commit times in `pg_waldump -r Transaction` output (run with TZ=UTC):
// "... desc: COMMIT 2026-11-24 12:34:56.123456 UTC; ...". Ordered as printed.
std::vector<SysTime> parse_waldump_commits(const std::string& output);

// One archived segment as the window/plan logic sees it.
struct PgWalSeg {
  std::string id;           // catalog id
  std::string wal_file;
  std::uint32_t timeline = 0;
  std::uint64_t start = 0, end = 0;    // LSN range [start, end)
  std::optional<SysTime> first_commit, last_commit;
};
// A catalog row (manifest) of kind pg-wal -> PgWalSeg; nullopt for history files or bad rows.
std::optional<PgWalSeg> pg_wal_seg(const Manifest& m);

// The base backup side: its WAL end and when it finished.
struct PgBase {
  std::uint64_t stop_lsn = 0;
  std::uint32_t timeline = 0;
  SysTime stop_time{};
};
std::optional<PgBase> pg_base_of(const Manifest& full);

// The segments a restore of `base` can use, in order: the run of contiguous segments (each
// starting where the previous ended, on the same or a later timeline; for one LSN range the
// highest timeline wins) from the segment holding base.stop_lsn (or the next one: the base
// backup's tar holds the WAL up to stop_lsn), up to the first gap. `gap` names the first
// missing segment when later ones exist.
struct PgChain {
  std::vector<PgWalSeg> segments;
  std::string gap;
};
// `seg_size` 0: the archived segments' own size (clusters may use --wal-segsize), else 16 MiB.
PgChain pg_chain(const PgBase& base, std::vector<PgWalSeg> all, std::uint64_t seg_size = 0);

// [from, to) for --to-time; nullopt when no commit was archived after the base backup.
struct PgWindow {
  SysTime from{}, to{};
  std::size_t segments = 0;
};
std::optional<PgWindow> pg_window(const PgBase& base, const PgChain& chain);

// The segments to hand to recovery for target time `t`: the chain up to and including the
// first segment holding a commit after `t`. Errors (Errc::refused) name the window: `t` before
// the base backup's end, after the last archived commit, or no WAL archived at all.
Result<std::vector<PgWalSeg>> pg_plan(const std::string& backup_id, const PgBase& base, const PgChain& chain, SysTime t);

// Retention: the archived segments no kept base backup needs (ids) — those ending at or before
// the start of the segment holding the oldest kept backup's stop_lsn. None without a kept base
// backup (the archive is then left alone rather than emptied). History files are always kept.
std::vector<std::string> pg_wal_unneeded(const std::vector<PgBase>& kept, const std::vector<PgWalSeg>& segs,
                                         std::uint64_t seg_size = 0);

// ---- I/O ---------------------------------------------------------------------

// Archives one completed file from pg_receivewal's spool into `<s.directory>` (the pg-wal
// folder): runs pg_waldump (segments; `waldump` = its path) for the commit times, then writes
// the data file and manifest. Returns the manifest; `already` is set (and nothing written)
// when that WAL file was archived before.
Result<Manifest> archive_pg_wal_file(const BackupSettings& s, ProcessRunner& runner, const std::filesystem::path& file,
                                     const std::string& waldump, const std::string& node, const std::string& parent,
                                     SysTime now, bool* already = nullptr);

// Every archived manifest in the pg-wal folder (no catalog needed): segments and histories.
std::vector<Manifest> scan_pg_wal(const std::filesystem::path& folder);

// Decrypts `ids` (manifests in `folder`) into `dest` as their WAL file names, checking each
// against its manifest's checksums. For restore_command.
Status stage_pg_wal(const std::filesystem::path& folder, const std::vector<Manifest>& files, const MasterKey* key,
                    const std::filesystem::path& dest);

// The "wal_archive" check of a verify of a physical full backup: every archived segment its
// chain uses decrypts and matches its checksums, and a gap in the archive is named (fails).
// nullopt when nothing is archived for it.
std::optional<Check> verify_pg_wal(const std::filesystem::path& folder, const Manifest& full, const MasterKey* key);

}  // namespace drd::backup
