#include "daemon/engines/sqlite/replication/sqlite_util.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace drd::replication {

SqliteDb& SqliteDb::operator=(SqliteDb&& o) noexcept {
  if (this != &o) {
    close();
    db_ = o.db_;
    path_ = std::move(o.path_);
    o.db_ = nullptr;
  }
  return *this;
}

Result<SqliteDb> SqliteDb::open(const std::filesystem::path& path, int flags) {
  SqliteDb d;
  d.path_ = path;
  int rc = sqlite3_open_v2(path.c_str(), &d.db_, flags | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = d.db_ ? sqlite3_errmsg(d.db_) : sqlite3_errstr(rc);
    return make_error(Errc::io, "cannot open SQLite database " + path.string() + ": " + msg);
  }
  sqlite3_extended_result_codes(d.db_, 1);
  return d;
}

void SqliteDb::close() {
  if (db_) {
    // close_v2 never fails for a connection without unfinalized statements;
    // every statement here is finalized before its function returns.
    sqlite3_close_v2(db_);
    db_ = nullptr;
  }
}

Error SqliteDb::error(const std::string& what, int rc) const {
  Errc code = Errc::io;
  int prim = rc & 0xff;
  if (prim == SQLITE_BUSY || prim == SQLITE_LOCKED) code = Errc::conflict;
  if (prim == SQLITE_CORRUPT || prim == SQLITE_NOTADB) code = Errc::corrupt;
  std::string msg = db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc);
  return make_error(code, what + " on " + path_.string() + " failed: " + msg);
}

Status SqliteDb::exec(const std::string& sql) {
  char* err = nullptr;
  int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    std::string msg = err ? err : sqlite3_errstr(rc);
    sqlite3_free(err);
    Error e = error("'" + sql + "'", rc);
    e.message = "'" + sql + "' on " + path_.string() + " failed: " + msg;
    return e;
  }
  return ok_status();
}

namespace {
struct Stmt {
  sqlite3_stmt* s = nullptr;
  ~Stmt() { sqlite3_finalize(s); }
};
}  // namespace

Result<std::int64_t> SqliteDb::query_int(const std::string& sql) {
  Stmt st;
  int rc = sqlite3_prepare_v2(db_, sql.c_str(), -1, &st.s, nullptr);
  if (rc != SQLITE_OK) return error("'" + sql + "'", rc);
  rc = sqlite3_step(st.s);
  if (rc != SQLITE_ROW) return error("'" + sql + "' (no row)", rc);
  return static_cast<std::int64_t>(sqlite3_column_int64(st.s, 0));
}

Result<std::string> SqliteDb::query_text(const std::string& sql) {
  Stmt st;
  int rc = sqlite3_prepare_v2(db_, sql.c_str(), -1, &st.s, nullptr);
  if (rc != SQLITE_OK) return error("'" + sql + "'", rc);
  rc = sqlite3_step(st.s);
  if (rc != SQLITE_ROW) return error("'" + sql + "' (no row)", rc);
  const unsigned char* t = sqlite3_column_text(st.s, 0);
  return std::string(t ? reinterpret_cast<const char*>(t) : "");
}

Result<SqliteDb::CheckpointResult> SqliteDb::checkpoint(int mode) {
  CheckpointResult r;
  r.rc = sqlite3_wal_checkpoint_v2(db_, "main", mode, &r.log_frames, &r.checkpointed_frames);
  if (r.rc != SQLITE_OK && (r.rc & 0xff) != SQLITE_BUSY) return error("wal checkpoint", r.rc);
  return r;
}

std::filesystem::path with_suffix(const std::filesystem::path& p, const std::string& suffix) {
  return std::filesystem::path(p.string() + suffix);
}

static Error errno_error(const std::string& what, const std::filesystem::path& p) {
  return make_error(Errc::io, what + " " + p.string() + ": " + std::strerror(errno));
}

Status fsync_path(const std::filesystem::path& p) {
  int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno_error("cannot open for fsync", p);
  int rc = ::fsync(fd);
  int saved = errno;
  ::close(fd);
  if (rc != 0) {
    errno = saved;
    return errno_error("fsync failed for", p);
  }
  return ok_status();
}

Status fsync_dir_of(const std::filesystem::path& p) {
  auto dir = p.has_parent_path() ? p.parent_path() : std::filesystem::path(".");
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return errno_error("cannot open folder for fsync", dir);
  int rc = ::fsync(fd);
  int saved = errno;
  ::close(fd);
  if (rc != 0) {
    errno = saved;
    return errno_error("fsync failed for folder", dir);
  }
  return ok_status();
}

Status write_file_atomic(const std::filesystem::path& p, const std::string& content) {
  auto tmp = with_suffix(p, ".tmp");
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return errno_error("cannot create", tmp);
  const char* data = content.data();
  std::size_t left = content.size();
  while (left > 0) {
    ssize_t w = ::write(fd, data, left);
    if (w < 0) {
      if (errno == EINTR) continue;
      int saved = errno;
      ::close(fd);
      errno = saved;
      return errno_error("cannot write", tmp);
    }
    data += w;
    left -= static_cast<std::size_t>(w);
  }
  if (::fsync(fd) != 0) {
    int saved = errno;
    ::close(fd);
    errno = saved;
    return errno_error("fsync failed for", tmp);
  }
  ::close(fd);
  if (::rename(tmp.c_str(), p.c_str()) != 0) return errno_error("cannot rename over", p);
  return fsync_dir_of(p);
}

Status remove_if_exists(const std::filesystem::path& p) {
  if (::unlink(p.c_str()) != 0 && errno != ENOENT) return errno_error("cannot remove", p);
  return ok_status();
}

Result<FileId> file_id(const std::filesystem::path& p) {
  struct stat st {};
  if (::stat(p.c_str(), &st) != 0) {
    Error e = errno_error("cannot stat", p);
    if (errno == ENOENT) e.code = Errc::not_found;
    return e;
  }
  return FileId{static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino)};
}

Result<FileId> file_id(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return make_error(Errc::io, std::string("fstat failed: ") + std::strerror(errno));
  return FileId{static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino)};
}

Result<FileStamp> file_stamp(const std::filesystem::path& p) {
  struct stat sb {};
  if (::stat(p.c_str(), &sb) != 0)
    return make_error(errno == ENOENT ? Errc::not_found : Errc::io, "cannot stat " + p.string() + ": " + std::strerror(errno));
  FileStamp f;
  f.dev = static_cast<std::uint64_t>(sb.st_dev);
  f.ino = static_cast<std::uint64_t>(sb.st_ino);
  f.size = static_cast<std::uint64_t>(sb.st_size);
  f.mtime_ns = static_cast<std::int64_t>(sb.st_mtim.tv_sec) * 1'000'000'000 + sb.st_mtim.tv_nsec;
  return f;
}

}  // namespace drd::replication
