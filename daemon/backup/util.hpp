#pragma once
// Small helpers shared by the backup engine: hex, SHA-256, file syncing, sizes in messages.
#include <array>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include <openssl/evp.h>

#include "common/result.hpp"

namespace drd::backup {

std::string to_hex(const std::uint8_t* p, std::size_t n);

// Incremental SHA-256. Not copyable; one per stream.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(const void* p, std::size_t n);
  std::array<std::uint8_t, 32> digest();  // once
  std::string hex_digest();              // once

 private:
  EVP_MD_CTX* ctx_;
};

std::string sha256_hex_of_file(const std::filesystem::path& p, Error* err = nullptr);

// fsync a file or a directory by path. Errors name the path.
Status fsync_path(const std::filesystem::path& p);

// Puts the folder `ready` in the place of `target` (which need not exist): an existing target is
// moved aside first and deleted only after the rename succeeded, or put back if it failed; the
// parent folder is fsynced. On error `ready` is left where it was.
Status replace_folder(const std::filesystem::path& ready, const std::filesystem::path& target);
// Removes a folder (a partial restore, a scratch area) when it goes out of scope, unless
// dismissed once the folder is complete and handed on.
class FolderGuard {
 public:
  explicit FolderGuard(std::filesystem::path p) : path_(std::move(p)) {}
  FolderGuard(const FolderGuard&) = delete;
  FolderGuard& operator=(const FolderGuard&) = delete;
  ~FolderGuard() {
    std::error_code ec;
    if (armed_) std::filesystem::remove_all(path_, ec);
  }
  void dismiss() { armed_ = false; }

 private:
  std::filesystem::path path_;
  bool armed_ = true;
};
// "12 MiB", "3.4 KiB": for messages.
std::string human_bytes(std::uint64_t n);
// "<errno text>" with the operation and path: "cannot open /x: Permission denied".
Error errno_error(Errc code, const std::string& what, const std::filesystem::path& p, int err);

}  // namespace drd::backup
