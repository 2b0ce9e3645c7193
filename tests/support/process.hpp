#pragma once
// Real processes for integration tests: drd in the background, drctl to completion.
#include <chrono>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace drd::test {

struct RunResult {
  int exit_code = -1;
  std::string out, err;
};

// Runs argv to completion (killed after `timeout`), capturing stdout and stderr.
RunResult run(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env = {},
              std::chrono::milliseconds timeout = std::chrono::seconds(60));

// A background process whose stdout+stderr go to `log_file`. Killed (SIGKILL) in
// the destructor if still running.
class Background {
 public:
  Background(const std::vector<std::string>& argv, const std::filesystem::path& log_file,
             const std::map<std::string, std::string>& env = {});
  ~Background();
  Background(const Background&) = delete;
  Background& operator=(const Background&) = delete;
  int pid() const { return pid_; }
  void signal(int sig);
  // Waits for exit; returns the exit code (128+sig for a signal), nullopt on timeout.
  std::optional<int> wait(std::chrono::milliseconds timeout);
  bool running();
  std::string log() const;

 private:
  int pid_ = -1;
  std::optional<int> status_;
  std::filesystem::path log_;
};

// Polls `pred` every 20 ms until it holds or `timeout` passes.
template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    struct timespec ts{0, 20'000'000};
    nanosleep(&ts, nullptr);
  }
  return pred();
}

std::string bin(const std::string& name);  // DRD_BIN_DIR/name

}  // namespace drd::test
