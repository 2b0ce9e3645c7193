#include "daemon/engines/sqlite/replication/position_file.hpp"

#include <fstream>
#include <map>
#include <sstream>

#include "daemon/engines/sqlite/replication/sqlite_util.hpp"

namespace drd::replication {

namespace {
constexpr const char* kMagicLine = "drd-sqlite-position 1";
}

std::filesystem::path position_path(const std::filesystem::path& standby) {
  return with_suffix(standby, ".drd-pos");
}

std::string encode_position(const StandbyPosition& p) {
  std::ostringstream o;
  o << kMagicLine << "\n"
    << "primary " << p.primary << "\n"
    << "has_header " << (p.has_header ? 1 : 0) << "\n"
    << "big_endian " << (p.chain.big_endian ? 1 : 0) << "\n"
    << "page_size " << p.chain.page_size << "\n"
    << "salt1 " << p.chain.salt1 << "\n"
    << "salt2 " << p.chain.salt2 << "\n"
    << "frames " << p.chain.frames << "\n"
    << "cksum1 " << p.chain.checksum.s0 << "\n"
    << "cksum2 " << p.chain.checksum.s1 << "\n"
    << "applied_bytes " << p.applied_bytes << "\n";
  if (p.file)
    o << "file_dev " << p.file->dev << "\n"
      << "file_ino " << p.file->ino << "\n"
      << "file_size " << p.file->size << "\n"
      << "file_mtime_ns " << p.file->mtime_ns << "\n";
  return o.str();
}

Result<StandbyPosition> parse_position(const std::string& text) {
  std::istringstream in(text);
  std::string line;
  if (!std::getline(in, line) || line != kMagicLine)
    return make_error(Errc::corrupt, "position file does not start with '" + std::string(kMagicLine) + "'");
  std::map<std::string, std::string> kv;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    auto sp = line.find(' ');
    if (sp == std::string::npos) return make_error(Errc::corrupt, "malformed position line '" + line + "'");
    kv[line.substr(0, sp)] = line.substr(sp + 1);
  }
  auto num = [&](const char* key, std::uint64_t max, std::uint64_t& out) -> Status {
    auto it = kv.find(key);
    if (it == kv.end()) return make_error(Errc::corrupt, std::string("position file lacks '") + key + "'");
    try {
      std::size_t used = 0;
      unsigned long long v = std::stoull(it->second, &used);
      if (used != it->second.size() || v > max) throw std::out_of_range(key);
      out = v;
    } catch (const std::exception&) {
      return make_error(Errc::corrupt, std::string("position file has a bad '") + key + "': " + it->second);
    }
    return ok_status();
  };
  StandbyPosition p;
  auto it = kv.find("primary");
  if (it == kv.end() || it->second.empty()) return make_error(Errc::corrupt, "position file lacks 'primary'");
  p.primary = it->second;
  std::uint64_t v = 0;
  constexpr std::uint64_t u32 = 0xffffffffull;
  if (auto s = num("has_header", 1, v); !s) return s.error();
  p.has_header = v != 0;
  if (auto s = num("big_endian", 1, v); !s) return s.error();
  p.chain.big_endian = v != 0;
  if (auto s = num("page_size", 65536, v); !s) return s.error();
  p.chain.page_size = static_cast<std::uint32_t>(v);
  if (auto s = num("salt1", u32, v); !s) return s.error();
  p.chain.salt1 = static_cast<std::uint32_t>(v);
  if (auto s = num("salt2", u32, v); !s) return s.error();
  p.chain.salt2 = static_cast<std::uint32_t>(v);
  if (auto s = num("frames", u32, v); !s) return s.error();
  p.chain.frames = static_cast<std::uint32_t>(v);
  if (auto s = num("cksum1", u32, v); !s) return s.error();
  p.chain.checksum.s0 = static_cast<std::uint32_t>(v);
  if (auto s = num("cksum2", u32, v); !s) return s.error();
  p.chain.checksum.s1 = static_cast<std::uint32_t>(v);
  if (auto s = num("applied_bytes", ~0ull, v); !s) return s.error();
  p.applied_bytes = v;
  if (kv.count("file_dev") || kv.count("file_ino") || kv.count("file_size") || kv.count("file_mtime_ns")) {
    FileStamp f;
    if (auto s = num("file_dev", ~0ull, f.dev); !s) return s.error();
    if (auto s = num("file_ino", ~0ull, f.ino); !s) return s.error();
    if (auto s = num("file_size", ~0ull, f.size); !s) return s.error();
    if (auto s = num("file_mtime_ns", ~0ull >> 1, v); !s) return s.error();
    f.mtime_ns = static_cast<std::int64_t>(v);
    p.file = f;
  }
  return p;
}

Result<std::optional<StandbyPosition>> load_position(const std::filesystem::path& standby) {
  auto path = position_path(standby);
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return std::optional<StandbyPosition>{};
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(Errc::io, "cannot read position file " + path.string());
  std::ostringstream ss;
  ss << in.rdbuf();
  auto p = parse_position(ss.str());
  if (!p) {
    Error e = p.error();
    e.message = path.string() + ": " + e.message;
    return e;
  }
  return std::optional<StandbyPosition>(std::move(*p));
}

Status save_position(const std::filesystem::path& standby, const StandbyPosition& p) {
  return write_file_atomic(position_path(standby), encode_position(p));
}

}  // namespace drd::replication
