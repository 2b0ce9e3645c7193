#pragma once
// Shared by the backup tests: key files, random bytes, whole-file reads and writes.
#include <sys/stat.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "daemon/backup/key.hpp"
#include "daemon/backup/stream.hpp"

namespace drd::backup::test {

inline std::vector<std::uint8_t> random_bytes(std::size_t n, unsigned seed = 1) {
  std::mt19937 rng(seed);
  std::vector<std::uint8_t> v(n);
  for (auto& b : v) b = static_cast<std::uint8_t>(rng());
  return v;
}

inline std::vector<std::uint8_t> slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::vector<std::uint8_t>((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

inline void spit(const std::filesystem::path& p, const std::vector<std::uint8_t>& v) {
  std::filesystem::remove(p);  // replacing beats truncating: ext4 flushes on truncate-rewrite
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(v.data()), static_cast<std::streamsize>(v.size()));
}

inline std::filesystem::path write_key_file(const std::filesystem::path& p, const std::string& text, int mode = 0600) {
  std::ofstream(p, std::ios::binary | std::ios::trunc) << text;
  ::chmod(p.c_str(), static_cast<mode_t>(mode));
  return p;
}

inline MasterKey test_key(unsigned seed = 7) {
  std::array<std::uint8_t, 32> k{};
  auto r = random_bytes(32, seed);
  std::copy(r.begin(), r.end(), k.begin());
  return MasterKey(k);
}

// Writes `data` as a backup at `path` with small chunks; REQUIREs success.
inline WriteStats make_backup(const std::filesystem::path& path, const std::vector<std::uint8_t>& data,
                              const MasterKey* key, std::size_t chunk = 64 << 10, int level = 3) {
  PipelineOptions o;
  o.key = key;
  o.chunk_size = chunk;
  o.level = level;
  o.threads = 1;
  auto w = BackupWriter::create(path, o);
  if (!w) throw std::runtime_error(w.error().message);
  if (auto s = w.value()->write(data.data(), data.size()); !s) throw std::runtime_error(s.error().message);
  auto st = w.value()->commit();
  if (!st) throw std::runtime_error(st.error().message);
  return st.value();
}

inline Result<std::vector<std::uint8_t>> read_all_bytes(const std::filesystem::path& path, const MasterKey* key) {
  std::vector<std::uint8_t> out;
  auto st = read_backup(path, key, [&](const std::uint8_t* p, std::size_t n) {
    out.insert(out.end(), p, p + n);
    return ok_status();
  });
  if (!st) return st.error();
  return out;
}

}  // namespace drd::backup::test
