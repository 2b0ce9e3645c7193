#pragma once
// Running external programs (pg_ctl, pg_rewind, pg_basebackup, sendmail, ...).
// Everything that starts a process goes through a ProcessRunner so tests can
// record or script it instead.
#include <filesystem>
#include <map>
#include <memory>
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

// A running child whose stdin and/or stdout are pipes the caller streams through (pg_basebackup
// into a backup, a backup into tar or pg_restore), so nothing is ever held whole. stderr (and
// stdout when not piped) is kept like run()'s output. Every call is bounded by the spec's
// overall `timeout` (from the start) and by `idle_timeout` (no byte moved on the pipe): past
// either the whole process group is killed and the call returns Errc::timeout naming the
// program. Destroying a child that has not been waited for kills its group and reaps it.
// Threading: one thread drives a child.
class ChildProcess {
 public:
  virtual ~ChildProcess() = default;
  // Up to `cap` bytes of stdout; 0 at end of file. Needs `pipe_stdout`.
  virtual Result<std::size_t> read(char* buf, std::size_t cap) = 0;
  // All of `p` to stdin. Errc::io when the child stopped reading (it exited or closed stdin).
  virtual Status write(const char* p, std::size_t n) = 0;
  // Sends end-of-file on stdin, then waits for the exit (stdout still unread is discarded).
  virtual ProcessOutcome wait() = 0;
  // Without blocking: the outcome when the child has exited (it is then reaped), else nullopt.
  // Drains stderr meanwhile so a long-running child (pg_receivewal) never fills the pipe.
  // The default (for children that cannot be polled) blocks like wait().
  virtual std::optional<ProcessOutcome> try_wait() { return wait(); }
  // Kills the group now and reaps it (after a failure on our side); wait() is then not needed.
  // Returns what it had written to stderr so far.
  virtual ProcessOutcome kill() = 0;
};

struct PipeOptions {
  bool pipe_stdin = false;
  bool pipe_stdout = false;          // else stdout joins stderr in the captured output
  Millis idle_timeout{300'000};      // no progress on the pipes for this long = stalled
};

class ProcessRunner {
 public:
  virtual ~ProcessRunner() = default;
  // Blocks until the process ends or times out. An Error only when it could not be started.
  virtual Result<ProcessOutcome> run(const ProcessSpec& spec) = 0;
  // Starts a child with streamed pipes (see ChildProcess). Runners that cannot stream
  // (test fakes) refuse with Errc::unsupported.
  virtual Result<std::unique_ptr<ChildProcess>> spawn(const ProcessSpec& spec, const PipeOptions& pipes);
};

// fork/exec with setuid/setgid(+initgroups) for `user`, a new process group so a
// timeout kills the whole tree, output captured through a pipe.
class RealProcessRunner : public ProcessRunner {
 public:
  Result<ProcessOutcome> run(const ProcessSpec& spec) override;
  Result<std::unique_ptr<ChildProcess>> spawn(const ProcessSpec& spec, const PipeOptions& pipes) override;
};

}  // namespace drd
