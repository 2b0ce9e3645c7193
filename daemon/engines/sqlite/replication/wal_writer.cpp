#include "daemon/engines/sqlite/replication/wal_writer.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <random>

#include "daemon/engines/sqlite/replication/sqlite_util.hpp"

namespace drd::replication {

namespace {
constexpr std::size_t kFlushBytes = 1u << 20;
}

StandaloneWalWriter::~StandaloneWalWriter() { abandon(); }

StandaloneWalWriter::StandaloneWalWriter(StandaloneWalWriter&& o) noexcept
    : fd_(o.fd_), path_(std::move(o.path_)), chain_(o.chain_), frames_(o.frames_), buf_(std::move(o.buf_)) {
  o.fd_ = -1;
}

Result<StandaloneWalWriter> StandaloneWalWriter::create(const std::filesystem::path& wal_path,
                                                        std::uint32_t page_size, bool big_endian) {
  StandaloneWalWriter w;
  w.path_ = wal_path;
  w.fd_ = ::open(wal_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (w.fd_ < 0)
    return make_error(Errc::io, "cannot create standby WAL " + wal_path.string() + ": " + std::strerror(errno));
  std::random_device rd;
  unsigned char hdr[kWalHeaderSize];
  WalHeader h = encode_wal_header(hdr, page_size, rd(), rd(), big_endian);
  w.chain_ = chain_start(h);
  w.buf_.assign(hdr, hdr + kWalHeaderSize);
  return w;
}

Status StandaloneWalWriter::append(std::uint32_t page, std::uint32_t commit_size, const unsigned char* page_data) {
  unsigned char fh[kFrameHeaderSize];
  put_be32(fh, page);
  put_be32(fh + 4, commit_size);
  put_be32(fh + 8, chain_.salt1);
  put_be32(fh + 12, chain_.salt2);
  wal_checksum(chain_.big_endian, fh, 8, chain_.checksum);
  wal_checksum(chain_.big_endian, page_data, chain_.page_size, chain_.checksum);
  put_be32(fh + 16, chain_.checksum.s0);
  put_be32(fh + 20, chain_.checksum.s1);
  chain_.frames += 1;
  frames_ += 1;
  buf_.insert(buf_.end(), fh, fh + kFrameHeaderSize);
  buf_.insert(buf_.end(), page_data, page_data + chain_.page_size);
  if (buf_.size() >= kFlushBytes) return flush();
  return ok_status();
}

Status StandaloneWalWriter::flush() {
  const unsigned char* p = buf_.data();
  std::size_t left = buf_.size();
  while (left > 0) {
    ssize_t w = ::write(fd_, p, left);
    if (w < 0) {
      if (errno == EINTR) continue;
      return make_error(Errc::io, "write to standby WAL " + path_.string() + " failed: " + std::strerror(errno));
    }
    p += w;
    left -= static_cast<std::size_t>(w);
  }
  buf_.clear();
  return ok_status();
}

Status StandaloneWalWriter::finish() {
  if (auto s = flush(); !s) return s;
  if (::fsync(fd_) != 0)
    return make_error(Errc::io, "fsync of standby WAL " + path_.string() + " failed: " + std::strerror(errno));
  ::close(fd_);
  fd_ = -1;
  // The WAL is a new directory entry: without this, a power cut could drop
  // the file while the checkpoint's page writes to the database survive.
  return fsync_dir_of(path_);
}

void StandaloneWalWriter::abandon() {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
    ::unlink(path_.c_str());
  }
}

}  // namespace drd::replication
