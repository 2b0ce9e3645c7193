#pragma once
// The blocking halves of the daemon's backup methods (daemon_backup.cpp): each
// function here does file I/O and must run on a BlockingWorker, never on the
// control strand. They take copies of what they need (BackupConfig, paths) and
// touch neither the Daemon nor the state store, so a job the daemon abandons at
// shutdown cannot reach freed state. Failures come back as Errors naming the
// file and the cause; nothing here throws except `Cancelled`, which only
// escapes from a progress callback armed with a cancel flag (caught inside).
#include <atomic>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.hpp"
#include "common/config.hpp"
#include "common/result.hpp"
#include "daemon/backup/catalog.hpp"
#include "daemon/backup/key.hpp"
#include "daemon/backup/sqlite_backup.hpp"

namespace drd::bkrt {

// Creates the backup directory (0750) and removes leftovers of interrupted runs:
// `*.partial`, `*.snapshot.tmp` and WAL spool (`.wal-*.spool`) files, and verify scratch folders
// (`drd-verify-*`). Returns what was removed (paths) for the log.
Result<std::vector<std::string>> prepare_directory(const std::filesystem::path& dir);

// Loads BackupSettings from `cfg` and takes a full backup of the SQLite file
// `db`. `cancel`, when set while the data streams, aborts it (nothing remains).
Result<backup::Manifest> take_sqlite_backup(const BackupConfig& cfg, const std::filesystem::path& db,
                                            backup::NewBackup info, const backup::Progress& progress,
                                            const std::atomic<bool>* cancel);

// A consistent copy of `src` (SQLite online backup) at `dst`, which must not exist.
// Used for standbys: it runs on the cluster worker, between replication steps, because
// the replicator rewrites a standby's -wal underneath any reader.
Status snapshot_sqlite(const std::filesystem::path& src, const std::filesystem::path& dst);

// The master key when `cfg` names a key file. `error` is set when it cannot be used.
struct KeyState {
  std::optional<backup::MasterKey> key;
  std::optional<Error> error;
  const backup::MasterKey* ptr() const { return key ? &*key : nullptr; }
};
KeyState load_key(const BackupConfig& cfg);

// Whether a backup is encrypted: from its manifest, else from the container header.
bool is_encrypted(const backup::BackupRef& ref);

// A catalog entry's files as a BackupRef: the manifest on disk when it can be read, else
// the catalog's copy (`manifest_problem` then says why the file could not be used).
backup::BackupRef ref_from_catalog(const std::filesystem::path& data_file, const std::filesystem::path& manifest_file,
                                   const backup::Manifest& catalog_copy, std::string* manifest_problem);

// The backup a verify or restore names (its catalog entry, else a file path) and the key to
// read it. An encrypted backup whose key cannot be loaded is an error saying it cannot be
// `verb`-ed ("verify", "restore"). `manifest_problem` as for ref_from_catalog (may be null).
struct OpenedBackup {
  backup::BackupRef ref;
  KeyState key;
};
Result<OpenedBackup> open_backup(const BackupConfig& cfg, const std::optional<backup::CatalogEntry>& entry,
                                 const std::filesystem::path& path, const std::string& verb,
                                 std::string* manifest_problem);

// "2026-11-24T05:29:20Z", "...T05:29:20.123Z", "+00:00", or "2026-11-24 05:29:20" (UTC).
Result<SysTime> parse_restore_time(const std::string& text);

// Whether `a` and `b` name the same file once symlinks and `..` are resolved (the files
// need not exist).
bool same_file(const std::filesystem::path& a, const std::filesystem::path& b);

// "file_sha256: got …; decrypt: chunk 3 failed authentication" for the failed checks.
std::string failed_checks(const backup::VerifyReport& r);

}  // namespace drd::bkrt
