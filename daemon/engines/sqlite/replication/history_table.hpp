#pragma once
// Reads and writes a database's own history (`_drd_history`, see history.hpp) through
// a SQLite connection. The table is created once, on the primary of a new cluster (or of
// a cluster managed by an older drd), and travels to standbys with the WAL like any table:
//
//   CREATE TABLE _drd_history(term INTEGER PRIMARY KEY, db_id TEXT NOT NULL,
//                             start_epoch INTEGER NOT NULL, epoch INTEGER NOT NULL,
//                             node TEXT NOT NULL, started_at TEXT NOT NULL)
//
// Applications see one small table; they must not write to it (docs/sqlite-replication.md).
// Not thread-safe: the caller owns the connection.
#include <sqlite3.h>

#include <cstdint>
#include <filesystem>
#include <string>

#include "common/result.hpp"
#include "daemon/engines/sqlite/replication/history.hpp"

namespace drd::replication {

inline constexpr const char* kHistoryTable = "_drd_history";

// Through `db`, inside its current read transaction if it has one. A database without
// the table has stamped = false.
Result<FileHistory> read_history(sqlite3* db, const std::string& name);
// Opens `path` read-only for the read (never creates it). An empty or missing file is
// unstamped; an unreadable one is an error.
Result<FileHistory> read_history_file(const std::filesystem::path& path);

// Creates the table and its first row (`term`, epoch 1) in one write transaction.
Status create_history(sqlite3* db, const std::string& name, const std::string& db_id, std::int64_t term,
                      const std::string& node);
// One more stamp: epoch + 1 in the last row. The caller holds the write transaction
// (BEGIN IMMEDIATE) and commits it.
Status stamp_history(sqlite3* db, const std::string& name);
// A promoted file begins `term`: a new row starting at its epoch + 1. A term not above the
// file's last one is raised to last + 1 (the file's own order is what comparisons use).
Status begin_term(sqlite3* db, const std::string& name, std::int64_t term, const std::string& node);

// 32 hex digits from the system's random source.
std::string new_database_id();

}  // namespace drd::replication
