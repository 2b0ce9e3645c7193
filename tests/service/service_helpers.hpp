#pragma once
// Helpers for the service tests: a fake systemd notification socket, a small
// SQLite cluster config, and paths to the source and build folders.
// Single-threaded; each object owns its socket/folder and cleans up.
#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "tests/support/process.hpp"
#include "tests/support/temp_dir.hpp"

namespace drd::test {

std::filesystem::path source_dir();  // DRD_SOURCE_DIR
std::filesystem::path build_dir();   // DRD_BUILD_DIR (the CMake build folder)

// Clears systemd variables this test process may have inherited (NOTIFY_SOCKET,
// WATCHDOG_*, LISTEN_*, JOURNAL_STREAM) so that children see only what a test sets.
void clear_systemd_environment();

// What systemd's end of NOTIFY_SOCKET sees: a bound AF_UNIX datagram socket.
class NotifyListener {
 public:
  struct Message {
    std::chrono::steady_clock::time_point at;
    std::string line;  // one "KEY=VALUE" line (a datagram may carry several)
  };
  explicit NotifyListener(const std::filesystem::path& path);
  ~NotifyListener();
  NotifyListener(const NotifyListener&) = delete;
  NotifyListener& operator=(const NotifyListener&) = delete;
  const std::filesystem::path& path() const { return path_; }

  // The next line, waiting up to `timeout`; nullopt on timeout.
  std::optional<Message> next(std::chrono::milliseconds timeout);
  // Lines until one starts with `prefix` (inclusive) or `timeout` passes.
  std::vector<Message> until(const std::string& prefix, std::chrono::milliseconds timeout);
  // Every line received during `span`.
  std::vector<Message> collect(std::chrono::milliseconds span);

 private:
  std::filesystem::path path_;
  int fd_ = -1;
  std::vector<Message> pending_;
};

// A folder with two SQLite databases (primary + secondary1) and drd.yaml
// (state in ./state, socket ./state/drd.sock, the given probe interval and timeout).
struct ServiceCluster {
  explicit ServiceCluster(const std::string& interval = "100ms", const std::string& timeout = "500ms");
  TempDir dir{"drd-svc"};
  std::filesystem::path config() const { return dir / "drd.yaml"; }
  std::filesystem::path socket() const { return dir / "state/drd.sock"; }
};

// Runs `bash -c script` and returns its result.
RunResult bash(const std::string& script, std::chrono::milliseconds timeout = std::chrono::seconds(30));

// Lines of `text`, and whether `haystack` holds `word` as a whole word
// (neighbours not [A-Za-z0-9_-]).
std::vector<std::string> lines(const std::string& text);
bool has_word(const std::string& haystack, const std::string& word);

// The commands drctl's --help lists under "Subcommands:".
std::vector<std::string> drctl_commands_from_help();

}  // namespace drd::test
