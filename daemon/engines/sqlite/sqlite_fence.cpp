#include "daemon/engines/sqlite/sqlite_fence.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <fstream>
#include <sstream>

namespace drd::sqlite_fence {

namespace {

constexpr unsigned kWriteBits = S_IWUSR | S_IWGRP | S_IWOTH;
constexpr const char* kHeader = "drd-fenced v1";

std::filesystem::path wal_of(const std::filesystem::path& db) { return db.string() + "-wal"; }
std::filesystem::path shm_of(const std::filesystem::path& db) { return db.string() + "-shm"; }

std::optional<unsigned> mode_of(const std::filesystem::path& p) {
  struct stat st {};
  if (::stat(p.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return std::nullopt;
  return static_cast<unsigned>(st.st_mode) & 07777u;
}

Status set_mode(const std::filesystem::path& p, unsigned mode) {
  if (::chmod(p.c_str(), mode) == 0 || errno == ENOENT) return ok_status();
  return make_error(Errc::io, "cannot chmod " + p.string() + ": " + std::strerror(errno));
}

std::string octal(unsigned mode) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%04o", mode);
  return buf;
}

std::optional<unsigned> parse_mode(const std::string& text) {
  if (text.empty() || text.size() > 5) return std::nullopt;
  unsigned v = 0;
  for (char c : text) {
    if (c < '0' || c > '7') return std::nullopt;
    v = v * 8 + static_cast<unsigned>(c - '0');
  }
  if (v > 07777u) return std::nullopt;
  return v;
}

std::string utc_now() {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

Status write_atomically(const std::filesystem::path& to, const std::string& text) {
  const std::string tmp = to.string() + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return make_error(Errc::io, "cannot create " + tmp + ": " + std::strerror(errno));
  bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && ::fsync(fd) == 0;
  int err = errno;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), to.c_str()) != 0) {
    if (ok) err = errno;
    ::unlink(tmp.c_str());
    return make_error(Errc::io, "cannot write " + to.string() + ": " + std::strerror(err));
  }
  const auto dir = to.parent_path().empty() ? std::filesystem::path(".") : to.parent_path();
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return ok_status();
}

Result<std::optional<FenceRecord>> read_record(const std::filesystem::path& db) {
  std::ifstream in(record_path(db), std::ios::binary);
  if (!in) {
    std::error_code ec;
    if (!std::filesystem::exists(record_path(db), ec)) return std::optional<FenceRecord>{};
    return make_error(Errc::io, "cannot read " + record_path(db).string());
  }
  std::stringstream text;
  text << in.rdbuf();
  auto r = parse_record(text.str());
  if (!r) return make_error(r.error().code, record_path(db).string() + ": " + r.error().message);
  return std::optional<FenceRecord>{*r};
}

}  // namespace

std::filesystem::path record_path(const std::filesystem::path& db) { return db.string() + ".drd-fenced"; }

std::string format_record(const FenceRecord& r) {
  std::string out = std::string(kHeader) + "\nmode " + octal(r.db_mode) + "\n";
  if (r.wal_mode) out += "wal_mode " + octal(*r.wal_mode) + "\n";
  if (r.shm_mode) out += "shm_mode " + octal(*r.shm_mode) + "\n";
  std::string reason = r.reason;
  for (auto& c : reason)
    if (c == '\n' || c == '\r') c = ' ';
  out += "since " + r.since + "\nreason " + reason + "\n";
  return out;
}

Result<FenceRecord> parse_record(const std::string& text) {
  std::istringstream in(text);
  std::string line;
  if (!std::getline(in, line) || line != kHeader)
    return make_error(Errc::corrupt, "not a drd fence record (first line is not '" + std::string(kHeader) + "')");
  FenceRecord r;
  bool have_mode = false;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    auto sp = line.find(' ');
    const std::string key = line.substr(0, sp);
    const std::string value = sp == std::string::npos ? "" : line.substr(sp + 1);
    if (key == "mode" || key == "wal_mode" || key == "shm_mode") {
      auto m = parse_mode(value);
      if (!m) return make_error(Errc::corrupt, "bad " + key + " '" + value + "' (octal permission bits expected)");
      if (key == "mode") {
        r.db_mode = *m;
        have_mode = true;
      } else if (key == "wal_mode") {
        r.wal_mode = *m;
      } else {
        r.shm_mode = *m;
      }
    } else if (key == "since") {
      r.since = value;
    } else if (key == "reason") {
      r.reason = value;
    }  // unknown keys: written by a newer drd, ignored
  }
  if (!have_mode) return make_error(Errc::corrupt, "no 'mode' line: the original mode is unknown");
  return r;
}

bool fenced_on_disk(const std::filesystem::path& db) {
  std::error_code ec;
  return std::filesystem::exists(record_path(db), ec);
}

Status apply(const std::filesystem::path& db, const std::string& reason) {
  auto db_mode = mode_of(db);
  if (!db_mode) return ok_status();  // nothing at the path to fence (it is fenced when it reappears)
  if (!fenced_on_disk(db)) {
    FenceRecord r;
    r.db_mode = *db_mode;
    r.wal_mode = mode_of(wal_of(db));
    r.shm_mode = mode_of(shm_of(db));
    r.since = utc_now();
    r.reason = reason;
    if (auto st = write_atomically(record_path(db), format_record(r)); !st) return st;
  }
  for (const auto& p : {db, wal_of(db), shm_of(db)}) {
    auto m = mode_of(p);
    if (!m || (*m & kWriteBits) == 0) continue;
    if (auto st = set_mode(p, *m & ~kWriteBits); !st) return st;
  }
  return ok_status();
}

Status restore_modes(const std::filesystem::path& db, const FenceRecord& r) {
  if (auto st = set_mode(db, r.db_mode); !st) return st;
  // A -wal or -shm made after fencing gets the database's mode (SQLite gives it that too).
  if (auto st = set_mode(wal_of(db), r.wal_mode.value_or(r.db_mode)); !st) return st;
  return set_mode(shm_of(db), r.shm_mode.value_or(r.db_mode));
}

Result<std::optional<FenceRecord>> lift(const std::filesystem::path& db) {
  auto rec = read_record(db);
  if (!rec) return rec.error();
  if (!*rec) return std::optional<FenceRecord>{};
  if (auto st = restore_modes(db, **rec); !st) return st.error();
  if (::unlink(record_path(db).c_str()) != 0 && errno != ENOENT)
    return make_error(Errc::io, "cannot remove " + record_path(db).string() + ": " + std::strerror(errno));
  return *rec;
}

void allow_owner_write(const std::filesystem::path& db) {
  for (const auto& p : {db, wal_of(db), shm_of(db)})
    if (auto m = mode_of(p); m && !(*m & S_IWUSR)) (void)set_mode(p, *m | S_IWUSR);
}

}  // namespace drd::sqlite_fence
