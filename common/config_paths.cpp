#include "common/config_paths.hpp"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>

namespace drd {

namespace fs = std::filesystem;

namespace {

fs::path normal(const fs::path& p) {
  std::string s = p.lexically_normal().string();
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  return s;
}

}  // namespace

fs::path resolve_config_path(const fs::path& base, const fs::path& p) {
  return normal(p.is_absolute() ? p : base / p);
}

fs::path resolve_base_dir(const fs::path& config_folder, const std::string& written) {
  if (written.empty()) return normal(config_folder);
  return resolve_config_path(config_folder, written);
}

std::optional<std::string> tilde_problem(const std::string& written) {
  if (written.empty() || written[0] != '~') return std::nullopt;
  return "'" + written + "' starts with '~', which drd does not expand (no shell is involved); write the " +
         "absolute path, or one relative to base_dir (\"./" + written + "\" for a folder really named '" +
         written.substr(0, written.find('/')) + "')";
}

std::vector<ResolvedPath> resolved_paths(const Config& cfg) {
  std::vector<ResolvedPath> out;
  auto add = [&](std::string key, const fs::path& p) { out.push_back({std::move(key), p}); };
  auto opt = [&](std::string key, const std::optional<fs::path>& p) {
    if (p) add(std::move(key), *p);
  };
  add("base_dir", cfg.base_dir);
  add("state_dir", cfg.state_dir);
  add("control.socket", cfg.control.socket);
  opt("current_link", cfg.current_link);
  for (const auto& n : cfg.nodes) {
    const std::string k = "databases." + n.key;
    if (n.engine == Engine::sqlite) add(k + ".url", n.sqlite_path);
    opt(k + ".password_file", n.password_file);
    opt(k + ".data_dir", n.data_dir);
    opt(k + ".bin_dir", n.bin_dir);
  }
  add("backup.directory", cfg.backup.directory);
  opt("backup.encryption.key_file", cfg.backup.key_file);
  if (cfg.backup.pg_wal_archive || cfg.backup.pg_wal_spool)
    add("backup.pg_wal_archive.spool", cfg.backup.pg_wal_spool ? *cfg.backup.pg_wal_spool
                                                               : normal(cfg.backup.directory / "pg-wal-spool"));
  opt("http.token_file", cfg.http.token_file);
  opt("store.tls.ca_file", cfg.store.ca_file);
  opt("store.tls.cert_file", cfg.store.cert_file);
  opt("store.tls.key_file", cfg.store.key_file);
  opt("store.password_file", cfg.store.password_file);
  opt("store.peer_token_file", cfg.store.peer_token_file);
  return out;
}

LinkFacts inspect_link(const fs::path& link) {
  LinkFacts f;
  struct stat st {};
  if (::lstat(link.c_str(), &st) != 0) {
    if (errno == ENOENT) return f;  // missing (a missing folder on the way counts too)
    f.kind = LinkKind::unreadable;
    f.detail = std::strerror(errno);
    return f;
  }
  if (S_ISLNK(st.st_mode)) {
    f.kind = LinkKind::symlink;
    std::error_code ec;
    f.target = fs::read_symlink(link, ec);
    if (ec) {
      f.kind = LinkKind::unreadable;
      f.detail = ec.message();
    }
  } else if (S_ISREG(st.st_mode)) {
    f.kind = LinkKind::regular_file;
    f.size = static_cast<std::uintmax_t>(st.st_size);
  } else if (S_ISDIR(st.st_mode)) {
    f.kind = LinkKind::directory;
  } else {
    f.kind = LinkKind::other;
    f.detail = S_ISFIFO(st.st_mode)  ? "a FIFO"
               : S_ISSOCK(st.st_mode) ? "a socket"
               : S_ISBLK(st.st_mode)  ? "a block device"
               : S_ISCHR(st.st_mode)  ? "a character device"
                                      : "a special file";
  }
  return f;
}

LinkVerdict judge_current_link(const fs::path& link, const LinkFacts& facts, const std::vector<fs::path>& node_files) {
  const std::string name = "current_link " + link.string();
  const std::string keep =
      "; drd only ever replaces a symlink there and refuses to start: move it away, or set current_link to "
      "another path";
  switch (facts.kind) {
    case LinkKind::missing:
      return {LinkLevel::info, name + " does not exist; drd creates it as a symlink to the primary's database file"};
    case LinkKind::symlink: {
      const fs::path target = resolve_config_path(link.parent_path(), facts.target);
      for (const auto& f : node_files)
        if (normal(f) == target) return {LinkLevel::ok, name + " is a symlink to " + facts.target.string()};
      return {LinkLevel::warning, name + " is a symlink to " + facts.target.string() +
                                      ", which is none of the configured database files; drd repoints it at "
                                      "the primary, so applications following it will open another file"};
    }
    case LinkKind::regular_file:
      return {LinkLevel::error, name + " is a regular file (" + std::to_string(facts.size) +
                                    " bytes), not a symlink: it may be the application's own database" + keep};
    case LinkKind::directory:
      return {LinkLevel::error, name + " is a directory, not a symlink" + keep};
    case LinkKind::other:
      return {LinkLevel::error, name + " is " + facts.detail + ", not a symlink" + keep};
    case LinkKind::unreadable:
      return {LinkLevel::error, name + " cannot be inspected: " + facts.detail};
  }
  return {LinkLevel::error, name + ": unknown file type"};
}

}  // namespace drd
