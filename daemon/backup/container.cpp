#include "daemon/backup/container.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

namespace drd::backup {

namespace {

constexpr std::size_t kPlainHeader = 12;      // magic, version, flags, nonce prefix
constexpr std::size_t kKeyBlock = 8 + 12 + 32 + 16;
constexpr std::size_t kWrapAad = 20;          // plain header + key id
constexpr std::size_t kTag = 16, kNonce = 12;

void put_be(std::uint8_t* p, std::uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; --i) {
    p[i] = static_cast<std::uint8_t>(v & 0xff);
    v >>= 8;
  }
}
std::uint64_t get_be(const std::uint8_t* p, int bytes) {
  std::uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v = (v << 8) | p[i];
  return v;
}

struct CipherCtx {
  EVP_CIPHER_CTX* c = EVP_CIPHER_CTX_new();
  ~CipherCtx() { EVP_CIPHER_CTX_free(c); }
};

// AES-256-GCM in one shot. Returns false on authentication failure (decrypt) or library error.
bool gcm(bool enc, const std::uint8_t* key, const std::uint8_t* nonce, const std::uint8_t* aad, std::size_t aad_len,
         const std::uint8_t* in, std::size_t n, std::uint8_t* out, std::uint8_t* tag) {
  CipherCtx ctx;
  int len = 0;
  if (EVP_CipherInit_ex(ctx.c, EVP_aes_256_gcm(), nullptr, key, nonce, enc ? 1 : 0) != 1) return false;
  if (EVP_CipherUpdate(ctx.c, nullptr, &len, aad, static_cast<int>(aad_len)) != 1) return false;
  if (n > 0 && EVP_CipherUpdate(ctx.c, out, &len, in, static_cast<int>(n)) != 1) return false;
  if (!enc && EVP_CIPHER_CTX_ctrl(ctx.c, EVP_CTRL_GCM_SET_TAG, kTag, tag) != 1) return false;
  if (EVP_CipherFinal_ex(ctx.c, out + (n > 0 ? len : 0), &len) != 1) return false;
  if (enc && EVP_CIPHER_CTX_ctrl(ctx.c, EVP_CTRL_GCM_GET_TAG, kTag, tag) != 1) return false;
  return true;
}

void plain_tag(const std::uint8_t* nonce, const std::uint8_t* aad, const std::uint8_t* p, std::size_t n,
               std::uint8_t* tag) {
  Sha256 h;
  h.update("DRDBK1-chunk", 12);
  h.update(nonce, kNonce);
  h.update(aad, 9);
  h.update(p, n);
  auto d = h.digest();
  std::memcpy(tag, d.data(), kTag);
}

class PosixOutputFile : public OutputFile {
 public:
  PosixOutputFile(std::filesystem::path p, int fd) : path_(std::move(p)), fd_(fd) {}
  ~PosixOutputFile() override { (void)close(); }
  Status write(const std::uint8_t* p, std::size_t n) override {
    while (n > 0) {
      ssize_t w = ::write(fd_, p, n);
      if (w < 0 && errno == EINTR) continue;
      if (w < 0) {
        int e = errno;
        std::string why = e == ENOSPC ? "disk full" : e == EFBIG ? "file size limit reached" : std::strerror(e);
        return make_error(Errc::io, why + " while writing " + path_.string() + ": " + human_bytes(written_) +
                                        " written");
      }
      written_ += static_cast<std::uint64_t>(w);
      p += w;
      n -= static_cast<std::size_t>(w);
    }
    // Start write-back of every finished 8 MiB while the backup goes on, so the closing fsync
    // (which the backup's durability needs) finds little left to write and the page cache does
    // not fill with dirty pages. Advisory: an error here shows up again at fsync.
    if (written_ - started_ >= kWritebackStep) {
      (void)::sync_file_range(fd_, static_cast<off_t>(started_), static_cast<off_t>(written_ - started_),
                              SYNC_FILE_RANGE_WRITE);
      started_ = written_;
    }
    return ok_status();
  }
  Status sync() override {
    if (::fsync(fd_) != 0) {
      int e = errno;
      std::string why = e == ENOSPC ? "disk full" : std::strerror(e);
      return make_error(Errc::io, "fsync failed (" + why + ") for " + path_.string());
    }
    return ok_status();
  }
  Status close() override {
    if (fd_ < 0) return ok_status();
    int rc = ::close(fd_);
    fd_ = -1;
    if (rc != 0) return errno_error(Errc::io, "close failed for", path_, errno);
    return ok_status();
  }
  std::uint64_t bytes_written() const override { return written_; }

