#pragma once
// The manifest: a JSON file beside each backup (`<id>.manifest.json`) that describes it fully,
// so a backup folder can be verified and restored without the daemon's catalog.
//
// Files of a backup `<id>` in the backup directory:
//   <id>.drdbk            the data (DRDBK1 container; see container.hpp)
//   <id>.manifest.json    this manifest, written last (a backup without it is incomplete)
//   <id>.*.partial        temporary names while writing; removed on failure or at startup
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/clock.hpp"
#include "common/result.hpp"

namespace drd::backup {

inline constexpr int kManifestVersion = 1;

struct Manifest {
  int format_version = kManifestVersion;
  std::string id;
  std::string name;            // operator's label (default: "scheduled" / "manual")
  std::string node;            // node the data was read from
  std::string engine;          // sqlite | postgresql
  std::string kind;            // full | incremental | logical
  std::string parent;          // incremental: id of the full backup it applies to
  SysTime created_at{};
  std::string source_position; // SQLite: WAL salts/frames; PostgreSQL: start LSN
  std::uint64_t source_bytes = 0;
  std::uint64_t size_bytes = 0;
  std::string plaintext_sha256;
  std::string file_sha256;
  std::string compression_algorithm = "zstd";
  int compression_level = 3;
  bool encrypted = false;
  std::string key_id;          // hex, empty when not encrypted
  std::string data_file;       // file name of the data, relative to the manifest's folder
  std::string content;         // what the plaintext is: sqlite-db | sql | pg-tar | pg-dump
  // PostgreSQL only (the "postgresql" object of the JSON): a base backup's WAL range.
  std::string pg_start_lsn, pg_stop_lsn;
  std::uint32_t pg_timeline = 0;
  std::string pg_database;     // logical dumps: the database dumped
  // Physical full backups: when pg_basebackup finished (every later commit lies after
  // stop_lsn); the start of the point-in-time window. Absent in older manifests.
  std::optional<SysTime> pg_stop_time;
};

std::string manifest_to_json(const Manifest& m);
// `origin` names the file in error messages.
Result<Manifest> manifest_from_json(std::string_view text, const std::string& origin);

std::filesystem::path manifest_path(const std::filesystem::path& dir, const std::string& id);
// Atomically: `<id>.manifest.json.partial`, fsync, rename, fsync the folder.
Status write_manifest(const std::filesystem::path& dir, const Manifest& m);
Result<Manifest> read_manifest(const std::filesystem::path& manifest_file);

// "20261124T052920Z-primary-3fa1": sortable by time, unique per node even within a second.
std::string new_backup_id(SysTime now, const std::string& node);
// "2026-11-24T05:29:20.123Z" and back (also accepts no fraction / "+00:00").
std::string format_time_utc(SysTime t);
Result<SysTime> parse_time_utc(std::string_view s);

}  // namespace drd::backup
