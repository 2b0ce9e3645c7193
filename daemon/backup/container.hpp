#pragma once
// The DRDBK1 container: the on-disk framing of every backup file (see docs/backups.md).
//
//   header   "DRDBK1" | u8 version=1 | u8 flags (bit0 encrypted) | 4-byte nonce prefix
//            encrypted only: 8-byte key id | 12-byte wrap nonce | 32-byte wrapped data key | 16-byte tag
//   chunks   u32 length | 12-byte nonce (prefix + u64 chunk index) | payload[length] | 16-byte tag
//
// All integers are big-endian. Encrypted: payload is AES-256-GCM under a random per-file data
// key, AAD = u64 chunk index | u8 final flag; the data key is itself AES-256-GCM-wrapped by the
// master key with the first 20 header bytes as AAD. Unencrypted: payload is plain and the tag
// is the first 16 bytes of SHA-256("DRDBK1-chunk" | nonce | AAD | payload), which detects (not
// authenticates against an attacker) every corruption, truncation or reordering.
// The last chunk carries final=1 (it may be empty), so a file cut at a chunk boundary is caught.
//
// Memory: one chunk (<= chunk_size, max 16 MiB) buffered per writer/reader.
// Threading: one object per stream, not shared.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "daemon/backup/key.hpp"
#include "daemon/backup/util.hpp"

namespace drd::backup {

inline constexpr char kMagic[6] = {'D', 'R', 'D', 'B', 'K', '1'};
inline constexpr std::uint8_t kFormatVersion = 1;
inline constexpr std::size_t kDefaultChunkSize = 1 << 20;
inline constexpr std::size_t kMaxChunkSize = 16 << 20;

// Where container bytes go. Injectable so tests can simulate a full disk.
class OutputFile {
 public:
  virtual ~OutputFile() = default;
  // Writes everything or returns an error naming the path, the cause and the bytes written so far
  // ("disk full while writing /x: 12 MiB written").
  virtual Status write(const std::uint8_t* p, std::size_t n) = 0;
  virtual Status sync() = 0;   // fsync
  virtual Status close() = 0;  // idempotent
  virtual std::uint64_t bytes_written() const = 0;
};

// O_CREAT|O_EXCL|O_WRONLY file, mode 0600.
Result<std::unique_ptr<OutputFile>> open_output_file(const std::filesystem::path& p);

class ContainerWriter {
 public:
  // `key` null = unencrypted. `out` must outlive the writer.
  ContainerWriter(OutputFile& out, const MasterKey* key, std::size_t chunk_size = kDefaultChunkSize);
  ~ContainerWriter();
  ContainerWriter(const ContainerWriter&) = delete;
  ContainerWriter& operator=(const ContainerWriter&) = delete;

  Status write(const std::uint8_t* p, std::size_t n);  // header goes out with the first chunk
  Status finish();                                     // final chunk; does not sync/close
  std::uint64_t chunks() const { return index_; }
  std::string file_sha256() { return file_hash_.hex_digest(); }  // after finish(), once
  std::uint64_t file_bytes() const { return file_bytes_; }

 private:
  Status emit(bool final);
  Status out(const std::uint8_t* p, std::size_t n);
  OutputFile& out_;
  bool encrypted_;
  std::size_t chunk_size_;
  std::vector<std::uint8_t> header_;
  std::uint8_t data_key_[32];
  std::uint8_t prefix_[4];
  std::vector<std::uint8_t> buf_, frame_;
  std::uint64_t index_ = 0, file_bytes_ = 0;
  bool header_written_ = false, finished_ = false;
  Sha256 file_hash_;
};

// Reads a container chunk by chunk. open() checks the header and unwraps the data key, so a
// wrong key fails before any output is produced.
class ContainerReader {
 public:
  // `key` may be null for unencrypted files. Errors: not_found, io, corrupt,
  // invalid_argument ("wrong key (key id X, backup made with Y)" / "encrypted but no key").
  static Result<std::unique_ptr<ContainerReader>> open(const std::filesystem::path& p, const MasterKey* key);
  ~ContainerReader();

  // Next chunk's plaintext into `out`; `*done` set after the final chunk was read. Errors
  // (Errc::corrupt) name the chunk: "chunk 17 failed authentication",
  // "file ends after chunk 5 without the final chunk", "file ends inside chunk 3".
  Status next(std::vector<std::uint8_t>& out, bool* done);
  bool encrypted() const { return encrypted_; }
  const std::string& key_id() const { return key_id_; }
  std::uint64_t chunks() const { return index_; }
  std::uint64_t file_bytes() const { return file_bytes_; }
  std::string file_sha256() { return file_hash_.hex_digest(); }  // after the final chunk, once

 private:
  ContainerReader() = default;
  std::size_t read_some(std::uint8_t* p, std::size_t n);  // fills fully unless EOF/error
  Error corrupt(const std::string& what) const;
  std::filesystem::path path_;
  int fd_ = -1;
  bool encrypted_ = false, done_ = false, io_error_ = false;
  std::string key_id_;
  std::uint8_t data_key_[32] = {};
  std::uint8_t prefix_[4] = {};
  std::vector<std::uint8_t> frame_;
  std::uint64_t index_ = 0, file_bytes_ = 0;
  Sha256 file_hash_;
};

// Reads just the header: whether a file is a DRDBK1 container, encrypted, and its key id.
struct ContainerInfo {
  bool encrypted = false;
  std::string key_id;
  int version = 0;
};
Result<ContainerInfo> peek_container(const std::filesystem::path& p);

}  // namespace drd::backup