 private:
  std::filesystem::path path_;
  int fd_;
  std::uint64_t written_ = 0;
  std::uint64_t started_ = 0;  // write-back requested up to here
  static constexpr std::uint64_t kWritebackStep = 8u << 20;
};

}  // namespace

Result<std::unique_ptr<OutputFile>> open_output_file(const std::filesystem::path& p) {
  int fd = ::open(p.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
  if (fd < 0) return errno_error(Errc::io, "cannot create", p, errno);
  return std::unique_ptr<OutputFile>(new PosixOutputFile(p, fd));
}

// ---------------------------------------------------------------- writer

ContainerWriter::ContainerWriter(OutputFile& out, const MasterKey* key, std::size_t chunk_size)
    : out_(out), encrypted_(key != nullptr), chunk_size_(std::min(chunk_size, kMaxChunkSize)) {
  if (chunk_size_ == 0) chunk_size_ = kDefaultChunkSize;
  RAND_bytes(prefix_, sizeof prefix_);
  header_.assign(kMagic, kMagic + 6);
  header_.push_back(kFormatVersion);
  header_.push_back(encrypted_ ? 1 : 0);
  header_.insert(header_.end(), prefix_, prefix_ + 4);
  if (encrypted_) {
    RAND_bytes(data_key_, sizeof data_key_);
    std::uint8_t id[8];
    for (int i = 0; i < 8; ++i) id[i] = static_cast<std::uint8_t>(std::stoi(key->id().substr(2 * i, 2), nullptr, 16));
    header_.insert(header_.end(), id, id + 8);
    std::uint8_t nonce[kNonce], wrapped[32], tag[kTag];
    RAND_bytes(nonce, sizeof nonce);
    gcm(true, key->data(), nonce, header_.data(), kWrapAad, data_key_, 32, wrapped, tag);
    header_.insert(header_.end(), nonce, nonce + kNonce);
    header_.insert(header_.end(), wrapped, wrapped + 32);
    header_.insert(header_.end(), tag, tag + kTag);
  }
  buf_.reserve(chunk_size_);
  frame_.reserve(chunk_size_ + 4 + kNonce + kTag);
}

ContainerWriter::~ContainerWriter() { OPENSSL_cleanse(data_key_, sizeof data_key_); }

Status ContainerWriter::out(const std::uint8_t* p, std::size_t n) {
  auto s = out_.write(p, n);
  if (!s) return s;
  file_hash_.update(p, n);
  file_bytes_ += n;
  return ok_status();
}

Status ContainerWriter::write(const std::uint8_t* p, std::size_t n) {
  while (n > 0) {
    std::size_t take = std::min(n, chunk_size_ - buf_.size());
    buf_.insert(buf_.end(), p, p + take);
    p += take;
    n -= take;
    if (buf_.size() == chunk_size_) {
      auto s = emit(false);
      if (!s) return s;
    }
  }
  return ok_status();
}

Status ContainerWriter::finish() {
  if (finished_) return ok_status();
  auto s = emit(true);
  if (s) finished_ = true;
  return s;
}

Status ContainerWriter::emit(bool final) {
  if (!header_written_) {
    auto s = out(header_.data(), header_.size());
    if (!s) return s;
    header_written_ = true;
  }
  std::uint8_t nonce[kNonce], aad[9];
  std::memcpy(nonce, prefix_, 4);
  put_be(nonce + 4, index_, 8);
  put_be(aad, index_, 8);
  aad[8] = final ? 1 : 0;
  std::size_t n = buf_.size();
  frame_.resize(4 + kNonce + n + kTag);
  put_be(frame_.data(), n, 4);
  std::memcpy(frame_.data() + 4, nonce, kNonce);
  std::uint8_t* payload = frame_.data() + 4 + kNonce;
  std::uint8_t* tag = payload + n;
  if (encrypted_) {
    if (!gcm(true, data_key_, nonce, aad, sizeof aad, buf_.data(), n, payload, tag))
      return make_error(Errc::internal, "AES-256-GCM encryption failed (OpenSSL)");
  } else {
    if (n) std::memcpy(payload, buf_.data(), n);
    plain_tag(nonce, aad, buf_.data(), n, tag);
  }
  auto s = out(frame_.data(), frame_.size());
  if (!s) return s;
  buf_.clear();
  ++index_;
  return ok_status();
}

// ---------------------------------------------------------------- reader

Result<std::unique_ptr<ContainerReader>> ContainerReader::open(const std::filesystem::path& p, const MasterKey* key) {
  std::unique_ptr<ContainerReader> r(new ContainerReader());
  r->path_ = p;
  r->fd_ = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
  if (r->fd_ < 0) {
    int e = errno;
    return errno_error(e == ENOENT ? Errc::not_found : Errc::io, "cannot open backup", p, e);
  }
  std::uint8_t h[kPlainHeader + kKeyBlock];
  if (r->read_some(h, kPlainHeader) != kPlainHeader || std::memcmp(h, kMagic, 6) != 0)
    return r->corrupt(r->io_error_ ? "read error in header" : "not a drd backup file (no DRDBK1 header)");
  if (h[6] != kFormatVersion)
    return make_error(Errc::unsupported, "backup " + p.string() + " has format version " + std::to_string(h[6]) +
                                             "; this drd reads version " + std::to_string(kFormatVersion));
  if (h[7] & ~1u) return r->corrupt("unknown flags in header");
  r->encrypted_ = h[7] & 1;
  std::memcpy(r->prefix_, h + 8, 4);
  std::size_t hlen = kPlainHeader;
  if (r->encrypted_) {
    if (r->read_some(h + kPlainHeader, kKeyBlock) != kKeyBlock) return r->corrupt("file ends inside the header");
    hlen += kKeyBlock;
    r->key_id_ = to_hex(h + kPlainHeader, 8);
    if (!key)
      return make_error(Errc::invalid_argument,
                        "backup " + p.string() + " is encrypted (key id " + r->key_id_ +
                            ") but no encryption key_file is configured",
                        "set backup.encryption.key_file to the key this backup was made with");
    if (key->id() != r->key_id_)
      return make_error(Errc::invalid_argument, "wrong key (key id " + key->id() + ", backup made with " +
                                                    r->key_id_ + ") for " + p.string());
    std::uint8_t* kb = h + kPlainHeader + 8;
    if (!gcm(false, key->data(), kb, h, kWrapAad, kb + 12, 32, r->data_key_, kb + 44))
      return r->corrupt("header failed authentication (wrapped data key or header altered)");
  }
  r->file_hash_.update(h, hlen);
  r->file_bytes_ = hlen;
  return r;
}

ContainerReader::~ContainerReader() {
  OPENSSL_cleanse(data_key_, sizeof data_key_);
  if (fd_ >= 0) ::close(fd_);
}

Error ContainerReader::corrupt(const std::string& what) const {
  return make_error(Errc::corrupt, "backup " + path_.string() + ": " + what);
}

std::size_t ContainerReader::read_some(std::uint8_t* p, std::size_t n) {
  std::size_t got = 0;
  while (got < n) {
    ssize_t r = ::read(fd_, p + got, n - got);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      io_error_ = true;
      break;
    }
    if (r == 0) break;
    got += static_cast<std::size_t>(r);
  }
  return got;
}

