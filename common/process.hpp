#pragma once
// Running external programs (pg_ctl, pg_rewind, pg_basebackup, sendmail, ...).
// Everything that starts a process goes through a ProcessRunner so tests can
// record or script it instead.
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "common/units.hpp"

namespace drd {

struct ProcessSpec {
  std::vector<std::string> argv;               // argv[0] is looked up in PATH unless absolute
  std::optional<std::string> user;             // run as this OS user (needs root), e.g. "postgres"
  Millis timeout{60'000};                      // killed (SIGTERM, then SIGKILL after 2s) past this
  std::map<std::string, std::string> env;      // added to (or overriding) the inherited environment
  std::optional<std::filesystem::path> cwd;
  std::string stdin_data;                      // written to the child's stdin, then closed
  std::size_t max_output = 1 << 20;            // stdout+stderr kept (the tail), bytes
};

struct ProcessOutcome {
  int exit_code = -1;     // -1 when killed by a signal
  int signal = 0;         // the signal that ended it, if any
  bool timed_out = false;
  std::string output;     // stdout and stderr interleaved (the last max_output bytes)
  bool success() const { return exit_code == 0 && !timed_out; }
};

class ProcessRunner {
 public:
  virtual ~ProcessRunner() = default;
  // Blocks until the process ends or times out. An Error only when it could not be started.
  virtual Result<ProcessOutcome> run(const ProcessSpec& spec) = 0;
};

// fork/exec with setuid/setgid(+initgroups) for `user`, a new process group so a
// timeout kills the whole tree, output captured through a pipe.
class RealProcessRunner : public ProcessRunner {
 public:
  Result<ProcessOutcome> run(const ProcessSpec& spec) override;
};

}  // namespace drd
