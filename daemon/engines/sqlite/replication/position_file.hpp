#pragma once
// The durable position of one standby: `<standby>.drd-pos`, a few text lines
// written atomically (tmp + fsync + rename + folder fsync) after each applied
// batch. It names the primary it follows, the WAL generation (salts), how many
// frames of that generation are in the standby, and the cumulative checksum
// after the last of them (so a restart can check that exact frame is still in
// the primary's WAL), and what the standby file looked like when it was written (so a
// file replaced by hand is noticed). Parsing is pure and unit-tested.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include "common/result.hpp"
#include "daemon/engines/sqlite/replication/sqlite_util.hpp"
#include "daemon/engines/sqlite/replication/wal_format.hpp"

namespace drd::replication {

struct StandbyPosition {
  std::string primary;        // canonical path of the primary database
  bool has_header = false;    // false: the primary's WAL had no header (empty) at this point
  ChainState chain;           // generation salts, page size, frames applied, checksum there
  std::uint64_t applied_bytes = 0;  // cumulative WAL bytes applied (24 + page size per frame)
  // The standby file as drd left it after this batch. The position is only believed while
  // the file still looks exactly like this: a copy put in its place by hand is not
  // mistaken for the file the position describes. Absent in files of older drd versions.
  std::optional<FileStamp> file;
};

std::filesystem::path position_path(const std::filesystem::path& standby);
std::string encode_position(const StandbyPosition& p);
Result<StandbyPosition> parse_position(const std::string& text);
// nullopt when the file does not exist; an error when it exists but is unreadable or malformed.
Result<std::optional<StandbyPosition>> load_position(const std::filesystem::path& standby);
Status save_position(const std::filesystem::path& standby, const StandbyPosition& p);

}  // namespace drd::replication
