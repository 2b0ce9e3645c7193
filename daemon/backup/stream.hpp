#pragma once
// The streaming pipeline: source bytes -> zstd -> DRDBK1 container (optionally AES-256-GCM)
// -> file, and back. Memory stays constant whatever the size (one container chunk plus zstd's
// own buffers/window); nothing is ever held whole.
//
// Threading: a writer/reader is used by one thread at a time; zstd may run `threads` workers
// of its own inside write().
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>

#include <zstd.h>

#include "common/result.hpp"
#include "daemon/backup/container.hpp"
#include "daemon/backup/key.hpp"

namespace drd::backup {

struct PipelineOptions {
  int level = 3;                        // zstd level (1..19; negative = fast modes)
  int threads = 0;                      // zstd workers (ZSTD_c_nbWorkers); 0 = one per core, 1 = none
  const MasterKey* key = nullptr;       // null = unencrypted (chunks still checksummed). Not owned.
  std::size_t chunk_size = kDefaultChunkSize;
  // How the output file is opened; default open_output_file(). Tests inject failing writers.
  std::function<Result<std::unique_ptr<OutputFile>>(const std::filesystem::path&)> open_output;
};

struct WriteStats {
  std::uint64_t source_bytes = 0;  // bytes fed to write()
  std::uint64_t size_bytes = 0;    // bytes of the finished file
  std::uint64_t chunks = 0;
  std::string plaintext_sha256;    // of the source bytes
  std::string file_sha256;         // of the file as written
};

// Writes `<final>.partial`; commit() fsyncs it, renames it to `<final>` and fsyncs the folder.
// Destroying an uncommitted writer (or any failed write/commit) removes the partial file, so a
// failure never leaves a half-written backup behind.
class BackupWriter {
 public:
  static Result<std::unique_ptr<BackupWriter>> create(const std::filesystem::path& final_path,
                                                      const PipelineOptions& opts);
  ~BackupWriter();
  BackupWriter(const BackupWriter&) = delete;
  BackupWriter& operator=(const BackupWriter&) = delete;

  Status write(const void* p, std::size_t n);
  Result<WriteStats> commit();
  std::uint64_t source_bytes() const { return source_bytes_; }
  const std::filesystem::path& partial_path() const { return partial_; }

 private:
  BackupWriter() = default;
  Status drain(ZSTD_EndDirective mode, ZSTD_inBuffer& in);
  void abort();
  std::filesystem::path final_, partial_;
  std::unique_ptr<OutputFile> file_;
  std::unique_ptr<ContainerWriter> container_;
  ZSTD_CCtx* cctx_ = nullptr;
  std::vector<std::uint8_t> zout_;
  Sha256 plain_hash_;
  std::uint64_t source_bytes_ = 0;
  bool committed_ = false, failed_ = false;
};

using ByteSink = std::function<Status(const std::uint8_t* p, std::size_t n)>;

struct ReadStats {
  std::uint64_t plaintext_bytes = 0, file_bytes = 0, chunks = 0;
  std::string plaintext_sha256, file_sha256;
  bool encrypted = false;
  std::string key_id;
};

// Opens and authenticates the header first (wrong key / not a backup fail here, before any
// output), then streams the decompressed bytes to a sink. Errors name the file and the chunk.
class BackupReader {
 public:
  static Result<std::unique_ptr<BackupReader>> open(const std::filesystem::path& p, const MasterKey* key);
  ~BackupReader();
  bool encrypted() const { return container_->encrypted(); }
  const std::string& key_id() const { return container_->key_id(); }
  // Once. A sink error stops the read and is returned as is.
  Result<ReadStats> read_all(const ByteSink& sink);

 private:
  BackupReader() = default;
  std::filesystem::path path_;
  std::unique_ptr<ContainerReader> container_;
  ZSTD_DCtx* dctx_ = nullptr;
};

// Convenience: open + read_all.
Result<ReadStats> read_backup(const std::filesystem::path& p, const MasterKey* key, const ByteSink& sink);

}  // namespace drd::backup
