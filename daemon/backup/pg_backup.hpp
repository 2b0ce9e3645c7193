#pragma once
// PostgreSQL backups through the one pipeline (session.hpp): no temporary copy, constant memory.
//
// Physical (`kind` full, content pg-tar): `pg_basebackup -D - -Ft -X fetch` writes one tar of
// the data directory to stdout — the WAL needed for consistency under pg_wal/ and (PG 13+)
// its backup_manifest as the last member — which streams straight into the session. The WAL
// range comes from pg_basebackup's --verbose lines. Logical (`kind` logical, content pg-dump):
// `pg_dump -Fc` likewise.
//
// Restore: the decrypted stream is piped into `tar -x` (physical, run as the node's OS user so
// every file is theirs) or `pg_restore` (logical). A physical restore lands in
// `<target>.restore-tmp`, is checked with pg_verifybackup and only then renamed to the target;
// started, the server replays the included WAL from backup_label up to the backup's end and is
// consistent. A logical restore runs in one transaction: any failure leaves the database as it was.
//
// Verify: the common checks (manifest, file checksum, every chunk, plaintext checksum), then
// physical: restore into a scratch folder, pg_verifybackup, start it on a free loopback port
// and query it; logical: `pg_restore --list`, then a restore into a scratch cluster.
//
// Every tool runs through the ProcessRunner (timeouts, as `os_user`). All functions block;
// run them off the daemon's event loop.
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "common/process.hpp"
#include "common/result.hpp"
#include "common/units.hpp"
#include "daemon/backup/session.hpp"
#include "daemon/backup/sqlite_backup.hpp"

namespace drd::backup {

// How to reach one PostgreSQL server with its own tools.
struct PgTools {
  std::filesystem::path bin_dir;       // empty: programs are looked up in PATH
  std::string os_user;                 // run tools (and scratch servers) as this user; empty = as drd
  std::string conninfo;                // no password in it (it would show in ps)
  std::map<std::string, std::string> env;   // PGPASSWORD when needed
  std::vector<std::string> secrets;    // scrubbed from every message
  Millis timeout{6LL * 3600 * 1000};   // a whole backup or restore
  Millis idle_timeout{300'000};        // no byte moved for this long = stalled
  std::string program(const std::string& name) const;
};

// Facts pg_basebackup --verbose reports: "write-ahead log start point: 0/2000028 on timeline 1",
// "write-ahead log end point: 0/2000100". Empty fields when absent.
struct BaseBackupPosition {
  std::string start_lsn, stop_lsn;
  std::uint32_t timeline = 0;
};
BaseBackupPosition parse_basebackup_output(const std::string& stderr_text);

// The last lines of a tool's output with secrets removed, for error messages.
std::string tool_output_tail(const std::string& output, const std::vector<std::string>& secrets);

Result<Manifest> backup_pg_physical(const BackupSettings& s, ProcessRunner& runner, const PgTools& tools,
                                    NewBackup info, const Progress& progress = {});
// `database` is recorded in the manifest (the conninfo names it for pg_dump).
Result<Manifest> backup_pg_logical(const BackupSettings& s, ProcessRunner& runner, const PgTools& tools,
                                   const std::string& database, NewBackup info, const Progress& progress = {});

struct PgRestoreResult {
  std::filesystem::path restored_to;   // physical
  std::uint64_t bytes = 0;
  std::string detail;
};

// Physical: `target` must not exist or be an empty folder (an existing data directory is
// replaced only with opts.allow_overwrite, and never while a postmaster.pid is in it).
Result<PgRestoreResult> restore_pg_physical(const BackupRef& ref, const std::filesystem::path& target,
                                            const RestoreOptions& opts, ProcessRunner& runner, const PgTools& tools,
                                            const Progress& progress = {});
// Logical into the database `tools.conninfo` names, in one transaction. `clean` drops the
// dump's objects first (--clean --if-exists): needed when they exist already.
Result<PgRestoreResult> restore_pg_logical(const BackupRef& ref, const RestoreOptions& opts, bool clean,
                                           ProcessRunner& runner, const PgTools& tools,
                                           const Progress& progress = {});

// Never returns an Error: every problem is a failed check. `tools` supplies bin_dir/os_user
// for the scratch servers (conninfo unused). `superuser`: a role that exists in the backup
// (physical) to run the test query as.
VerifyReport verify_pg_backup(const BackupRef& ref, const MasterKey* key, const std::filesystem::path& scratch_dir,
                              ProcessRunner& runner, const PgTools& tools, const std::string& superuser);

}  // namespace drd::backup
