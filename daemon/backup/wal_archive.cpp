#include "daemon/backup/wal_archive.hpp"

#include <algorithm>

#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace drd::backup {

namespace fs = std::filesystem;

WalArchiver::WalArchiver(ArchiveOptions opts, std::string token, SegmentFn on_segment, EndFn on_end)
    : opts_(std::move(opts)), token_(std::move(token)), on_segment_(std::move(on_segment)), on_end_(std::move(on_end)) {}

WalArchiver::~WalArchiver() {
  if (spool_) {
    std::fclose(spool_);
    std::error_code ec;
    fs::remove(spool_path_, ec);
  }
}

bool WalArchiver::open_spool() {
  if (spool_) return true;
  spool_path_ = opts_.directory / (".wal-" + token_ + "-" + std::to_string(next_n_) + ".spool");
  spool_ = std::fopen(spool_path_.c_str(), "wbe");
  if (!spool_) {
    fail("cannot create WAL spool " + spool_path_.string() + ": " + std::strerror(errno));
    return false;
  }
  std::setvbuf(spool_, nullptr, _IOFBF, 256 << 10);
  frames_ = bytes_ = 0;
  return true;
}

void WalArchiver::full_done(const std::string& full_id) {
  if (finished_) return;
  full_id_ = full_id;
  base_due_ = true;  // cut at the next step: it reads the WAL after the snapshot was complete
}

void WalArchiver::begin_batch(std::uint32_t page_size, SysTime seen) {
  if (finished_) return;
  if (page_size_ != 0 && page_size != page_size_) return fail("the primary's page size changed");
  page_size_ = page_size;
  if (!open_spool()) return;
  in_batch_ = true;
  batch_failed_ = false;
  batch_frames_ = 0;
  batch_time_ = std::max(seen, last_time_);  // commit times never go back within a chain
}

void WalArchiver::frame(std::uint32_t page_no, std::uint32_t commit_db_size, const unsigned char* page) {
  if (finished_ || !in_batch_ || batch_failed_) return;
  std::uint8_t h[kSegFrameHeader];
  put_frame_header(h, page_no, commit_db_size, batch_time_);
  if (std::fwrite(h, 1, sizeof h, spool_) != sizeof h || std::fwrite(page, 1, page_size_, spool_) != page_size_) {
    batch_failed_ = true;
    batch_error_ = "cannot write WAL spool " + spool_path_.string() + ": " + std::strerror(errno);
    return;
  }
  ++batch_frames_;
}

void WalArchiver::end_batch() {
  if (finished_ || !in_batch_) return;
  in_batch_ = false;
  if (batch_failed_) return fail(batch_error_);
  if (batch_frames_ == 0) return;
  if (frames_ == 0) first_time_ = batch_time_;
  frames_ += batch_frames_;
  bytes_ += batch_frames_ * (kSegFrameHeader + page_size_);
  last_time_ = batch_time_;
}

void WalArchiver::after_step(SysTime now) {
  if (finished_) return;
  last_step_ = std::max(last_step_, now);
  if (full_id_.empty()) return;
  if (base_due_) {
    base_due_ = false;
    base_cut_ = true;
    if (auto err = cut(now, true); !err.empty()) fail(err);
    return;
  }
  if (frames_ > 0 && (bytes_ >= opts_.max_bytes || now - first_time_ >= opts_.max_age))
    if (auto err = cut(now, false); !err.empty()) fail(err);
}

// Closes the spool (whole transactions only) and hands it over as segment next_n_.
// Returns "" or what went wrong (the caller ends the chain).
std::string WalArchiver::cut(SysTime now, bool base) {
  if (!spool_ && !open_spool()) return "";  // open_spool ended the chain already
  if (std::fflush(spool_) != 0 || ::ftruncate(::fileno(spool_), static_cast<off_t>(bytes_)) != 0)
    return "cannot write WAL spool " + spool_path_.string() + ": " + std::strerror(errno);
  std::fclose(spool_);
  spool_ = nullptr;
  SpooledSegment seg;
  seg.full_id = full_id_;
  seg.n = next_n_++;
  seg.spool = spool_path_;
  seg.page_size = page_size_;
  seg.frames = frames_;
  seg.first_time = frames_ ? first_time_ : now;
  seg.time = std::max(now, last_time_);
  seg.base = base;
  frames_ = bytes_ = 0;
  last_time_ = seg.time;
  on_segment_(std::move(seg));
  return "";
}

void WalArchiver::gap(const std::string& why) {
  in_batch_ = false;  // an unfinished batch is dropped (cut() keeps only bytes_)
  end(why, true);
}

void WalArchiver::stop(const std::string& why) { end(why, true); }

void WalArchiver::abandon(const std::string& why) {
  (void)why;
  full_id_.clear();
  end("", false);
}

void WalArchiver::fail(const std::string& why) { end(why, true); }

void WalArchiver::end(const std::string& why, bool keep) {
  if (finished_) return;
  // What is spooled after the base segment is whole transactions: keep it. Before the base
  // segment exists nothing can be replayed, so it goes.
  // Nothing spooled but steps read after the last cut: an empty final segment at the last
  // step says no commit was missed up to then, so the window reaches the end of archiving
  // (not the last commit) and the next chain's window meets it (pitr_coverage.hpp).
  std::string why_all = why;
  const bool idle_since_cut = frames_ == 0 && last_step_ > last_time_;
  if (keep && base_cut_ && ((frames_ > 0 && spool_) || idle_since_cut)) {
    finished_ = true;  // cut() failing must not come back here
    const std::uint64_t frames = frames_;
    if (auto err = cut(std::max(last_time_, last_step_), false); !err.empty() && frames > 0)
      why_all += "; the last " + std::to_string(frames) + " frames are lost: " + err;
  }
  finished_ = true;
  if (spool_) {
    std::fclose(spool_);
    spool_ = nullptr;
    std::error_code ec;
    fs::remove(spool_path_, ec);
  }
  if (keep && on_end_) on_end_(full_id_, why_all);
}

}  // namespace drd::backup
