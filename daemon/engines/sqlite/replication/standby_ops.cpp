#include "daemon/engines/sqlite/replication/standby_ops.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <optional>
#include <vector>

#include "daemon/engines/sqlite/replication/position_file.hpp"
#include "daemon/engines/sqlite/replication/sqlite_replicator.hpp"
#include "daemon/engines/sqlite/replication/sqlite_util.hpp"
#include "daemon/engines/sqlite/replication/wal_writer.hpp"

namespace drd::replication {

namespace fs = std::filesystem;

namespace {

std::uintmax_t size_or_zero(const fs::path& p) {
  std::error_code ec;
  auto n = fs::file_size(p, ec);
  return ec ? 0 : n;
}

bool path_exists(const fs::path& p) {
  std::error_code ec;
  return fs::exists(p, ec);
}

// "pid 123 (name), ..." for every process with `file` open, from /proc: what an
// operator (or a test log) needs to know when a standby's WAL is written behind drd.
std::string holders_of(const fs::path& file) {
  std::error_code ec;
  const auto want = fs::weakly_canonical(file, ec);
  std::string out;
  for (auto& proc : fs::directory_iterator("/proc", ec)) {
    const auto pid = proc.path().filename().string();
    if (pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos) continue;
    std::error_code e2;
    for (auto& fd : fs::directory_iterator(proc.path() / "fd", e2)) {
      std::error_code e3;
      if (fs::read_symlink(fd.path(), e3) != want) continue;
      std::string comm;
      std::ifstream(proc.path() / "comm") >> comm;
      out += (out.empty() ? "" : ", ") + ("pid " + pid + " (" + comm + ")");
      break;
    }
  }
  return out;
}

// After the last connection closes, SQLite deletes -wal and -shm; an empty
// -wal left behind (e.g. by a persistent-WAL setting) carries nothing and is
// removed. A non-empty one would hold frames not yet in the database.
Status clear_empty_sidecars(const fs::path& db) {
  auto wal = with_suffix(db, "-wal");
  if (path_exists(wal) && size_or_zero(wal) > 0) {
    const auto who = holders_of(wal);
    return make_error(Errc::io, "WAL " + wal.string() + " still holds " + std::to_string(size_or_zero(wal)) +
                                    " bytes after a TRUNCATE checkpoint" +
                                    (who.empty() ? std::string(" (no process has it open)") : "; open in " + who),
                      "another process may have the database open");
  }
  if (auto s = remove_if_exists(wal); !s) return s;
  return remove_if_exists(with_suffix(db, "-shm"));
}

}  // namespace

Status recover_standby(const fs::path& db) {
  auto wal = with_suffix(db, "-wal");
  if (!path_exists(wal)) return remove_if_exists(with_suffix(db, "-shm"));
  if (size_or_zero(wal) > 0) {
    auto d = SqliteDb::open(db, SQLITE_OPEN_READWRITE);
    if (!d) return d.error();
    d->busy_timeout(1000);
    auto cp = d->checkpoint(SQLITE_CHECKPOINT_TRUNCATE);
    if (!cp) return cp.error();
    if (cp->rc != SQLITE_OK)
      return make_error(Errc::conflict, "cannot checkpoint leftover WAL of standby " + db.string() + " (busy)",
                        "another process has the standby open");
    d->close();
    // Frames SQLite did not take even with TRUNCATE: an apply cut short (drd killed while
    // writing them) left a transaction without its commit frame. They were never part of
    // the standby: apply() saves the position only after its own checkpoint, so they are
    // shipped again from the position. Set aside (never applied) rather than deleted.
    if (size_or_zero(wal) > 0 && holders_of(wal).empty()) {
      std::error_code ec;
      fs::rename(wal, with_suffix(db, "-wal.drd-incomplete"), ec);
      if (ec) return make_error(Errc::io, "cannot set aside the incomplete WAL " + wal.string() + ": " + ec.message());
    }
  }
  return clear_empty_sidecars(db);
}

Result<DbFileInfo> read_db_header(const fs::path& db) {
  std::ifstream in(db, std::ios::binary);
  unsigned char h[100] = {};
  if (!in || !in.read(reinterpret_cast<char*>(h), sizeof h))
    return make_error(Errc::corrupt, "cannot read the 100-byte SQLite header of " + db.string());
  static const char kMagic[] = "SQLite format 3";
  if (std::string(reinterpret_cast<char*>(h), 15) != std::string(kMagic, 15))
    return make_error(Errc::corrupt, db.string() + " is not an SQLite database");
  DbFileInfo info;
  std::uint32_t ps = (std::uint32_t(h[16]) << 8) | h[17];
  info.page_size = ps == 1 ? 65536 : ps;
  info.wal_mode = h[18] == 2 && h[19] == 2;
  return info;
}

Status checkpoint_standby(const fs::path& db, std::uint32_t frames) {
  auto d = SqliteDb::open(db, SQLITE_OPEN_READWRITE);
  if (!d) return d.error();
  d->busy_timeout(1000);
  if (auto s = d->exec("PRAGMA synchronous=FULL"); !s) return s;
  // PASSIVE first: its frame count tells whether SQLite's recovery accepted
  // every frame written (a mismatch means the WAL writer is wrong, and the
  // standby must not be recorded as advanced).
  auto cp = d->checkpoint(SQLITE_CHECKPOINT_PASSIVE);
  if (!cp) return cp.error();
  if (cp->rc != SQLITE_OK || cp->log_frames != static_cast<int>(frames) || cp->checkpointed_frames != cp->log_frames)
    return make_error(Errc::corrupt, "standby " + db.string() + " accepted " + std::to_string(cp->log_frames) +
                                         " of " + std::to_string(frames) + " WAL frames (checkpointed " +
                                         std::to_string(cp->checkpointed_frames) + ")");
  auto tr = d->checkpoint(SQLITE_CHECKPOINT_TRUNCATE);
  if (!tr) return tr.error();
  if (tr->rc != SQLITE_OK)
    return make_error(Errc::conflict, "TRUNCATE checkpoint of standby " + db.string() + " was busy",
                      "another process has the standby open");
  d->close();
  return clear_empty_sidecars(db);
}

Status seed_from_connection(sqlite3* src, const std::string& src_name, const fs::path& dst) {
  auto tmp = with_suffix(dst, ".drd-seed");
  for (const char* suf : {"", "-wal", "-shm", "-journal"})
    if (auto s = remove_if_exists(with_suffix(tmp, suf)); !s) return s;
  {
    auto d = SqliteDb::open(tmp, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    if (!d) return d.error();
    sqlite3_backup* b = sqlite3_backup_init(d->get(), "main", src, "main");
    if (!b) return d->error("backup of " + src_name + " into", sqlite3_errcode(d->get()));
    int rc = sqlite3_backup_step(b, -1);
    int frc = sqlite3_backup_finish(b);
    if (rc != SQLITE_DONE) return d->error("backup of " + src_name + " into", rc);
    if (frc != SQLITE_OK) return d->error("backup of " + src_name + " into", frc);
    auto mode = d->query_text("PRAGMA journal_mode=WAL");
    if (!mode) return mode.error();
    if (*mode != "wal")
      return make_error(Errc::io, "cannot switch seed " + tmp.string() + " to WAL mode (got " + *mode + ")");
    auto qc = d->query_text("PRAGMA quick_check");
    if (!qc) return qc.error();
    if (*qc != "ok") return make_error(Errc::corrupt, "seed copy " + tmp.string() + " fails quick_check: " + *qc);
    d->close();
  }
  if (auto s = clear_empty_sidecars(tmp); !s) return s;
  if (auto s = fsync_path(tmp); !s) return s;
  // Old -wal/-shm of dst belong to the old content and must not be applied to the new file.
  if (auto s = remove_if_exists(with_suffix(dst, "-wal")); !s) return s;
  if (auto s = remove_if_exists(with_suffix(dst, "-shm")); !s) return s;
  if (std::rename(tmp.c_str(), dst.c_str()) != 0)
    return make_error(Errc::io, "cannot rename seed " + tmp.string() + " over " + dst.string());
  return fsync_dir_of(dst);
}

Result<PatchStats> patch_standby(const fs::path& dst, std::uint32_t page_size, std::uint32_t pages,
                                 const PageSource& source_page, const std::function<Status()>& before_write) {
  if (pages == 0) return make_error(Errc::conflict, "the snapshot has no pages");
  if (auto st = recover_standby(dst); !st) return st.error();
  auto info = read_db_header(dst);
  if (!info) return make_error(Errc::conflict, info.error().message);
  if (info->page_size != page_size || !info->wal_mode)
    return make_error(Errc::conflict, "standby " + dst.string() + " has page size " + std::to_string(info->page_size) +
                                          (info->wal_mode ? "" : " and is not in WAL mode") + ", the primary " +
                                          std::to_string(page_size));
  std::error_code ec;
  const auto size = fs::file_size(dst, ec);
  if (ec || size % page_size != 0)
    return make_error(Errc::conflict, "standby " + dst.string() + " is not a whole number of pages");
  const std::uint64_t dst_pages = size / page_size;
  int fd = ::open(dst.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return make_error(Errc::conflict, "cannot open " + dst.string() + ": " + std::strerror(errno));
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};

  PatchStats stats;
  stats.pages = pages;
  std::vector<unsigned char> src(page_size), cur(page_size), pending(page_size);
  std::uint32_t pending_pgno = 0;
  std::optional<StandaloneWalWriter> wal;
  auto append = [&](std::uint32_t pgno, std::uint32_t commit, const unsigned char* data) -> Status {
    if (!wal) {
      auto w = StandaloneWalWriter::create(with_suffix(dst, "-wal"), page_size);
      if (!w) return w.error();
      wal.emplace(std::move(*w));
    }
    stats.pages_written += 1;
    stats.bytes_written += page_size;
    return wal->append(pgno, commit, data);
  };
  auto fail = [&](const Error& e) -> Result<PatchStats> {
    if (wal) wal->abandon();
    return e;
  };
  for (std::uint32_t pgno = 1; pgno <= pages; ++pgno) {
    if (auto st = source_page(pgno, src.data()); !st) return fail(st.error());
    bool same = false;
    if (pgno <= dst_pages) {
      ssize_t got = ::pread(fd, cur.data(), page_size, static_cast<off_t>(pgno - 1) * page_size);
      if (got != static_cast<ssize_t>(page_size))
        return fail(make_error(Errc::conflict, "cannot read page " + std::to_string(pgno) + " of " + dst.string()));
      same = std::memcmp(cur.data(), src.data(), page_size) == 0;
    }
    if (same) continue;
    // One frame behind: the last differing page becomes the commit frame.
    if (pending_pgno != 0)
      if (auto st = append(pending_pgno, 0, pending.data()); !st) return fail(st.error());
    pending_pgno = pgno;
    pending.swap(src);
  }
  // Every source page is read: is what was read still the snapshot? Before the commit frame
  // exists, so a failed check leaves nothing SQLite would ever apply.
  if (auto st = before_write(); !st) return fail(st.error());
  if (pending_pgno == 0 && dst_pages != pages) {
    // Only the size differs: page 1 (unchanged) carries the commit and the new size.
    if (auto st = source_page(1, pending.data()); !st) return fail(st.error());
    pending_pgno = 1;
  }
  if (pending_pgno == 0) return stats;  // already equal: nothing written
  if (auto st = append(pending_pgno, pages, pending.data()); !st) return fail(st.error());
  if (auto st = wal->finish(); !st) return fail(st.error());
  if (auto st = checkpoint_standby(dst, wal->frames()); !st) return st.error();
  {
    auto d = SqliteDb::open(dst, SQLITE_OPEN_READWRITE);
    if (!d) return d.error();
    auto qc = d->query_text("PRAGMA quick_check");
    if (!qc) return qc.error();
    if (*qc != "ok") return make_error(Errc::corrupt, "standby " + dst.string() + " fails quick_check after an incremental seed: " + *qc);
  }
  if (auto s = clear_empty_sidecars(dst); !s) return s.error();
  return stats;
}

Status seed_copy(const fs::path& src, const fs::path& dst) {
  auto d = SqliteDb::open(src, SQLITE_OPEN_READONLY);
  if (!d) return d.error();
  d->busy_timeout(5000);
  // One read transaction for the whole copy: a consistent snapshot while writers continue.
  if (auto s = d->exec("BEGIN"); !s) return s;
  if (auto n = d->query_int("SELECT count(*) FROM sqlite_master"); !n) return n.error();
  auto s = seed_from_connection(d->get(), src.string(), dst);
  (void)d->exec("COMMIT");
  return s;
}

Status finalize_standby_for_promotion(const fs::path& db) {
  if (!path_exists(db)) return make_error(Errc::not_found, "standby " + db.string() + " does not exist");
  {
    auto d = SqliteDb::open(db, SQLITE_OPEN_READWRITE);
    if (!d) return d.error();
    d->busy_timeout(2000);
    if (path_exists(with_suffix(db, "-wal"))) {
      auto cp = d->checkpoint(SQLITE_CHECKPOINT_TRUNCATE);
      if (!cp) return cp.error();
      if (cp->rc != SQLITE_OK)
        return make_error(Errc::conflict, "cannot checkpoint " + db.string() + " for promotion (busy)");
    }
    auto mode = d->query_text("PRAGMA journal_mode");
    if (!mode) return mode.error();
    if (*mode != "wal") {
      auto m2 = d->query_text("PRAGMA journal_mode=WAL");
      if (!m2) return m2.error();
      if (*m2 != "wal") return make_error(Errc::io, "cannot switch " + db.string() + " to WAL mode");
    }
    auto qc = d->query_text("PRAGMA quick_check");
    if (!qc) return qc.error();
    if (*qc != "ok") return make_error(Errc::corrupt, db.string() + " fails quick_check: " + *qc);
  }
  if (auto s = clear_empty_sidecars(db); !s) return s;
  // It is no longer a standby: its position file would only mislead a later replicator.
  return remove_if_exists(position_path(db));
}

}  // namespace drd::replication
