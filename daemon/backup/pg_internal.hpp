#pragma once
// Helpers shared by pg_restore.cpp and pg_verify.cpp (not part of the backup API).
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "daemon/backup/pg_backup.hpp"
#include "daemon/backup/stream.hpp"

namespace drd::backup::pgi {

// Runs a tool to completion as tools.os_user; an Error (with the tool's last words) unless it
// exited 0.
Result<ProcessOutcome> run_tool(ProcessRunner& runner, const PgTools& tools, std::vector<std::string> argv,
                                Millis timeout = Millis{120'000});

// Decrypts + decompresses `ref` into the stdin of `argv` (run as tools.os_user). Wrong key or
// a bad header fail before the tool starts. A damaged chunk kills the tool. Compares the
// plaintext with the manifest's checksum. `output`: the tool's output (when given).
// `stops_early`: the tool may quit before the end (pg_restore --list reads only the table of
// contents); the rest is still decrypted and checked, and only the tool's exit status counts.
Result<ReadStats> stream_backup_into(const BackupRef& ref, const MasterKey* key, ProcessRunner& runner,
                                     const PgTools& tools, std::vector<std::string> argv, const Progress& progress,
                                     std::string* output = nullptr, bool stops_early = false);

// Creates `dir` (0700) owned by tools.os_user.
Status make_owned_dir(const std::filesystem::path& dir, const PgTools& tools);

// A scratch folder (mkdtemp "drd-verify-XXXXXX") under `parent` that tools.os_user can use,
// else under the system temp folder (PostgreSQL servers must be able to reach their data).
Result<std::filesystem::path> make_scratch(const std::filesystem::path& parent, ProcessRunner& runner,
                                           const PgTools& tools);

// A server started from `data_dir` on a free loopback port, stopped (then killed by PID if it
// will not stop) by the destructor. Its unix socket lives in `socket_dir`.
class ScratchServer {
 public:
  static Result<std::unique_ptr<ScratchServer>> start(const std::filesystem::path& data_dir,
                                                      const std::filesystem::path& socket_dir, ProcessRunner& runner,
                                                      const PgTools& tools);
  ~ScratchServer();
  int port() const { return port_; }
  std::string conninfo(const std::string& user, const std::string& db) const;
  // First row of `sql` as "a|b|...", via psql.
  Result<std::string> query(const std::string& user, const std::string& db, const std::string& sql);

 private:
  ScratchServer(ProcessRunner& r, PgTools t) : runner_(r), tools_(std::move(t)) {}
  ProcessRunner& runner_;
  PgTools tools_;
  std::filesystem::path data_dir_;
  int port_ = 0;
};

int free_loopback_port();

}  // namespace drd::backup::pgi
