#pragma once
// Where drd's pg_receivewal starts, so the PostgreSQL WAL archive stays contiguous across
// drd restarts and failovers (daemon/daemon_pg_archive.cpp does the I/O).
//
// pg_receivewal decides its start from its spool folder: after the highest complete segment,
// or at the start of the highest `.partial`. With nothing there it takes the slot's position
// or the server's current one, which after a failover is already past WAL the archive lacks:
// the new primary still has it (it streamed it as a standby), so drd places a zero-filled
// `.partial` placeholder for the segment the archive needs next and pg_receivewal starts there,
// following the timeline switch itself.
//
// When the server cannot serve that start, pg_receivewal fails and its words say why:
//   - "not in this server's history ... forked from timeline T at L": the spool ran ahead on
//     the old primary's timeline (WAL the promoted standby never received). Restart at the
//     segment holding L on timeline T; spool files from that segment on are moved aside.
//   - "has already been removed" or "ahead of the WAL flush position": the gap cannot be filled
//     from this server. The archive keeps its gap (restores stop before it; the next full backup
//     starts a new window) and the receiver starts afresh at the server's current position.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "daemon/backup/pg_wal.hpp"

namespace drd::backup {

struct WalStart {
  std::uint32_t timeline = 0;
  std::uint64_t segno = 0;
  bool operator==(const WalStart&) const = default;
};

// The segment the archive needs next for the newest base backup: the one after the end of its
// contiguous chain, or the segment holding its stop_lsn when nothing after it is archived.
WalStart pg_archive_next(const PgBase& base, const std::vector<PgWalSeg>& archived, std::uint64_t seg_size);

// pg_receivewal's own start from the names in its spool (segments, `.partial`s; other names
// ignored). nullopt when the spool gives none.
std::optional<WalStart> spool_start(const std::vector<std::string>& names, std::uint64_t seg_size);

// The placeholder to create before starting pg_receivewal: only when the spool gives no start
// (otherwise pg_receivewal's own continuity wins) and a base backup exists.
std::optional<WalStart> placeholder_needed(const std::optional<WalStart>& spool, const std::optional<WalStart>& archive_next);

// One line of a timeline history file ("1\t0/B00000\treason"): timeline `timeline` ended at
// `switchpoint`, where the next one listed (or the server's current one) begins.
struct TimelineSwitch {
  std::uint32_t timeline = 0;
  std::uint64_t switchpoint = 0;
};
// The history file's text (TIMELINE_HISTORY's content); lines that do not parse are skipped.
std::vector<TimelineSwitch> parse_timeline_history(const std::string& text);

// Moves a start onto the server's history before pg_receivewal is asked for it: a start at
// or past the end of its timeline is served from the next one (pg_receivewal cannot start
// exactly at a switch point: the server answers with the next timeline instead of WAL, which
// it reports as a failed START_REPLICATION). Past the end = the spool ran ahead of the fork
// (the old primary had WAL the promoted standby never got): the start becomes the segment
// holding the switch point, on the next timeline, whose copy of that segment the server has.
struct ResolvedStart {
  WalStart start;
  bool past_fork = false;
  bool unknown_timeline = false;  // `want`'s timeline is not in this server's history
};
ResolvedStart resolve_start(WalStart want, const std::vector<TimelineSwitch>& history, std::uint32_t server_timeline,
                            std::uint64_t seg_size);

enum class ReceiverFailure { other, diverged, unavailable };
struct ReceiverFailureInfo {
  ReceiverFailure kind = ReceiverFailure::other;
  std::optional<WalStart> restart_at;  // diverged: the segment holding the fork point, on the old timeline
};
// Reads pg_receivewal's error output.
ReceiverFailureInfo classify_receiver_failure(const std::string& output, std::uint64_t seg_size);

}  // namespace drd::backup
