#pragma once
// PgArchiveService: PostgreSQL continuous WAL archiving (backup.pg_wal_archive) — one
// pg_receivewal against the current primary, its spool, and the archived segments with their
// catalog rows (pg_archive_service.cpp has the whole story).
//
// Owns: the pg_receivewal child process, the spool folder, `<backups>/pg-wal/` and the catalog
//   rows of archived segments.
// Runs: a one-second tick on the control strand (reads the primary and the backup config
//   through the Wiring callbacks, which must only be called there); everything else on the
//   service's own thread.
// May call: the ProcessRunner, the clock, the state store's catalog (under its lock). It never
//   changes the cluster; a failover only changes what `primary_node` answers at the next tick.
// On failure: logged once per distinct error (event backup_wal) and retried; archiving never
//   stops the daemon. stop() (or the destructor) joins the thread: at most one file in progress.
#include <boost/asio.hpp>

#include <functional>
#include <memory>
#include <optional>

#include "common/clock.hpp"
#include "common/config.hpp"
#include "common/process.hpp"

namespace drd {

class SqliteStateStore;

class PgArchiveService {
 public:
  struct Wiring {
    boost::asio::strand<boost::asio::io_context::executor_type>& control;
    ProcessRunner& runner;
    Clock& clock;
    SqliteStateStore& store;
    std::function<BackupConfig()> backup_config;             // control strand
    std::function<std::optional<NodeConfig>()> primary_node;  // control strand; nullopt: none settled
  };

  // Starts the thread and the first tick; call on the control strand.
  explicit PgArchiveService(Wiring wiring);
  ~PgArchiveService();
  PgArchiveService(const PgArchiveService&) = delete;
  PgArchiveService& operator=(const PgArchiveService&) = delete;

  // Idempotent; call on the control strand.
  void stop();
  // A pg_receivewal is running (for `backups`); any thread.
  bool live() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace drd
