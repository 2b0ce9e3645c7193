#pragma once
// SQLite full backups, restores and verification.
//
// backup_sqlite: a consistent snapshot while the application keeps writing. The sqlite3 online
// backup API copies the database inside one read transaction into `<dir>/<id>.snapshot.tmp`
// (in WAL mode writers are not blocked; in rollback-journal mode they wait for the copy,
// bounded by busy_timeout), which is then streamed through the pipeline and deleted.
//
// restore_sqlite: decrypt + decompress into `<target>.restore-tmp`, compare the manifest's
// checksums, PRAGMA integrity_check, fsync, remove the target's -wal/-shm/-journal, rename over
// the target, fsync the folder. The target must not be open by anyone (the daemon stops or
// fences the node first). A plain `.sql` file restores too (executed into a fresh database).
//
// verify_backup: named checks (see VerifyReport) including a test restore into a scratch dir.
//
// All functions block; run them off the daemon's event loop. Thread-safe across different
// backups/targets.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "daemon/backup/manifest.hpp"
#include "daemon/backup/session.hpp"

namespace drd::backup {

// done/total in source bytes; total is 0 when unknown.
using Progress = std::function<void(std::uint64_t done, std::uint64_t total, const char* phase)>;

// Backs up the SQLite database at `db_path`. `info.engine`/`content` are set here.
// Returns the manifest of the completed backup (data + manifest renamed into place).
Result<Manifest> backup_sqlite(const BackupSettings& s, const std::filesystem::path& db_path, NewBackup info,
                               const Progress& progress = {});

// What a user may hand to restore/verify: a manifest, a data file (its manifest is looked up
// beside it), or a plain `.sql` file.
struct BackupRef {
  std::filesystem::path data;                // the DRDBK1 file, or the .sql file
  std::optional<Manifest> manifest;          // when found
  bool plain_sql = false;
};
Result<BackupRef> resolve_backup(const std::filesystem::path& p);

struct RestoreOptions {
  bool allow_overwrite = false;   // --force: replace an existing target
  const MasterKey* key = nullptr; // needed for encrypted backups
};

struct RestoreResult {
  std::filesystem::path restored_to;
  std::uint64_t bytes = 0;
  std::string integrity = "ok";
};

Result<RestoreResult> restore_sqlite(const BackupRef& ref, const std::filesystem::path& target,
                                     const RestoreOptions& opts, const Progress& progress = {});

namespace detail {
// restore_sqlite with a step run on the restored temp file before integrity_check (used by
// point-in-time restore to apply WAL segments).
Result<RestoreResult> restore_sqlite_with(const BackupRef& ref, const std::filesystem::path& target,
                                          const RestoreOptions& opts, const Progress& progress,
                                          const std::function<Status(const std::filesystem::path& tmp)>& before_check);
}  // namespace detail

struct Check {
  std::string name;   // manifest, data_file, file_sha256, decrypt, plaintext_sha256, test_restore, integrity_check
  bool ok = false;
  std::string detail;
};
struct VerifyReport {
  bool ok = false;
  std::string id;
  std::vector<Check> checks;
};

// Never throws or returns an Error: every problem becomes a failed check. The scratch
// restore goes into a fresh folder under `scratch_dir` (removed afterwards).
VerifyReport verify_backup(const BackupRef& ref, const MasterKey* key, const std::filesystem::path& scratch_dir);

// "ok", or the first lines integrity_check reported; an Error when the file cannot be opened.
Result<std::string> sqlite_integrity_check(const std::filesystem::path& db);

}  // namespace drd::backup
