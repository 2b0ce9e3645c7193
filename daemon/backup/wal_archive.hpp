#pragma once
// WalArchiver: turns the committed WAL stream the replicator reads from a SQLite primary
// (replication::WalTap) into the spools of WAL segments of one full backup (incremental.hpp).
//
// Life of a chain:
//   1. armed before the full backup's snapshot starts: every transaction committed from then
//      on is spooled (raw frame records in `<dir>/.wal-<token>-<n>.spool`, removed
//      at the next start if drd dies);
//   2. full_done(id) once the backup is complete: at the next step the base segment is cut
//      (everything spooled so far, possibly nothing), which ends after the snapshot because
//      that step read the WAL after the snapshot had finished;
//   3. then a segment is cut whenever the spool holds `max_bytes` or its oldest transaction
//      is `max_age` old;
//   4. a gap (WAL reset, primary replaced, replication restarted), stop() or a write error
//      cuts what is complete and ends the chain; abandon() (the full failed) discards it.
// Cut segments are handed to `on_segment` (which compresses/encrypts them on another thread
// with write_segment_from_spool); `on_end` says why the chain ended.
//
// Threading: every method runs on the replicator's thread (the cluster worker); the
// callbacks are called there and must only post work elsewhere.
// Memory: one frame at a time; spools are files, so a slow segment writer costs disk only.
#include <cstdio>
#include <filesystem>
#include <functional>
#include <string>

#include "common/clock.hpp"
#include "daemon/backup/incremental.hpp"
#include "daemon/engines/sqlite/replication/wal_tap.hpp"

namespace drd::backup {

struct ArchiveOptions {
  std::filesystem::path directory;             // the backup directory
  std::uint64_t max_bytes = 16u << 20;         // spooled frame bytes before a cut
  std::chrono::milliseconds max_age{60'000};   // age of the oldest spooled commit before a cut
};

class WalArchiver : public replication::WalTap {
 public:
  using SegmentFn = std::function<void(SpooledSegment)>;
  using EndFn = std::function<void(const std::string& full_id, const std::string& why)>;
  // `token` names the spool files (unique per chain).
  WalArchiver(ArchiveOptions opts, std::string token, SegmentFn on_segment, EndFn on_end);
  ~WalArchiver() override;

  void full_done(const std::string& full_id);
  void abandon(const std::string& why);  // the full failed: discard everything
  void stop(const std::string& why);     // cut what is complete, end the chain
  const std::string& full_id() const { return full_id_; }

  // replication::WalTap
  void begin_batch(std::uint32_t page_size, SysTime seen) override;
  void frame(std::uint32_t page_no, std::uint32_t commit_db_size, const unsigned char* page) override;
  void end_batch() override;
  void after_step(SysTime now) override;
  void gap(const std::string& why) override;
  bool finished() const override { return finished_; }

 private:
  bool open_spool();
  std::string cut(SysTime now, bool base);
  void end(const std::string& why, bool keep);
  void fail(const std::string& why);

  ArchiveOptions opts_;
  std::string token_;
  SegmentFn on_segment_;
  EndFn on_end_;
  std::string full_id_;
  bool base_due_ = false, base_cut_ = false, finished_ = false;
  std::uint64_t next_n_ = 1;
  // The open spool: whole batches up to committed_bytes_/frames_, the current batch after.
  std::FILE* spool_ = nullptr;
  std::filesystem::path spool_path_;
  std::uint32_t page_size_ = 0;
  std::uint64_t frames_ = 0, bytes_ = 0, batch_frames_ = 0;
  SysTime batch_time_{}, first_time_{}, last_time_{};
  SysTime last_step_{};  // the last replication step seen (every commit up to it was read)
  bool in_batch_ = false, batch_failed_ = false;
  std::string batch_error_;
};

}  // namespace drd::backup
