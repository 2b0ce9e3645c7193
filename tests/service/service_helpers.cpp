#include "tests/service/service_helpers.hpp"

#include <catch2/catch.hpp>
#include <poll.h>
#include <sqlite3.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <sstream>
#include <stdexcept>

namespace drd::test {

namespace fs = std::filesystem;

fs::path source_dir() { return DRD_SOURCE_DIR; }
fs::path build_dir() { return DRD_BUILD_DIR; }

void clear_systemd_environment() {
  for (const char* v : {"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_FDS", "LISTEN_PID",
                        "LISTEN_FDNAMES", "JOURNAL_STREAM", "DRD_SOCKET"})
    ::unsetenv(v);
}

NotifyListener::NotifyListener(const fs::path& path) : path_(path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.string().size() >= sizeof addr.sun_path) throw std::runtime_error("notify socket path too long: " + path.string());
  std::strcpy(addr.sun_path, path.c_str());
  fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
  if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0)
    throw std::runtime_error("bind " + path.string() + ": " + std::strerror(errno));
}

NotifyListener::~NotifyListener() {
  if (fd_ >= 0) ::close(fd_);
  std::error_code ec;
  fs::remove(path_, ec);
}

std::optional<NotifyListener::Message> NotifyListener::next(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (pending_.empty()) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return std::nullopt;
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    char buf[4096];
    ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n <= 0) continue;
    auto now = std::chrono::steady_clock::now();
    std::istringstream in(std::string(buf, static_cast<std::size_t>(n)));
    for (std::string l; std::getline(in, l);)
      if (!l.empty()) pending_.push_back({now, l});
  }
  Message m = pending_.front();
  pending_.erase(pending_.begin());
  return m;
}

std::vector<NotifyListener::Message> NotifyListener::until(const std::string& prefix, std::chrono::milliseconds timeout) {
  std::vector<Message> out;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return out;
    auto m = next(left);
    if (!m) return out;
    out.push_back(*m);
    if (m->line.rfind(prefix, 0) == 0) return out;
  }
}

std::vector<NotifyListener::Message> NotifyListener::collect(std::chrono::milliseconds span) {
  std::vector<Message> out;
  auto deadline = std::chrono::steady_clock::now() + span;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return out;
    if (auto m = next(left)) out.push_back(*m);
  }
}

namespace {

void make_db(const fs::path& file) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(file.c_str(), &db) == SQLITE_OK);
  const char* sql =
      "PRAGMA journal_mode=WAL;"
      "CREATE TABLE IF NOT EXISTS images (id INTEGER PRIMARY KEY, url TEXT);"
      "INSERT INTO images (url) VALUES ('http://example.test/1.jpg'), ('http://example.test/2.jpg');";
  REQUIRE(sqlite3_exec(db, sql, nullptr, nullptr, nullptr) == SQLITE_OK);
  sqlite3_close(db);
}

}  // namespace

ServiceCluster::ServiceCluster(const std::string& interval, const std::string& timeout) {
  fs::create_directories(dir / "data");
  make_db(dir / "data/primary.db");
  fs::copy_file(dir / "data/primary.db", dir / "data/secondary1.db");
  write_file(config(),
             "disaster_recovery:\n"
             "  state_dir: ./state\n"
             "  control:\n"
             "    socket: ./state/drd.sock\n"
             "  databases:\n"
             "    primary: { type: primary, priority: 0, url: \"sqlite:///data/primary.db\" }\n"
             "    secondary1: { type: secondary, priority: 1, url: \"sqlite:///data/secondary1.db\" }\n"
             "  monitoring:\n"
             "    interval: " + interval + "\n"
             "    timeout: " + timeout + "\n"
             "    failure_threshold: 3\n");
}

RunResult bash(const std::string& script, std::chrono::milliseconds timeout) {
  return run({"bash", "-c", script}, {}, timeout);
}

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

bool has_word(const std::string& haystack, const std::string& word) {
  auto is_word_char = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-'; };
  for (std::size_t at = haystack.find(word); at != std::string::npos; at = haystack.find(word, at + 1)) {
    bool left_ok = at == 0 || !is_word_char(haystack[at - 1]);
    std::size_t end = at + word.size();
    bool right_ok = end >= haystack.size() || !is_word_char(haystack[end]);
    if (left_ok && right_ok) return true;
  }
  return false;
}

std::vector<std::string> drctl_commands_from_help() {
  auto r = run({bin("drctl"), "--help"});
  REQUIRE(r.exit_code == 0);
  std::vector<std::string> out;
  bool in_section = false;
  for (auto& l : lines(r.out)) {
    if (l.rfind("Subcommands:", 0) == 0 || l.rfind("SUBCOMMANDS:", 0) == 0) {
      in_section = true;
      continue;
    }
    if (!in_section) continue;
    if (l.empty() || l[0] != ' ') break;
    std::istringstream w(l);
    std::string cmd;
    w >> cmd;
    if (!cmd.empty()) out.push_back(cmd);
  }
  REQUIRE(out.size() >= 10);  // the parse found the section
  return out;
}

}  // namespace drd::test
