#pragma once
// Small RAII wrapper over a sqlite3 connection and the file helpers the
// replicator needs (fsync of files and folders, atomic replace).
// Not thread-safe: one owner uses a SqliteDb at a time. Every error names the
// database path and SQLite's own message.
#include <sqlite3.h>

#include <cstdint>
#include <filesystem>
#include <string>

#include "common/result.hpp"

namespace drd::replication {

class SqliteDb {
 public:
  SqliteDb() = default;
  ~SqliteDb() { close(); }
  SqliteDb(SqliteDb&& o) noexcept : db_(o.db_), path_(std::move(o.path_)) { o.db_ = nullptr; }
  SqliteDb& operator=(SqliteDb&& o) noexcept;
  SqliteDb(const SqliteDb&) = delete;
  SqliteDb& operator=(const SqliteDb&) = delete;

  // flags: SQLITE_OPEN_* (NOMUTEX is added: one owner thread at a time).
  static Result<SqliteDb> open(const std::filesystem::path& path, int flags);

  bool is_open() const { return db_ != nullptr; }
  sqlite3* get() const { return db_; }
  const std::filesystem::path& path() const { return path_; }
  void close();

  Status exec(const std::string& sql);
  Result<std::int64_t> query_int(const std::string& sql);
  Result<std::string> query_text(const std::string& sql);
  void busy_timeout(int ms) { sqlite3_busy_timeout(db_, ms); }

  struct CheckpointResult {
    int rc = SQLITE_OK;  // SQLITE_OK or SQLITE_BUSY (partial)
    int log_frames = 0;
    int checkpointed_frames = 0;
  };
  // sqlite3_wal_checkpoint_v2 on "main"; errors other than BUSY become Error.
  Result<CheckpointResult> checkpoint(int mode);

  // An Error naming this database and SQLite's current message.
  Error error(const std::string& what, int rc) const;

 private:
  sqlite3* db_ = nullptr;
  std::filesystem::path path_;
};

// "<db>-wal", "<db>-shm" and friends.
std::filesystem::path with_suffix(const std::filesystem::path& p, const std::string& suffix);

Status fsync_path(const std::filesystem::path& p);        // a regular file
Status fsync_dir_of(const std::filesystem::path& p);      // the folder holding p
// Writes `content` to p.tmp, fsyncs it, renames it over p, fsyncs the folder.
Status write_file_atomic(const std::filesystem::path& p, const std::string& content);
// Removes p if present; fails only on errors other than "does not exist".
Status remove_if_exists(const std::filesystem::path& p);

// (device, inode) of a path or descriptor: identity that survives renames.
struct FileId {
  std::uint64_t dev = 0, ino = 0;
  bool operator==(const FileId&) const = default;
};
Result<FileId> file_id(const std::filesystem::path& p);
Result<FileId> file_id(int fd);

// What a file looked like when drd last wrote it: identity, size and modification time.
// Any write by someone else (a copy over it, a rename onto its path) changes it.
struct FileStamp {
  std::uint64_t dev = 0, ino = 0, size = 0;
  std::int64_t mtime_ns = 0;
  bool operator==(const FileStamp&) const = default;
};
Result<FileStamp> file_stamp(const std::filesystem::path& p);

}  // namespace drd::replication
