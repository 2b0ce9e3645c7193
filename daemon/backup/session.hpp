#pragma once
// One backup being written: data through the pipeline to `<dir>/<id>.drdbk`, then the manifest.
// Engine code (SQLite, PostgreSQL) feeds bytes in; nothing appears under a final name until
// it is complete, and any failure removes what was written.
//
// Ownership: the session owns its writer; BackupSettings owns the master key copy.
// Threading: one thread per session. Sessions on different ids may run in parallel.
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "common/config.hpp"
#include "common/result.hpp"
#include "daemon/backup/key.hpp"
#include "daemon/backup/manifest.hpp"
#include "daemon/backup/stream.hpp"

namespace drd::backup {

// Everything the engine needs from `disaster_recovery.backup`, resolved once (key loaded).
struct BackupSettings {
  std::filesystem::path directory;
  int level = 3;
  int threads = 0;                       // 0 = one per core
  std::optional<MasterKey> key;          // set when encryption.key_file is configured
  std::size_t chunk_size = kDefaultChunkSize;
  std::function<Result<std::unique_ptr<OutputFile>>(const std::filesystem::path&)> open_output;  // tests

  // Loads and checks the key file (permissions, length); refuses algorithms other than zstd.
  static Result<BackupSettings> from_config(const BackupConfig& cfg);
  const MasterKey* key_ptr() const { return key ? &*key : nullptr; }
  PipelineOptions pipeline() const;
};

struct NewBackup {
  std::string name = "manual";
  std::string node;
  std::string engine = "sqlite";   // sqlite | postgresql
  std::string kind = "full";       // full | incremental | logical
  std::string parent;              // incrementals
  std::string content;             // sqlite-db | sql | pg-tar | pg-dump | pg-wal
  std::string id;                  // empty: new_backup_id(now, node); set: a name derived from the data (WAL files)
  SysTime now = std::chrono::system_clock::now();
};

class BackupSession {
 public:
  // Creates the backup directory (0700) if needed and `<id>.drdbk.partial`.
  static Result<std::unique_ptr<BackupSession>> begin(const BackupSettings& s, const NewBackup& info);
  ~BackupSession();  // an unfinished session removes its partial files

  Status write(const void* p, std::size_t n);
  // Commits the data file, then writes the manifest; returns it. On failure nothing remains.
  Result<Manifest> finish(const std::string& source_position);
  const Manifest& manifest() const { return m_; }
  // For engine-specific fields (PostgreSQL's WAL range) known only once the data is in.
  Manifest& manifest_for_update() { return m_; }
  std::uint64_t bytes_in() const { return writer_->source_bytes(); }

 private:
  BackupSession() = default;
  std::filesystem::path dir_;
  Manifest m_;
  std::unique_ptr<BackupWriter> writer_;
};

// Paths of a backup's data file from its manifest.
std::filesystem::path data_path(const std::filesystem::path& dir, const Manifest& m);
// Removes a backup's files (data, manifest, segment folder). Missing files are not an error.
Status remove_backup_files(const std::filesystem::path& dir, const Manifest& m);
// Removes leftovers of interrupted runs (`*.partial`, `*.snapshot.tmp`) in `dir`; call at
// startup, before any backup runs. Returns how many were removed.
std::size_t remove_stale_partials(const std::filesystem::path& dir);

}  // namespace drd::backup
