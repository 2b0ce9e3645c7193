#pragma once
// Writes a fresh, standalone WAL file beside a standby: new header with random
// salts, every frame re-stamped with those salts and a recomputed cumulative
// checksum, commit markers (db size) kept as they were on the primary so every
// original transaction stays a recovery point. finish() fsyncs the file and
// its folder; only then may the standby be opened to checkpoint it.
// Not thread-safe. If the writer is destroyed without finish(), the partial
// file is removed (a partial WAL would also be safe: see
// docs/sqlite-replication.md, but removing it keeps the standby tidy).
#include <cstdint>
#include <filesystem>
#include <vector>

#include "common/result.hpp"
#include "daemon/engines/sqlite/replication/wal_format.hpp"

namespace drd::replication {

class StandaloneWalWriter {
 public:
  StandaloneWalWriter() = default;
  ~StandaloneWalWriter();
  StandaloneWalWriter(StandaloneWalWriter&& o) noexcept;
  StandaloneWalWriter& operator=(StandaloneWalWriter&&) = delete;
  StandaloneWalWriter(const StandaloneWalWriter&) = delete;

  // Creates (truncating) `wal_path`. big_endian selects the checksum word order.
  static Result<StandaloneWalWriter> create(const std::filesystem::path& wal_path, std::uint32_t page_size,
                                            bool big_endian = true);
  Status append(std::uint32_t page, std::uint32_t commit_size, const unsigned char* page_data);
  Status finish();   // flush + fsync file + fsync folder + close
  void abandon();    // close and unlink (used on any error before finish)

  std::uint32_t frames() const { return frames_; }
  const ChainState& chain() const { return chain_; }

 private:
  Status flush();
  int fd_ = -1;
  std::filesystem::path path_;
  ChainState chain_;
  std::uint32_t frames_ = 0;
  std::vector<unsigned char> buf_;
};

}  // namespace drd::replication