Status ContainerReader::next(std::vector<std::uint8_t>& out, bool* done) {
  out.clear();
  *done = done_;
  if (done_) return ok_status();
  const std::string chunk = "chunk " + std::to_string(index_);
  std::uint8_t lenb[4];
  std::size_t got = read_some(lenb, 4);
  if (io_error_) return corrupt("read error in " + chunk);
  if (got == 0)
    return corrupt(index_ == 0 ? "file ends after the header with no chunks"
                               : "file ends after chunk " + std::to_string(index_ - 1) + " without the final chunk");
  if (got < 4) return corrupt("file ends inside " + chunk);
  std::uint64_t n = get_be(lenb, 4);
  if (n > kMaxChunkSize) return corrupt(chunk + " has an impossible length " + std::to_string(n) + " (corrupt)");
  frame_.resize(kNonce + n + kTag);
  got = read_some(frame_.data(), frame_.size());
  if (io_error_) return corrupt("read error in " + chunk);
  if (got < frame_.size())
    return corrupt("file ends inside " + chunk + " (" + std::to_string(got + 4) + " of " +
                   std::to_string(frame_.size() + 4) + " bytes)");
  std::uint8_t probe;
  bool at_eof = read_some(&probe, 1) == 0;
  if (!at_eof && ::lseek(fd_, -1, SEEK_CUR) < 0) return corrupt("seek failed after " + chunk);

  const std::uint8_t* nonce = frame_.data();
  const std::uint8_t* payload = nonce + kNonce;
  std::uint8_t* tag = frame_.data() + kNonce + n;
  std::uint8_t expect_nonce[kNonce];
  std::memcpy(expect_nonce, prefix_, 4);
  put_be(expect_nonce + 4, index_, 8);
  if (std::memcmp(nonce, expect_nonce, kNonce) != 0) return corrupt(chunk + " failed authentication");

  out.resize(n);
  auto check = [&](bool final) {
    std::uint8_t aad[9];
    put_be(aad, index_, 8);
    aad[8] = final ? 1 : 0;
    if (encrypted_) return gcm(false, data_key_, nonce, aad, sizeof aad, payload, n, out.data(), tag);
    std::uint8_t t[kTag];
    plain_tag(nonce, aad, payload, n, t);
    if (CRYPTO_memcmp(t, tag, kTag) != 0) return false;
    if (n) std::memcpy(out.data(), payload, n);
    return true;
  };
  if (!check(at_eof)) {
    out.clear();
    if (check(!at_eof)) {
      out.clear();
      return corrupt(at_eof ? "file ends after " + chunk + " without the final chunk"
                            : "unexpected data after the final chunk (" + chunk + ")");
    }
    return corrupt(chunk + " failed authentication");
  }
  file_hash_.update(lenb, 4);
  file_hash_.update(frame_.data(), frame_.size());
  file_bytes_ += 4 + frame_.size();
  ++index_;
  done_ = at_eof;
  *done = done_;
  return ok_status();
}

Result<ContainerInfo> peek_container(const std::filesystem::path& p) {
  int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    return errno_error(e == ENOENT ? Errc::not_found : Errc::io, "cannot open", p, e);
  }
  std::uint8_t h[20];
  ssize_t n = ::read(fd, h, sizeof h);
  ::close(fd);
  if (n < static_cast<ssize_t>(kPlainHeader) || std::memcmp(h, kMagic, 6) != 0)
    return make_error(Errc::invalid_argument, p.string() + " is not a drd backup file (no DRDBK1 header)");
  ContainerInfo info;
  info.version = h[6];
  info.encrypted = h[7] & 1;
  if (info.encrypted && n >= 20) info.key_id = to_hex(h + 12, 8);
  return info;
}

}  // namespace drd::backup
