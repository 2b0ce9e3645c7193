#pragma once
// What the PostgreSQL backup end-to-end tests share: a test key, the backup: section of drd's
// configuration (optionally with WAL archiving), the restorable window as `drctl backups`
// shows it, and reading rows back from a restored data folder.
#include <boost/json.hpp>
#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "tests/pg_e2e/pg_drd_fixture.hpp"

namespace drd::test {

// A 256-bit hex key file (mode 0600) at `p`.
std::filesystem::path make_backup_key(const std::filesystem::path& p);

// "  backup:" with directory `dir`, zstd at `level` on one thread, encryption with `key` when
// given, and pg_wal_archive (spool `spool`) when given.
std::string backup_yaml(const std::filesystem::path& dir, const std::optional<std::filesystem::path>& key,
                        const std::optional<std::filesystem::path>& spool = std::nullopt, int level = 3);

// `drctl --json backup` (a physical full of the primary); its id. Throws with drctl's error
// and drd's log when it fails (Catch reports the exception as the test's failure).
std::string take_backup(PgDrdFixture& f);

// The "restorable" object of backup `id` in `drctl --json backups` (null when none).
boost::json::value restorable_window(PgDrdFixture& f, const std::string& id);
// Polls it until its "to" is later than `t` (an ISO time); the last value seen either way.
boost::json::value wait_window_past(PgDrdFixture& f, const std::string& id, const std::string& t,
                                    std::chrono::seconds timeout = std::chrono::seconds(30));

// Runs `before` on node `i`, notes the time T a moment later, waits a little more, runs `after`
// and completes the WAL segment (pg_switch_wal): a restore --to-time T must have `before`'s
// effect and not `after`'s. Returns T (ISO, UTC).
std::string time_between(PgCluster& pg, int i, const std::string& before, const std::string& after);

// Starts a scratch server on the restored data folder `target` (sockets in `sock_dir`) and
// returns the first column of `sql`'s first row; nullopt (with the reason in `why`) on failure.
std::optional<std::string> query_restored(const std::filesystem::path& target, const std::filesystem::path& sock_dir,
                                          const std::string& sql, std::string* why = nullptr);

// A physical drd backup (unencrypted) of a separately initdb'd cluster (another database
// system identifier), made under `dir`; the path of its data file. Fails the test on error.
std::filesystem::path foreign_backup(const std::filesystem::path& dir);

// drd's folders beside a data_dir ("<name>.drd-old-*", "<name>.drd-restore-tmp"...): none may be
// left after a restore onto a node.
std::vector<std::string> leftovers(const std::filesystem::path& data_dir);

}  // namespace drd::test
