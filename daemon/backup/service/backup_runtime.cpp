#include "daemon/backup/service/backup_runtime.hpp"

#include <sys/stat.h>

#include "daemon/backup/container.hpp"
#include "daemon/backup/sqlite_util.hpp"

namespace drd::bkrt {

namespace fs = std::filesystem;

namespace {

// Thrown from a progress callback to abort a backup at shutdown; the backup engine's
// RAII cleanup removes the partial files on the way out.
struct Cancelled {};

bool ends_with(const std::string& s, const std::string& suf) {
  return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}

}  // namespace

Result<std::vector<std::string>> prepare_directory(const fs::path& dir) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) {
    fs::create_directories(dir, ec);
    if (ec) return make_error(Errc::io, "cannot create backup directory " + dir.string() + ": " + ec.message());
    ::chmod(dir.c_str(), 0750);
  } else if (!fs::is_directory(dir, ec)) {
    return make_error(Errc::invalid_argument, "backup directory " + dir.string() + " exists but is not a folder");
  }
  std::vector<std::string> removed;
  // Named first for the log; remove_stale_partials then removes exactly these kinds.
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    auto name = it->path().filename().string();
    if (it->is_regular_file() && (ends_with(name, ".partial") || ends_with(name, ".snapshot.tmp")))
      removed.push_back(it->path().string());
  }
  // WAL spools of an archiver that did not get to cut them (wal_archive.hpp).
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    auto name = it->path().filename().string();
    std::error_code rm;
    if (name.rfind(".wal-", 0) == 0 && ends_with(name, ".spool") && fs::remove(it->path(), rm))
      removed.push_back(it->path().string());
  }
  backup::remove_stale_partials(dir);
  // Scratch folders of a verify that was interrupted.
  std::vector<fs::path> scratch;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec))
    if (it->is_directory() && it->path().filename().string().rfind("drd-verify-", 0) == 0) scratch.push_back(it->path());
  for (auto& p : scratch) {
    std::error_code rm;
    fs::remove_all(p, rm);
    if (!rm) removed.push_back(p.string());
  }
  return removed;
}

Result<backup::Manifest> take_sqlite_backup(const BackupConfig& cfg, const fs::path& db, backup::NewBackup info,
                                            const backup::Progress& progress, const std::atomic<bool>* cancel) {
  auto settings = backup::BackupSettings::from_config(cfg);
  if (!settings) return settings.error();
  backup::Progress wrapped = [&](std::uint64_t done, std::uint64_t total, const char* phase) {
    if (cancel && cancel->load()) throw Cancelled{};
    if (progress) progress(done, total, phase);
  };
  try {
    return backup::backup_sqlite(settings.value(), db, std::move(info), wrapped);
  } catch (const Cancelled&) {
    return make_error(Errc::unavailable, "backup of " + db.string() + " cancelled: drd is stopping");
  }
}

Status snapshot_sqlite(const fs::path& src, const fs::path& dst) {
  auto in = backup::SqliteConn::open(src, SQLITE_OPEN_READONLY);
  if (!in) return in.error();
  auto out = backup::SqliteConn::open(dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
  if (!out) return out.error();
  sqlite3_backup* b = sqlite3_backup_init(out->get(), "main", in->get(), "main");
  if (!b) return make_error(Errc::io, "cannot start a copy of " + src.string() + ": " + out->errmsg());
  int rc = sqlite3_backup_step(b, -1);
  sqlite3_backup_finish(b);
  if (rc != SQLITE_DONE)
    return make_error(Errc::io, "copy of " + src.string() + " into " + dst.string() + " failed: " + sqlite3_errstr(rc));
  if (auto c = out->close(); !c) return c.error();
  return ok_status();
}

KeyState load_key(const BackupConfig& cfg) {
  KeyState k;
  if (!cfg.key_file) return k;
  auto key = backup::load_master_key(*cfg.key_file);
  if (key) k.key.emplace(key.value());
  else k.error = key.error();
  return k;
}

bool is_encrypted(const backup::BackupRef& ref) {
  if (ref.plain_sql) return false;
  if (ref.manifest) return ref.manifest->encrypted;
  auto info = backup::peek_container(ref.data);
  return info && info->encrypted;
}

backup::BackupRef ref_from_catalog(const fs::path& data_file, const fs::path& manifest_file,
                                   const backup::Manifest& catalog_copy, std::string* manifest_problem) {
  backup::BackupRef ref;
  ref.data = data_file;  // a missing data file is for verify/restore to report
  auto m = backup::read_manifest(manifest_file);
  if (m) {
    ref.manifest = m.value();
  } else {
    if (manifest_problem) *manifest_problem = m.error().message;
    ref.manifest = catalog_copy;
  }
  return ref;
}

Result<SysTime> parse_restore_time(const std::string& text) {
  std::string t = text;
  // "2026-11-24 05:29:20" (what `date -u '+%F %T'` prints) is taken as UTC too.
  if (t.size() >= 19 && t[10] == ' ') t[10] = 'T';
  auto r = backup::parse_time_utc(t);
  if (!r)
    return make_error(Errc::invalid_argument, "to_time '" + text +
                                                  "' is not a UTC time like 2026-11-24T05:29:20Z or \"2026-11-24 05:29:20\"");
  return r;
}

bool same_file(const fs::path& a, const fs::path& b) {
  std::error_code e1, e2;
  auto ca = fs::weakly_canonical(a, e1), cb = fs::weakly_canonical(b, e2);
  if (e1 || e2) return a.lexically_normal() == b.lexically_normal();
  return ca == cb;
}

std::string failed_checks(const backup::VerifyReport& r) {
  std::string out;
  for (auto& c : r.checks) {
    if (c.ok) continue;
    if (!out.empty()) out += "; ";
    out += c.name + ": " + c.detail;
  }
  return out;
}

Result<OpenedBackup> open_backup(const BackupConfig& cfg, const std::optional<backup::CatalogEntry>& entry,
                                 const std::filesystem::path& path, const std::string& verb,
                                 std::string* manifest_problem) {
  OpenedBackup out;
  if (entry) {
    out.ref = ref_from_catalog(entry->data_file(), entry->manifest_file(), entry->manifest, manifest_problem);
  } else {
    auto r = backup::resolve_backup(path);
    if (!r) return r.error();
    out.ref = r.value();
  }
  out.key = load_key(cfg);
  if (out.key.error && is_encrypted(out.ref))
    return make_error(out.key.error->code, "cannot " + verb + " an encrypted backup: " + out.key.error->message,
                      out.key.error->hint);
  return out;
}

}  // namespace drd::bkrt
