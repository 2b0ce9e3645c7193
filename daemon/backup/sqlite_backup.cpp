#include "daemon/backup/sqlite_backup.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <fstream>

#include "daemon/backup/sqlite_util.hpp"
#include "daemon/backup/util.hpp"

namespace drd::backup {

namespace fs = std::filesystem;

namespace {

std::uint32_t be32(const unsigned char* p) {
  return (std::uint32_t(p[0]) << 24) | (std::uint32_t(p[1]) << 16) | (std::uint32_t(p[2]) << 8) | p[3];
}

// Where the snapshot stands, for the manifest. Called inside the snapshot's read transaction.
// In WAL mode the WAL header (checkpoint sequence, salts) identifies the WAL generation and the
// WAL size bounds the frames the snapshot can include.
std::string sqlite_position(sqlite3* db, const fs::path& db_path) {
  long long pages = 0, page_size = 0;
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db, "PRAGMA page_count", -1, &st, nullptr) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
    pages = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  if (sqlite3_prepare_v2(db, "PRAGMA page_size", -1, &st, nullptr) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
    page_size = sqlite3_column_int64(st, 0);
  sqlite3_finalize(st);
  std::string pos = "pages=" + std::to_string(pages) + " page_size=" + std::to_string(page_size);
  fs::path wal = db_path.string() + "-wal";
  std::ifstream in(wal, std::ios::binary);
  unsigned char h[32];
  if (in && in.read(reinterpret_cast<char*>(h), 32) && (be32(h) & 0xfffffffe) == 0x377f0682) {
    std::uint32_t ps = be32(h + 8);
    std::error_code ec;
    auto size = fs::file_size(wal, ec);
    std::uint64_t frames = ps && size > 32 ? (size - 32) / (24 + ps) : 0;
    char buf[160];
    std::snprintf(buf, sizeof buf, " wal_ckpt=%u wal_salt=%08x-%08x wal_frames<=%llu", be32(h + 12), be32(h + 16),
                  be32(h + 20), static_cast<unsigned long long>(frames));
    pos += buf;
  }
  return pos;
}

void remove_db_files(const fs::path& p) {
  std::error_code ec;
  for (const char* suf : {"", "-wal", "-shm", "-journal"}) fs::remove(p.string() + suf, ec);
}

// Feeds a file's bytes to `sink` 1 MiB at a time.
Status stream_file(const fs::path& p, const std::function<Status(const void*, std::size_t)>& sink) {
  int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno_error(Errc::io, "cannot open", p, errno);
  // Closed on every path, including an exception from `sink` (the daemon aborts a
  // backup at shutdown by throwing from its progress callback).
  struct Fd {
    int fd;
    ~Fd() { ::close(fd); }
  } guard{fd};
  std::vector<char> buf(1 << 20);
  for (;;) {
    ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno_error(Errc::io, "read failed for", p, errno);
    if (n == 0) break;
    if (auto s = sink(buf.data(), static_cast<std::size_t>(n)); !s) return s;
  }
  return ok_status();
}

// Executes SQL text fed in pieces, one complete statement at a time, so memory is bounded by
// the largest statement rather than the file.
class SqlFeeder {
 public:
  explicit SqlFeeder(sqlite3* db) : db_(db) {}
  Status feed(const char* p, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) {
      pending_.push_back(p[i]);
      if (p[i] == ';' && sqlite3_complete(pending_.c_str())) {
        if (auto s = run(); !s) return s;
      }
    }
    return ok_status();
  }
  Status finish() {
    if (pending_.find_first_not_of(" \t\r\n") == std::string::npos) return ok_status();
    if (!sqlite3_complete(pending_.c_str()))
      return make_error(Errc::corrupt, "SQL ends inside a statement: " + pending_.substr(0, 80));
    return run();
  }
  std::uint64_t statements() const { return count_; }

