#pragma once
// Where the paths of a configuration point: base_dir, the resolution of relative paths
// against it, the list `drd --check-config` prints, and the verdict on what is found at
// current_link. Everything here is pure except inspect_link(), which only looks (lstat,
// readlink) and never changes anything.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "common/config.hpp"

namespace drd {

// The folder relative paths resolve against: `written` (the base_dir key as written; empty =
// not set) resolved against the config file's folder. Absolute `written` stays as it is.
// Lexically normalised, without a trailing separator; symlinks are not resolved.
std::filesystem::path resolve_base_dir(const std::filesystem::path& config_folder, const std::string& written);

// `p` against `base`: an absolute path stays, a relative one is joined to base. Lexically
// normalised, without a trailing separator. "~" is a plain name here (see tilde_problem).
std::filesystem::path resolve_config_path(const std::filesystem::path& base, const std::filesystem::path& p);

// Why a path as written is refused, or nullopt. drd has no shell and does not expand "~",
// "~/x" or "~user/x"; rather than make a folder literally named "~" next to the config, such
// a path is an error (write "./~" for a folder that really is named "~").
std::optional<std::string> tilde_problem(const std::string& written);

// Every path the configuration resolves to, named by its key path under disaster_recovery
// ("state_dir", "databases.primary.url", "backup.encryption.key_file", ...), defaults
// included, in the order of docs/configuration.md. Keys left unset (no default) are absent.
struct ResolvedPath {
  std::string key;
  std::filesystem::path path;
};
std::vector<ResolvedPath> resolved_paths(const Config& cfg);

// ---- current_link: what is there, and what drd makes of it ----
enum class LinkKind { missing, symlink, regular_file, directory, other, unreadable };
struct LinkFacts {
  LinkKind kind = LinkKind::missing;
  std::filesystem::path target;  // symlink: as read (may be relative to the link's folder)
  std::uintmax_t size = 0;       // regular file: bytes
  std::string detail;            // other: "a FIFO", "a socket", ...; unreadable: the error
};
// lstat() and readlink() on `link`; never follows it, never changes anything.
LinkFacts inspect_link(const std::filesystem::path& link);

enum class LinkLevel { ok, info, warning, error };
struct LinkVerdict {
  LinkLevel level = LinkLevel::ok;
  std::string message;  // names the path and what is there
};
// Only a symlink (or nothing) is ever replaced by drd. A missing link is created (info); a
// symlink naming one of `node_files` is what drd keeps (ok); a symlink elsewhere is repointed
// (warning: applications following it will move); anything else (a regular file — perhaps
// the application's own database —, a directory, a FIFO, ...) is an error and drd refuses to
// start rather than replace it.
LinkVerdict judge_current_link(const std::filesystem::path& link, const LinkFacts& facts,
                               const std::vector<std::filesystem::path>& node_files);

}  // namespace drd
