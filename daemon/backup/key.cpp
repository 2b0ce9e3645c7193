#include "daemon/backup/key.hpp"

#include <sys/stat.h>

#include <cctype>
#include <cerrno>
#include <fstream>
#include <iterator>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "daemon/backup/util.hpp"

namespace drd::backup {

std::string key_id_of(const std::uint8_t* key32) {
  Sha256 h;
  h.update(key32, 32);
  auto d = h.digest();
  return to_hex(d.data(), 8);
}

MasterKey::MasterKey(const std::array<std::uint8_t, 32>& bytes) : bytes_(bytes), id_(key_id_of(bytes.data())) {}
MasterKey::~MasterKey() { OPENSSL_cleanse(bytes_.data(), bytes_.size()); }
MasterKey::MasterKey(const MasterKey&) = default;
MasterKey& MasterKey::operator=(const MasterKey&) = default;

namespace {

int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool decode_hex(const std::string& s, std::array<std::uint8_t, 32>& out) {
  if (s.size() != 64) return false;
  for (std::size_t i = 0; i < 32; ++i) {
    int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    out[i] = static_cast<std::uint8_t>(hi * 16 + lo);
  }
  return true;
}

bool decode_base64(const std::string& s, std::array<std::uint8_t, 32>& out) {
  // 32 bytes encode to 44 characters with one '=' of padding.
  if (s.size() != 44 || s[43] != '=' || s[42] == '=') return false;
  unsigned char buf[48];
  int n = EVP_DecodeBlock(buf, reinterpret_cast<const unsigned char*>(s.data()), 44);
  if (n != 33) return false;  // DecodeBlock counts the padding byte
  std::copy(buf, buf + 32, out.begin());
  OPENSSL_cleanse(buf, sizeof buf);
  return true;
}

}  // namespace

Result<MasterKey> load_master_key(const std::filesystem::path& key_file) {
  struct stat st {};
  if (::stat(key_file.c_str(), &st) != 0) {
    int e = errno;
    if (e == ENOENT)
      return make_error(Errc::not_found, "backup key file " + key_file.string() + " is missing (no such file)",
                        "create one with: openssl rand -hex 32 > " + key_file.string() + " && chmod 600 " +
                            key_file.string());
    return errno_error(Errc::io, "cannot read backup key file", key_file, e);
  }
  if (!S_ISREG(st.st_mode))
    return make_error(Errc::invalid_argument, "backup key file " + key_file.string() + " is not a regular file");
  if (st.st_mode & (S_IRWXG | S_IRWXO)) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%03o", st.st_mode & 0777);
    return make_error(Errc::permission_denied,
                      "backup key file " + key_file.string() + " is accessible by group/others (mode " + mode +
                          "; it must be 600: readable by its owner only)",
                      "run: chmod 600 " + key_file.string());
  }
  std::ifstream in(key_file, std::ios::binary);
  if (!in) return errno_error(Errc::io, "cannot open backup key file", key_file, errno);
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::array<std::uint8_t, 32> key{};
  bool ok = false;
  if (s.size() == 32) {  // raw bytes (checked first: raw bytes may end in '\n')
    std::copy(s.begin(), s.end(), key.begin());
    ok = true;
  } else {
    std::string t = s;
    if (!t.empty() && t.back() == '\n') t.pop_back();
    if (!t.empty() && t.back() == '\r') t.pop_back();
    ok = decode_hex(t, key) || decode_base64(t, key);
    OPENSSL_cleanse(t.data(), t.size());
  }
  std::size_t len = s.size();
  OPENSSL_cleanse(s.data(), s.size());
  const std::string expected = "expected 32 raw bytes, 64 hex characters or 44 base64 characters";
  if (!ok && len == 0)
    return make_error(Errc::invalid_argument, "backup key file " + key_file.string() + " is empty (" + expected + ")",
                      "create one with: openssl rand -hex 32 > " + key_file.string() + " && chmod 600 " +
                          key_file.string());
  if (!ok)
    return make_error(Errc::invalid_argument,
                      "backup key file " + key_file.string() + " does not hold a 32-byte key (wrong length or encoding: " +
                          std::to_string(len) + " bytes read; " + expected + ", one trailing newline allowed)",
                      "create one with: openssl rand -hex 32 > " + key_file.string() + " && chmod 600 " +
                          key_file.string());
  MasterKey k(key);
  OPENSSL_cleanse(key.data(), key.size());
  return k;
}

std::optional<std::string> key_file_problem(const std::filesystem::path& key_file) {
  auto key = load_master_key(key_file);
  if (key) return std::nullopt;
  const Error& e = key.error();
  return e.hint.empty() ? e.message : e.message + " (" + e.hint + ")";
}

}  // namespace drd::backup
