#pragma once
// The blocking halves of the daemon's PostgreSQL backup, verify and restore (called from
// daemon_backup.cpp on its BlockingWorkers, never on the control strand). Like
// backup_runtime.hpp they take copies (BackupConfig, NodeConfigs) and never touch the Daemon.
// Passwords are read here (off the strand), handed to the tools in PGPASSWORD only, and
// scrubbed from every message.
#include <atomic>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "boost/json.hpp"
#include "common/config.hpp"
#include "common/process.hpp"
#include "common/result.hpp"
#include "daemon/backup/pg_backup.hpp"
#include "daemon/engines/postgres/postgres_util.hpp"

namespace drd::bkrt {

// PgTools for `node`: its bin_dir (else the Debian PostgreSQL 15 folder when it exists, else
// PATH), its os_user, a password-free conninfo with `application_name`, and PGPASSWORD.
// `keep_dbname`: pg_dump/pg_restore need the URL's database; pg_basebackup does not.
Result<backup::PgTools> pg_tools_for(const NodeConfig& node, const std::string& application_name);

// pg_basebackup (logical: pg_dump) of `node` into a new backup. `cancel` as for SQLite.
Result<backup::Manifest> take_pg_backup(const BackupConfig& cfg, ProcessRunner& runner, const NodeConfig& node,
                                        backup::NewBackup info, bool logical, const backup::Progress& progress,
                                        const std::atomic<bool>* cancel);

// Verify a PostgreSQL backup: scratch servers use the tools of the node it was taken from
// (else of any PostgreSQL node, else defaults: PATH / os user postgres).
backup::VerifyReport verify_pg(const backup::BackupRef& ref, const backup::MasterKey* key,
                               const std::filesystem::path& scratch, ProcessRunner& runner,
                               const std::vector<NodeConfig>& pg_nodes);

// Where a PostgreSQL restore goes, decided on the control strand.
struct PgRestoreTarget {
  std::string path_or_url;                 // --target: a data folder (physical) or a URL (logical)
  std::optional<NodeConfig> node;          // --node: that node's database (logical), or a standby to re-seed (physical)
  bool node_is_primary = false;
  bool force = false;
  // --node, physical backup onto a standby: the primary when the request came (for the system
  // identifier check), and whether the node's files are on another host (multi-host mode).
  std::optional<NodeConfig> primary;
  bool node_on_other_host = false;
  bool multi_host = false;  // drd runs with etcd coordination
};

// Tools for servers drd starts itself (verify, PITR): those of node `preferred` (else the
// first PostgreSQL node, else defaults), never as root (PostgreSQL refuses that).
backup::PgTools scratch_tools(const std::vector<NodeConfig>& pg_nodes, const std::string& preferred);
// A role that exists in the backups of node `preferred` (its URL's user, else the OS user).
std::string superuser_of(const std::vector<NodeConfig>& pg_nodes, const std::string& preferred,
                         const backup::PgTools& t);

// Point-in-time restore (see restore_pg), in backup_pg_pitr.cpp.
Result<boost::json::value> restore_pg_pitr(const backup::BackupRef& ref, const backup::MasterKey* key,
                                           const std::filesystem::path& target, bool force, SysTime to_time,
                                           ProcessRunner& runner, const std::vector<NodeConfig>& pg_nodes,
                                           const backup::Progress& progress);

// Recovery of an extracted base backup in `work`, shared by point-in-time restore and the
// roll-back of a live primary (any restore that must end on a new timeline): decrypts `stage`
// (WAL and .history files of the archive in `wal_folder`) into a folder inside `work` fetched by
// restore_command = cp, adds the plaintext `extra` files there (name -> content, e.g. history
// files read from the primary; an archived file of the same name wins), appends
// `target_settings` (the recovery_target* lines, recovery_target_timeline included) plus
// promote for this run only, runs a scratch server until it is out of recovery, stops it (fast
// shutdown: a checkpoint) and removes the staged WAL and the recovery settings again. Returns the
// last replayed commit's time (ISO 8601 UTC, empty when recovery replayed none). `what` starts
// the error messages ("recovery of backup X to T"); on error `work` is left for the caller.
Result<std::string> recover_pg_copy(const std::filesystem::path& work, const std::filesystem::path& wal_folder,
                                    const std::vector<backup::Manifest>& stage,
                                    const std::map<std::string, std::string>& extra, const backup::MasterKey* key,
                                    const std::string& target_settings, const std::string& what,
                                    const std::filesystem::path& scratch_parent, const std::string& user,
                                    ProcessRunner& runner, const backup::PgTools& tools);

// What point-in-time recovery of a base backup to `to_time` needs from the WAL archived beside
// it (`<backup folder>/pg-wal/`): refused (message ends "nothing was changed") when the archive
// does not cover `to_time`.
struct PitrPlan {
  std::filesystem::path folder;        // the archive
  std::vector<backup::Manifest> stage; // segments in order, then the history files they cross
  std::size_t segments = 0;
};
Result<PitrPlan> plan_pg_pitr(const backup::BackupRef& ref, SysTime to_time);
// "recovery_target_time = '...'\n" in the form PostgreSQL's check accepts.
std::string recovery_time_setting(SysTime t);

// Whether `work` (a restored data folder) is a copy of the cluster `primary` runs, by database
// system identifier (pg_controldata there, pg_control_system() on the primary); its control data
// when it is. Errors end "; <touched> was not touched".
Result<pg::ControlData> check_same_cluster(const std::filesystem::path& work, const backup::PgTools& tools,
                                           ProcessRunner& runner, const std::string& id, const NodeConfig& primary,
                                           const std::string& touched);

// A replication-protocol command (IDENTIFY_SYSTEM, TIMELINE_HISTORY n) on `tools.conninfo`
// with psql `replication=true`: its output row, fields separated by '|'.
Result<std::string> pg_replication_command(ProcessRunner& runner, const backup::PgTools& tools, const std::string& cmd);
// The server's current timeline (IDENTIFY_SYSTEM over such a connection).
Result<std::uint32_t> pg_server_timeline(ProcessRunner& runner, const backup::PgTools& tools);

// `drctl restore ID --node STANDBY` with a physical backup, the part that runs off the cluster
// worker while the standby keeps serving (backup_pg_standby.cpp): restores `ref` into
// "<data_dir>.drd-restore-tmp" (beside data_dir, as node.os_user; pg_verifybackup), refuses a
// backup whose database system identifier (pg_controldata) differs from the primary's
// (pg_control_system()), and decrypts the archived WAL after the backup (backup/pg_reseed.hpp)
// into its pg_wal/. On any failure the folder is removed and the node was not touched. The swap
// is ClusterDriver::restore_standby.
struct PreparedStandby {
  std::string node, id;
  std::filesystem::path dir;
  std::uint64_t bytes = 0;
  std::size_t wal_files = 0;  // archived segments + history files staged
  std::string detail;
};
Result<PreparedStandby> prepare_standby_restore(const backup::BackupRef& ref, const backup::MasterKey* key,
                                                const NodeConfig& node, const NodeConfig& primary,
                                                ProcessRunner& runner, const backup::Progress& progress);
// `drctl restore ID --node PRIMARY --force [--to-time T]` with a physical backup, the part that
// runs off the cluster worker while the primary keeps serving (backup_pg_primary.cpp): checks
// the archive covers `to_time` and reads the primary's timeline history, calls
// `before_touching` (the safety backup; its error ends the restore), restores `ref` into
// "<data_dir>.drd-restore-tmp", checks it is of this cluster, recovers it (to `to_time` along
// the primary's timeline, else to the end of the backup), promotes it onto a timeline above
// every one in use (backup/pg_rollback.hpp) and stops it cleanly. On any failure the folder is
// removed and the primary was not touched. The swap is ClusterDriver::restore_primary.
struct PreparedPrimary {
  std::string node, id;
  std::filesystem::path dir;
  std::uint64_t bytes = 0;
  std::uint32_t timeline = 0;      // the copy's, new
  std::uint32_t old_timeline = 0;  // the primary's when the restore was prepared
  std::string to_time;             // ISO 8601 UTC; "" = the end of the backup
  std::string restored_time;       // the last replayed commit ("" = none replayed)
  std::size_t applied_segments = 0;
  std::string detail;
};
Result<PreparedPrimary> prepare_primary_restore(const backup::BackupRef& ref, const backup::MasterKey* key,
                                                const NodeConfig& node, std::optional<SysTime> to_time,
                                                ProcessRunner& runner, const backup::Progress& progress,
                                                const std::function<Status()>& before_touching);
// Why a backup with system identifier `backup_sysid` cannot re-seed a standby of `primary`
// (whose identifier is `primary_sysid`); nullopt when both are the same cluster.
std::optional<std::string> other_cluster(const std::string& id, const std::string& backup_sysid,
                                         const std::string& primary, const std::string& primary_sysid);

// A restore onto `node` swaps its data folder: refused when data_dir or bin_dir is not configured.
Status need_server_files(const NodeConfig& node);
// "<data_dir>.drd-restore-tmp" (trailing slashes ignored), where a restore onto a node is
// prepared; a leftover of an interrupted restore there is removed first.
std::filesystem::path restore_folder_beside(const std::filesystem::path& data_dir);

// Whether --target names a database rather than a folder.
bool is_pg_url(const std::string& target);

// Restores `ref` (a PostgreSQL backup) as `where` says; JSON for the reply. With `to_time`
// (physical into --target only): point-in-time restore from the WAL archived beside the backup
// (`<backup folder>/pg-wal/`, see backup/pg_wal.hpp) — refused before anything is created when
// the archive does not cover `to_time`; otherwise the base backup is restored into
// `<target>.pitr-tmp`, the needed WAL segments are decrypted into it, the server is started there
// on a loopback port with recovery_target_time + promote, drd waits until it has promoted,
// reads the last replayed commit time, stops it, removes its recovery settings and renames the
// folder to the target.
Result<boost::json::value> restore_pg(const backup::BackupRef& ref, const backup::MasterKey* key,
                                      const PgRestoreTarget& where, ProcessRunner& runner,
                                      const std::vector<NodeConfig>& pg_nodes, const backup::Progress& progress,
                                      std::optional<SysTime> to_time = std::nullopt);

}  // namespace drd::bkrt
