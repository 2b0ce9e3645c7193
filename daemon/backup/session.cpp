#include "daemon/backup/session.hpp"

#include <sys/stat.h>

namespace drd::backup {

namespace fs = std::filesystem;

Result<BackupSettings> BackupSettings::from_config(const BackupConfig& cfg) {
  BackupSettings s;
  s.directory = cfg.directory;
  if (cfg.compression_algorithm != "zstd")
    return make_error(Errc::invalid_argument, "backup.compression.algorithm '" + cfg.compression_algorithm +
                                                  "' is not supported (only zstd)");
  if (cfg.compression_level < -7 || cfg.compression_level > 22)
    return make_error(Errc::invalid_argument, "backup.compression.level " + std::to_string(cfg.compression_level) +
                                                  " is outside zstd's range (-7..22)");
  s.level = cfg.compression_level;
  s.threads = cfg.compression_threads;
  if (cfg.key_file) {
    auto k = load_master_key(*cfg.key_file);
    if (!k) return k.error();
    s.key.emplace(k.value());
  }
  return s;
}

PipelineOptions BackupSettings::pipeline() const {
  PipelineOptions o;
  o.level = level;
  o.threads = threads;
  o.key = key_ptr();
  o.chunk_size = chunk_size;
  o.open_output = open_output;
  return o;
}

Result<std::unique_ptr<BackupSession>> BackupSession::begin(const BackupSettings& s, const NewBackup& info) {
  std::error_code ec;
  if (!fs::exists(s.directory, ec)) {
    fs::create_directories(s.directory, ec);
    if (ec) return make_error(Errc::io, "cannot create backup directory " + s.directory.string() + ": " + ec.message());
    ::chmod(s.directory.c_str(), 0700);
  }
  std::unique_ptr<BackupSession> ss(new BackupSession());
  ss->dir_ = s.directory;
  Manifest& m = ss->m_;
  m.id = info.id.empty() ? new_backup_id(info.now, info.node) : info.id;
  m.name = info.name;
  m.node = info.node;
  m.engine = info.engine;
  m.kind = info.kind;
  m.parent = info.parent;
  m.content = info.content;
  m.created_at = info.now;
  m.compression_level = s.level;
  m.encrypted = s.key.has_value();
  m.key_id = s.key ? s.key->id() : "";
  m.data_file = m.id + ".drdbk";
  auto w = BackupWriter::create(s.directory / m.data_file, s.pipeline());
  if (!w) return w.error();
  ss->writer_ = std::move(w.value());
  return ss;
}

BackupSession::~BackupSession() = default;  // the writer removes its partial when uncommitted

Status BackupSession::write(const void* p, std::size_t n) { return writer_->write(p, n); }

Result<Manifest> BackupSession::finish(const std::string& source_position) {
  auto st = writer_->commit();
  if (!st) return st.error();
  m_.source_position = source_position;
  m_.source_bytes = st->source_bytes;
  m_.size_bytes = st->size_bytes;
  m_.plaintext_sha256 = st->plaintext_sha256;
  m_.file_sha256 = st->file_sha256;
  if (auto s = write_manifest(dir_, m_); !s) {
    std::error_code ec;
    fs::remove(dir_ / m_.data_file, ec);
    return s.error();
  }
  return m_;
}

fs::path data_path(const fs::path& dir, const Manifest& m) { return dir / m.data_file; }

Status remove_backup_files(const fs::path& dir, const Manifest& m) {
  std::error_code ec;
  // Manifest first: a data file without a manifest is ignored by scans, the reverse would not be.
  fs::remove(manifest_path(dir, m.id), ec);
  if (ec) return make_error(Errc::io, "cannot remove " + manifest_path(dir, m.id).string() + ": " + ec.message());
  fs::remove(dir / m.data_file, ec);
  if (ec) return make_error(Errc::io, "cannot remove " + (dir / m.data_file).string() + ": " + ec.message());
  fs::remove_all(dir / m.id, ec);  // incremental segment folder, if any
  return ok_status();
}

std::size_t remove_stale_partials(const fs::path& dir) {
  std::vector<fs::path> stale;  // collected first: removing while iterating is undefined
  std::error_code ec;
  for (fs::recursive_directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    auto name = it->path().filename().string();
    if (name == "pg-wal-spool" && it->is_directory(ec)) {  // pg_receivewal's own live .partial files
      it.disable_recursion_pending();
      continue;
    }
    auto ends = [&](const std::string& suf) {
      return name.size() >= suf.size() && name.compare(name.size() - suf.size(), suf.size(), suf) == 0;
    };
    if (it->is_regular_file() && (ends(".partial") || ends(".snapshot.tmp"))) stale.push_back(it->path());
  }
  std::size_t n = 0;
  for (auto& p : stale) {
    std::error_code rm;
    if (fs::remove(p, rm)) ++n;
  }
  return n;
}

}  // namespace drd::backup
