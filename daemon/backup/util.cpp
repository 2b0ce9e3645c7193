#include "daemon/backup/util.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <vector>

namespace drd::backup {

std::string to_hex(const std::uint8_t* p, std::size_t n) {
  static const char* digits = "0123456789abcdef";
  std::string s;
  s.reserve(n * 2);
  for (std::size_t i = 0; i < n; ++i) {
    s.push_back(digits[p[i] >> 4]);
    s.push_back(digits[p[i] & 15]);
  }
  return s;
}

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) { EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr); }
Sha256::~Sha256() { EVP_MD_CTX_free(ctx_); }
void Sha256::update(const void* p, std::size_t n) { EVP_DigestUpdate(ctx_, p, n); }
std::array<std::uint8_t, 32> Sha256::digest() {
  std::array<std::uint8_t, 32> out{};
  unsigned len = 0;
  EVP_DigestFinal_ex(ctx_, out.data(), &len);
  return out;
}
std::string Sha256::hex_digest() {
  auto d = digest();
  return to_hex(d.data(), d.size());
}

std::string sha256_hex_of_file(const std::filesystem::path& p, Error* err) {
  std::ifstream in(p, std::ios::binary);
  if (!in) {
    if (err) *err = errno_error(Errc::io, "cannot open", p, errno);
    return {};
  }
  Sha256 h;
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    if (in.gcount() > 0) h.update(buf.data(), static_cast<std::size_t>(in.gcount()));
  }
  if (in.bad()) {
    if (err) *err = make_error(Errc::io, "read error in " + p.string());
    return {};
  }
  return h.hex_digest();
}

Status fsync_path(const std::filesystem::path& p) {
  int fd = ::open(p.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno_error(Errc::io, "cannot open for fsync", p, errno);
  int rc = ::fsync(fd);
  int e = errno;
  ::close(fd);
  if (rc != 0) return errno_error(Errc::io, "fsync failed for", p, e);
  return ok_status();
}

std::string human_bytes(std::uint64_t n) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  if (u == 0 || v >= 10)
    std::snprintf(buf, sizeof buf, "%.0f %s", v, units[u]);
  else
    std::snprintf(buf, sizeof buf, "%.1f %s", v, units[u]);
  return buf;
}

Error errno_error(Errc code, const std::string& what, const std::filesystem::path& p, int err) {
  return make_error(code, what + " " + p.string() + ": " + std::strerror(err));
}

Status replace_folder(const std::filesystem::path& ready, const std::filesystem::path& target) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::path old;
  const bool exists = fs::exists(target, ec);
  if (exists) {
    old = target;
    old += ".replaced-" + std::to_string(::getpid());
    fs::rename(target, old, ec);
    if (ec) return make_error(Errc::io, "cannot move " + target.string() + " aside: " + ec.message());
  }
  fs::rename(ready, target, ec);
  if (ec) {
    std::error_code back;
    if (exists) fs::rename(old, target, back);
    return make_error(Errc::io, "cannot rename " + ready.string() + " to " + target.string() + ": " + ec.message());
  }
  (void)fsync_path(target.parent_path());
  if (exists) fs::remove_all(old, ec);
  return ok_status();
}

}  // namespace drd::backup
