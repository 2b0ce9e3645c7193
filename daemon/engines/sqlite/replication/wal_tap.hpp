#pragma once
// A consumer of the committed WAL stream the replicator reads from the primary: every
// transaction it finds committed, once, in commit order, as page images (incremental
// backups archive them as WAL segments, daemon/backup/wal_archive.hpp).
//
// Threading: called on the replicator's thread (the cluster worker) inside step(); an
// implementation must not block for long (it delays replication): spool to a file, hand
// heavy work elsewhere.
//
// Sequence per step: begin_batch(), frame() for every frame of the transactions newly found
// committed (whole transactions only; the last frame is a commit frame), end_batch(); then
// after_step() on every step, with or without new frames. gap() means the stream cannot be
// continued (the WAL was reset by another process, the file was replaced, replication was
// restarted): frames of an unfinished batch are to be discarded and nothing after the gap
// follows what came before. A tap reporting finished() is dropped.
#include <chrono>
#include <cstdint>
#include <string>

namespace drd::replication {

class WalTap {
 public:
  virtual ~WalTap() = default;
  // `seen`: wall-clock time the commits were found (within one replication step of the commit).
  virtual void begin_batch(std::uint32_t page_size, std::chrono::system_clock::time_point seen) = 0;
  virtual void frame(std::uint32_t page_no, std::uint32_t commit_db_size, const unsigned char* page) = 0;
  virtual void end_batch() = 0;
  virtual void after_step(std::chrono::system_clock::time_point now) = 0;
  virtual void gap(const std::string& why) = 0;
  virtual bool finished() const = 0;
};

}  // namespace drd::replication