 private:
  Status run() {
    char* err = nullptr;
    int rc = sqlite3_exec(db_, pending_.c_str(), nullptr, nullptr, &err);
    if (rc != SQLITE_OK) {
      std::string msg = err ? err : sqlite3_errstr(rc);
      sqlite3_free(err);
      return make_error(Errc::invalid_argument, "SQL statement " + std::to_string(count_ + 1) + " failed: " + msg +
                                                    " (in: " + pending_.substr(0, 80) + ")");
    }
    ++count_;
    pending_.clear();
    return ok_status();
  }
  sqlite3* db_;
  std::string pending_;
  std::uint64_t count_ = 0;
};

bool has_suffix(const std::string& s, const std::string& suf) {
  return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}

// Writes the plaintext of `ref` into a fresh SQLite file at `tmp` (a database image, or SQL
// executed into a new database). Checks the manifest's checksums when there is one.
Result<std::uint64_t> materialize(const BackupRef& ref, const MasterKey* key, const fs::path& tmp,
                                  const Progress& progress) {
  remove_db_files(tmp);
  bool sql = ref.plain_sql || (ref.manifest && ref.manifest->content == "sql");
  std::uint64_t total = ref.manifest ? ref.manifest->source_bytes : 0, done = 0;
  auto tick = [&](std::size_t n) {
    done += n;
    if (progress) progress(done, total, "restore");
  };
  if (sql) {
    auto db = SqliteConn::open(tmp, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    if (!db) return db.error();
    SqlFeeder feeder(db->get());
    Status s = ok_status();
    if (ref.plain_sql) {
      s = stream_file(ref.data, [&](const void* p, std::size_t n) {
        tick(n);
        return feeder.feed(static_cast<const char*>(p), n);
      });
    } else {
      auto rs = read_backup(ref.data, key, [&](const std::uint8_t* p, std::size_t n) {
        tick(n);
        return feeder.feed(reinterpret_cast<const char*>(p), n);
      });
      if (!rs) s = rs.error();
      else if (ref.manifest && rs->plaintext_sha256 != ref.manifest->plaintext_sha256)
        s = make_error(Errc::corrupt, "restored bytes of " + ref.data.string() + " do not match the manifest's plaintext_sha256");
    }
    if (s) s = feeder.finish();
    if (auto c = db->close(); s && !c) s = c;
    if (!s) return s.error();
    return done;
  }
  auto reader = BackupReader::open(ref.data, key);  // wrong key: fails here, nothing written
  if (!reader) return reader.error();
  auto out = open_output_file(tmp);
  if (!out) return out.error();
  auto rs = reader.value()->read_all([&](const std::uint8_t* p, std::size_t n) {
    tick(n);
    return out.value()->write(p, n);
  });
  if (!rs) return rs.error();
  if (ref.manifest) {
    if (rs->file_sha256 != ref.manifest->file_sha256)
      return make_error(Errc::corrupt, ref.data.string() + " does not match the manifest's file_sha256");
    if (rs->plaintext_sha256 != ref.manifest->plaintext_sha256)
      return make_error(Errc::corrupt, "restored bytes of " + ref.data.string() +
                                           " do not match the manifest's plaintext_sha256");
  }
  if (auto s = out.value()->sync(); !s) return s.error();
  if (auto s = out.value()->close(); !s) return s.error();
  return rs->plaintext_bytes;
}

}  // namespace

Result<Manifest> backup_sqlite(const BackupSettings& s, const fs::path& db_path, NewBackup info,
                               const Progress& progress) {
  info.engine = "sqlite";
  if (info.content.empty()) info.content = "sqlite-db";
  if (!fs::exists(db_path)) return make_error(Errc::not_found, "SQLite database " + db_path.string() + " does not exist");
  auto session = BackupSession::begin(s, info);
  if (!session) return session.error();
  fs::path snap = s.directory / (session.value()->manifest().id + ".snapshot.tmp");
  struct Cleanup {
    fs::path p;
    ~Cleanup() { remove_db_files(p); }
  } cleanup{snap};

  std::string position;
  {
    auto src = SqliteConn::open(db_path, SQLITE_OPEN_READONLY);
    if (!src) return src.error();
    // One read transaction for the position and the copy, so both describe the same snapshot.
    if (auto r = src->exec("BEGIN; SELECT count(*) FROM sqlite_master;"); !r)
      return make_error(Errc::io, "cannot start a read transaction on " + db_path.string() + ": " + r.error().message);
    position = sqlite_position(src->get(), db_path);
    auto dst = SqliteConn::open(snap, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    if (!dst) return dst.error();
    // The snapshot is a scratch copy read once and removed: no journal, no fsync of 1 GiB that
    // only the page cache ever needs (the finished backup file is synced).
    (void)dst->exec("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;");
    sqlite3_backup* b = sqlite3_backup_init(dst->get(), "main", src->get(), "main");
    if (!b) return make_error(Errc::io, "cannot start SQLite online backup of " + db_path.string() + ": " + dst->errmsg());
    int rc = sqlite3_backup_step(b, -1);
    sqlite3_backup_finish(b);
    if (rc != SQLITE_DONE)
      return make_error(rc == SQLITE_FULL ? Errc::io : Errc::io, "SQLite online backup of " + db_path.string() + " into " +
                                                                    snap.string() + " failed: " + sqlite3_errstr(rc));
    if (auto c = dst->close(); !c) return c.error();
    (void)src->exec("COMMIT");
  }
  std::error_code ec;
  std::uint64_t total = fs::file_size(snap, ec), done = 0;
  auto st = stream_file(snap, [&](const void* p, std::size_t n) {
    done += n;
    if (progress) progress(done, total, "backup");
    return session.value()->write(p, n);
  });
  if (!st) return st.error();
  return session.value()->finish(position);
}

Result<BackupRef> resolve_backup(const fs::path& p) {
  BackupRef ref;
  std::string s = p.string();
  std::error_code ec;
  if (!fs::exists(p, ec)) return make_error(Errc::not_found, "backup " + s + " does not exist");
  if (has_suffix(s, ".manifest.json")) {
    auto m = read_manifest(p);
    if (!m) return m.error();
    ref.data = p.parent_path() / m->data_file;
    ref.manifest = m.value();
    if (!fs::exists(ref.data, ec))
      return make_error(Errc::not_found, "data file " + ref.data.string() + " named by " + s + " is missing");
    return ref;
  }
  if (has_suffix(s, ".sql")) {
    ref.data = p;
    ref.plain_sql = true;
    return ref;
  }
  ref.data = p;
  if (has_suffix(s, ".drdbk")) {
    fs::path mp = s.substr(0, s.size() - 6) + ".manifest.json";
    if (fs::exists(mp, ec)) {
      auto m = read_manifest(mp);
      if (!m) return m.error();
      ref.manifest = m.value();
    }
  }
  auto info = peek_container(p);
  if (!info) return info.error();
  return ref;
}

Result<std::string> sqlite_integrity_check(const fs::path& db_path) {
  auto db = SqliteConn::open(db_path, SQLITE_OPEN_READWRITE);
  if (!db) return db.error();
  sqlite3_stmt* st = nullptr;
  if (sqlite3_prepare_v2(db->get(), "PRAGMA integrity_check(20)", -1, &st, nullptr) != SQLITE_OK)
    return std::string("integrity_check could not run: ") + db->errmsg();
  std::string out;
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    if (!out.empty()) out += "; ";
    auto* t = sqlite3_column_text(st, 0);
    out += t ? reinterpret_cast<const char*>(t) : "";
  }
  if (rc != SQLITE_DONE) out = (out.empty() ? "" : out + "; ") + "integrity_check stopped: " + db->errmsg();
  sqlite3_finalize(st);
  if (out.empty()) out = "integrity_check returned nothing";
  return out;
}

Result<RestoreResult> restore_sqlite(const BackupRef& ref, const fs::path& target, const RestoreOptions& opts,
                                     const Progress& progress) {
  return detail::restore_sqlite_with(ref, target, opts, progress, {});
}

Result<RestoreResult> detail::restore_sqlite_with(const BackupRef& ref, const fs::path& target, const RestoreOptions& opts,
                                                  const Progress& progress,
                                                  const std::function<Status(const fs::path&)>& before_check) {
  std::error_code ec;
  if (fs::exists(target, ec) && !opts.allow_overwrite)
    return make_error(Errc::refused, "restore target " + target.string() + " already exists",
                      "pass --force to replace it (its current contents will be lost)");
  if (ref.manifest && ref.manifest->engine != "sqlite")
    return make_error(Errc::invalid_argument, "backup " + ref.manifest->id + " is a " + ref.manifest->engine +
                                                  " backup, not SQLite");
  if (ref.manifest && ref.manifest->kind == "incremental")
    return make_error(Errc::invalid_argument, "backup " + ref.manifest->id + " is incremental; restore its parent " +
                                                  ref.manifest->parent + " with to_time instead");
  fs::path tmp = target.string() + ".restore-tmp";
  struct Cleanup {
    fs::path p;
    bool armed = true;
    ~Cleanup() {
      if (armed) remove_db_files(p);
    }
  } cleanup{tmp};
  auto bytes = materialize(ref, opts.key, tmp, progress);
  if (!bytes) return bytes.error();
  if (before_check) {
    if (auto s = before_check(tmp); !s) return s.error();
  }
  auto ic = sqlite_integrity_check(tmp);
  if (!ic) return ic.error();
  if (ic.value() != "ok")
    return make_error(Errc::corrupt, "restored database failed integrity_check: " + ic.value(),
                      "the target was left untouched");
  // integrity_check may have left a -wal behind if the image is in WAL mode; it is empty
  // after the last connection closed, so only the main file matters.
  if (auto s = fsync_path(tmp); !s) return s.error();
  // A stale -wal of the old target would be replayed onto the new file: remove it first.
  for (const char* suf : {"-wal", "-shm", "-journal"}) fs::remove(target.string() + suf, ec);
  fs::rename(tmp, target, ec);
  if (ec) return make_error(Errc::io, "cannot rename " + tmp.string() + " to " + target.string() + ": " + ec.message());
  cleanup.armed = false;
  for (const char* suf : {"-wal", "-shm"}) fs::remove(tmp.string() + suf, ec);
  (void)fsync_path(target.parent_path().empty() ? fs::path(".") : target.parent_path());
  RestoreResult r;
  r.restored_to = target;
  r.bytes = bytes.value();
  return r;
}

VerifyReport verify_backup(const BackupRef& ref, const MasterKey* key, const fs::path& scratch_dir) {
  VerifyReport rep;
  auto add = [&](std::string name, bool ok, std::string detail) {
    rep.checks.push_back(Check{std::move(name), ok, std::move(detail)});
    return ok;
  };
  const Manifest* m = ref.manifest ? &*ref.manifest : nullptr;
  rep.id = m ? m->id : ref.data.filename().string();
  if (ref.plain_sql) {
    add("manifest", true, "plain SQL file: no manifest or checksums to compare");
  } else if (m) {
    add("manifest", true, "format " + std::to_string(m->format_version) + ", " + m->engine + " " + m->kind);
  } else {
    add("manifest", false, "no manifest beside " + ref.data.string() + ": checksums cannot be compared");
  }
  std::error_code ec;
  auto size = fs::file_size(ref.data, ec);
  if (ec) {
    add("data_file", false, ref.data.string() + ": " + ec.message());
    rep.ok = false;
    return rep;
  }
  if (m) add("data_file", size == m->size_bytes, std::to_string(size) + " bytes" +
                              (size == m->size_bytes ? "" : ", manifest says " + std::to_string(m->size_bytes)));
  if (m) {
    Error err;
    std::string sha = sha256_hex_of_file(ref.data, &err);
    add("file_sha256", sha == m->file_sha256, sha.empty() ? err.message : sha == m->file_sha256 ? sha : "got " + sha + ", manifest says " + m->file_sha256);
  }
  if (m && m->engine != "sqlite") {
    add("test_restore", false, "verification of " + m->engine + " backups is not implemented by verify_backup");
  } else {
    fs::create_directories(scratch_dir, ec);
    std::string tmpl = (scratch_dir / "drd-verify-XXXXXX").string();
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    if (!::mkdtemp(buf.data())) {
      add("test_restore", false, "cannot create a scratch folder under " + scratch_dir.string() + ": " + std::strerror(errno));
    } else {
      fs::path scratch(buf.data());
      fs::path db = scratch / "restore.db";
      // Decrypt/decompress + checksum comparison happen in materialize(); split its verdicts.
      auto bytes = materialize(ref, key, db, {});
      if (!bytes) {
        const auto& msg = bytes.error().message;
        bool sum = msg.find("plaintext_sha256") != std::string::npos || msg.find("file_sha256") != std::string::npos;
        add(sum ? "plaintext_sha256" : "decrypt", false, msg);
      } else {
        add("decrypt", true, ref.plain_sql ? "not encrypted (plain SQL)" : "every chunk authenticated and decompressed");
        if (m) add("plaintext_sha256", true, m->plaintext_sha256);
        auto ic = sqlite_integrity_check(db);
        add("test_restore", ic.ok(), ic.ok() ? std::to_string(bytes.value()) + " bytes restored into a scratch database" : ic.error().message);
        if (ic) add("integrity_check", ic.value() == "ok", ic.value());
      }
      fs::remove_all(scratch, ec);
    }
  }
  rep.ok = !rep.checks.empty();
  for (auto& c : rep.checks) rep.ok = rep.ok && c.ok;
  return rep;
}

}  // namespace drd::backup
