#pragma once
// Reads a primary's `-wal` file directly through its own descriptor (which
// keeps working after the file is renamed or unlinked, so a failed primary can
// still be salvaged). Every frame handed out has passed the salt and
// cumulative-checksum checks of wal_format.hpp.
// Not thread-safe; owned by one SqliteReplicator. Reads never modify the file.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>

#include "common/result.hpp"
#include "daemon/engines/sqlite/replication/sqlite_util.hpp"
#include "daemon/engines/sqlite/replication/wal_format.hpp"

namespace drd::replication {

class WalFile {
 public:
  WalFile() = default;
  ~WalFile();
  WalFile(WalFile&& o) noexcept : fd_(o.fd_), path_(std::move(o.path_)) { o.fd_ = -1; }
  WalFile& operator=(WalFile&& o) noexcept;
  WalFile(const WalFile&) = delete;
  WalFile& operator=(const WalFile&) = delete;

  // Opens `path` read-only; not_found if it does not exist.
  static Result<WalFile> open(const std::filesystem::path& path);
  bool is_open() const { return fd_ >= 0; }
  const std::filesystem::path& path() const { return path_; }
  Result<FileId> id() const { return file_id(fd_); }
  Result<std::uint64_t> size() const;

  // The header, or nullopt (with the reason in *why) when the file is shorter
  // than a header or the header is not valid (e.g. being rewritten right now).
  Result<std::optional<WalHeader>> read_header(std::string* why = nullptr) const;

  // Validates frames from `from` up to the end of the file (or `max_frames`
  // frames into the generation), a chunk at a time. Cost: the frames after
  // `from` only.
  Result<ScanResult> scan(const ChainState& from, std::uint32_t max_frames = 0) const;

  // Hands frames [from.frames, to_frames) to `sink` in order, re-validating the
  // chain as it goes; fails (naming the frame) if any frame no longer verifies,
  // e.g. because the WAL was restarted underneath.
  using FrameSink = std::function<Status(const FrameHeader&, const unsigned char* page)>;
  Status read_frames(const ChainState& from, std::uint32_t to_frames, const FrameSink& sink) const;

  // The header of frame `index` (0-based) as stored, unvalidated.
  Result<FrameHeader> frame_header(std::uint32_t index, std::uint32_t page_size) const;
  // Frame `index`'s header and page (page_size bytes into `page`), as stored, unvalidated:
  // the caller checks the salts against a chain it verified.
  Result<FrameHeader> read_frame(std::uint32_t index, std::uint32_t page_size, unsigned char* page) const;

 private:
  Result<std::size_t> pread_some(unsigned char* buf, std::size_t n, std::uint64_t off) const;
  int fd_ = -1;
  std::filesystem::path path_;
};

}  // namespace drd::replication
