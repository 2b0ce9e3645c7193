#pragma once
// The backup master key (config `backup.encryption.key_file`).
//
// The file holds 32 bytes: raw, as 64 hex characters, or as base64; one trailing newline is
// allowed. It must not be readable or writable by group/others (we refuse it otherwise, naming
// the file and the fix). Key bytes never appear in any message produced here.
//
// Ownership: MasterKey owns its bytes and wipes them when destroyed. Thread-safe to read.
#include <array>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include "common/result.hpp"

namespace drd::backup {

class MasterKey {
 public:
  explicit MasterKey(const std::array<std::uint8_t, 32>& bytes);
  ~MasterKey();
  MasterKey(const MasterKey&);
  MasterKey& operator=(const MasterKey&);
  const std::uint8_t* data() const { return bytes_.data(); }
  // First 8 bytes of SHA-256(key), as 16 lowercase hex characters. Safe to print.
  const std::string& id() const { return id_; }

 private:
  std::array<std::uint8_t, 32> bytes_;
  std::string id_;
};

// Reads and validates a key file. Errors: not_found, permission_denied (mode too open),
// invalid_argument (wrong length / encoding).
Result<MasterKey> load_master_key(const std::filesystem::path& key_file);

// Checks a key file the way load_master_key reads it, for config load and reload (so a bad key
// is found before the next backup): nullopt when it is usable, else the fault (missing, empty,
// wrong length, mode too open...) naming the file, with the fix. Never contains key bytes.
std::optional<std::string> key_file_problem(const std::filesystem::path& key_file);

// 16 hex characters identifying a 32-byte key (first 8 bytes of its SHA-256).
std::string key_id_of(const std::uint8_t* key32);

}  // namespace drd::backup
