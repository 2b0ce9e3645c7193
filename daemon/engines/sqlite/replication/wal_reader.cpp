#include "daemon/engines/sqlite/replication/wal_reader.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace drd::replication {

namespace {
// Frames are read in chunks of about this size so a large transaction does
// not need its whole size in memory.
constexpr std::size_t kChunkBytes = 4u << 20;
}  // namespace

WalFile::~WalFile() {
  if (fd_ >= 0) ::close(fd_);
}

WalFile& WalFile::operator=(WalFile&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = o.fd_;
    path_ = std::move(o.path_);
    o.fd_ = -1;
  }
  return *this;
}

Result<WalFile> WalFile::open(const std::filesystem::path& path) {
  WalFile w;
  w.path_ = path;
  w.fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (w.fd_ < 0) {
    Errc c = errno == ENOENT ? Errc::not_found : Errc::io;
    return make_error(c, "cannot open WAL file " + path.string() + ": " + std::strerror(errno));
  }
  return w;
}

Result<std::uint64_t> WalFile::size() const {
  struct stat st {};
  if (::fstat(fd_, &st) != 0)
    return make_error(Errc::io, "fstat of " + path_.string() + " failed: " + std::strerror(errno));
  return static_cast<std::uint64_t>(st.st_size);
}

Result<std::size_t> WalFile::pread_some(unsigned char* buf, std::size_t n, std::uint64_t off) const {
  std::size_t got = 0;
  while (got < n) {
    ssize_t r = ::pread(fd_, buf + got, n - got, static_cast<off_t>(off + got));
    if (r < 0) {
      if (errno == EINTR) continue;
      return make_error(Errc::io, "read of " + path_.string() + " at offset " +
                                      std::to_string(off + got) + " failed: " + std::strerror(errno));
    }
    if (r == 0) break;  // end of file
    got += static_cast<std::size_t>(r);
  }
  return got;
}

Result<std::optional<WalHeader>> WalFile::read_header(std::string* why) const {
  unsigned char buf[kWalHeaderSize];
  auto got = pread_some(buf, sizeof buf, 0);
  if (!got) return got.error();
  if (*got < kWalHeaderSize) {
    if (why) *why = "WAL file has no header yet";
    return std::optional<WalHeader>{};
  }
  return parse_wal_header(buf, why);
}

Result<ScanResult> WalFile::scan(const ChainState& from, std::uint32_t max_frames) const {
  const std::uint64_t fs = frame_size(from.page_size);
  // Size the buffer for what the file can hold past `from` (the replicator polls this
  // every few ms: an idle WAL must not cost a 4 MiB allocation per poll). Not zeroed.
  std::size_t per_chunk = std::max<std::size_t>(1, kChunkBytes / fs);
  struct stat st {};
  if (::fstat(fd_, &st) == 0) {
    const std::uint64_t start = frame_offset(from.frames, from.page_size);
    const std::uint64_t avail = st.st_size > static_cast<off_t>(start) ? (static_cast<std::uint64_t>(st.st_size) - start) / fs : 0;
    per_chunk = std::max<std::size_t>(1, std::min<std::uint64_t>(per_chunk, avail));
  }
  std::unique_ptr<unsigned char[]> buf_mem(new unsigned char[per_chunk * fs]);
  struct { unsigned char* data() { return p; } unsigned char* p; } buf{buf_mem.get()};
  ScanResult total;
  total.committed = from;
  total.tail = from;
  ChainState cur = from;
  for (;;) {
    std::size_t want = per_chunk;
    if (max_frames != 0) {
      if (cur.frames >= max_frames) break;
      want = std::min<std::size_t>(want, max_frames - cur.frames);
    }
    auto got = pread_some(buf.data(), want * fs, frame_offset(cur.frames, from.page_size));
    if (!got) return got.error();
    std::size_t whole = *got / fs;
    if (whole == 0) break;
    ScanResult r = scan_frames(buf.data(), whole * fs, cur, max_frames);
    total.valid_frames += r.valid_frames;
    total.transactions += r.transactions;
    total.tail = r.tail;
    if (r.transactions > 0) {
      total.committed = r.committed;
      total.commit_size = r.commit_size;
    }
    cur = r.tail;
    if (r.stop != FrameVerdict::ok) {
      total.stop = r.stop;
      break;
    }
    if (whole < want) break;  // reached the end of the file
  }
  return total;
}

Status WalFile::read_frames(const ChainState& from, std::uint32_t to_frames, const FrameSink& sink) const {
  const std::uint64_t fs = frame_size(from.page_size);
  const std::size_t per_chunk = std::max<std::size_t>(
      1, std::min<std::size_t>(kChunkBytes / fs, to_frames > from.frames ? to_frames - from.frames : 1));
  std::vector<unsigned char> buf(per_chunk * fs);
  ChainState cur = from;
  while (cur.frames < to_frames) {
    std::size_t want = std::min<std::size_t>(per_chunk, to_frames - cur.frames);
    auto got = pread_some(buf.data(), want * fs, frame_offset(cur.frames, from.page_size));
    if (!got) return got.error();
    if (*got < want * fs)
      return make_error(Errc::conflict, "WAL " + path_.string() + " ended at frame " +
                                            std::to_string(cur.frames + *got / fs) + ", expected " +
                                            std::to_string(to_frames) + " frames (truncated underneath?)");
    for (std::size_t i = 0; i < want; ++i) {
      const unsigned char* f = buf.data() + i * fs;
      FrameHeader fh;
      std::uint32_t index = cur.frames;
      if (check_frame(f, cur, &fh) != FrameVerdict::ok)
        return make_error(Errc::conflict, "WAL " + path_.string() + " frame " + std::to_string(index) +
                                              " no longer verifies (the WAL changed while being read)");
      if (auto s = sink(fh, f + kFrameHeaderSize); !s) return s;
    }
  }
  return ok_status();
}

Result<FrameHeader> WalFile::frame_header(std::uint32_t index, std::uint32_t page_size) const {
  unsigned char buf[kFrameHeaderSize];
  auto got = pread_some(buf, sizeof buf, frame_offset(index, page_size));
  if (!got) return got.error();
  if (*got < kFrameHeaderSize)
    return make_error(Errc::not_found, "WAL " + path_.string() + " has no frame " + std::to_string(index));
  return parse_frame_header(buf);
}

Result<FrameHeader> WalFile::read_frame(std::uint32_t index, std::uint32_t page_size, unsigned char* page) const {
  std::vector<unsigned char> buf(frame_size(page_size));
  auto got = pread_some(buf.data(), buf.size(), frame_offset(index, page_size));
  if (!got) return got.error();
  if (*got < buf.size())
    return make_error(Errc::conflict, "WAL " + path_.string() + " has no whole frame " + std::to_string(index));
  std::memcpy(page, buf.data() + kFrameHeaderSize, page_size);
  return parse_frame_header(buf.data());
}

}  // namespace drd::replication
