// RealProcessRunner: fork/exec with output capture, optional user switch and a
// process-group-wide timeout.
//
// Why it is built this way:
// - Everything that allocates (PATH search, environment, group list) happens
//   before fork(): the daemon is multi-threaded, so the child may only use
//   async-signal-safe calls until exec.
// - The child gets its own process group; a timeout signals the whole group,
//   so a shell's grandchildren die with it. The group is signalled while the
//   direct child is still an unreaped zombie, so its id cannot have been reused.
// - Exec failures are reported through a close-on-exec pipe, so "could not
//   start" (an Error) is told apart from "started and failed" (an outcome).
// - A program may leave a detached grandchild holding our output pipe (pg_ctl
//   start without -l does); we stop reading shortly after the direct child has
//   exited instead of waiting for EOF forever.
#include "common/process.hpp"
#include "common/process_detail.hpp"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

extern char** environ;

namespace drd {
namespace {

using Clock = std::chrono::steady_clock;

struct Fd {
  int fd = -1;
  Fd() = default;
  explicit Fd(int f) : fd(f) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }
  void reset() {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
};

struct UserInfo {
  uid_t uid;
  gid_t gid;
  std::string name, home;
  std::vector<gid_t> groups;
};

Result<UserInfo> lookup_user(const std::string& name) {
  std::vector<char> buf(16384);
  passwd pw{};
  passwd* found = nullptr;
  int rc = ::getpwnam_r(name.c_str(), &pw, buf.data(), buf.size(), &found);
  if (rc != 0 || !found)
    return make_error(Errc::not_found, "OS user '" + name + "' does not exist",
                      "create it or fix os_user in the configuration");
  UserInfo u{pw.pw_uid, pw.pw_gid, pw.pw_name, pw.pw_dir, {}};
  int n = 64;
  for (int attempt = 0; attempt < 4; ++attempt) {
    u.groups.resize(n);
    int count = n;
    if (::getgrouplist(name.c_str(), u.gid, u.groups.data(), &count) >= 0) {
      u.groups.resize(count);
      return u;
    }
    n = count > n ? count : n * 4;
  }
  u.groups = {u.gid};
  return u;
}

bool is_executable(const std::string& p) {
  struct stat st{};
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(p.c_str(), X_OK) == 0;
}

Result<std::string> resolve_program(const std::string& prog, const ProcessSpec& spec) {
  if (prog.empty()) return make_error(Errc::invalid_argument, "empty program name");
  if (prog.find('/') != std::string::npos) {
    if (!is_executable(prog))
      return make_error(Errc::not_found, "program '" + prog + "' does not exist or is not executable");
    return prog;
  }
  std::string path;
  if (auto it = spec.env.find("PATH"); it != spec.env.end()) path = it->second;
  else if (const char* p = ::getenv("PATH")) path = p;
  else path = "/usr/local/bin:/usr/bin:/bin";
  std::size_t start = 0;
  while (start <= path.size()) {
    auto end = path.find(':', start);
    if (end == std::string::npos) end = path.size();
    std::string dir = path.substr(start, end - start);
    if (dir.empty()) dir = ".";
    std::string cand = dir + "/" + prog;
    if (is_executable(cand)) return cand;
    start = end + 1;
  }
  return make_error(Errc::not_found, "program '" + prog + "' not found in PATH");
}

// Runs in the child between fork and exec: only async-signal-safe calls.
[[noreturn]] void child_fail(int err_fd, int stage) {
  int payload[2] = {stage, errno};
  ssize_t ignored = ::write(err_fd, payload, sizeof payload);
  (void)ignored;
  ::_exit(127);
}

const char* stage_name(int stage) {
  switch (stage) {
    case 1: return "redirecting stdio";
    case 2: return "changing directory";
    case 3: return "setting supplementary groups";
    case 4: return "setting group id";
    case 5: return "setting user id";
    case 6: return "exec";
  }
  return "starting";
}

}  // namespace

namespace detail {
void kill_group(pid_t pgid, int sig) { ::kill(-pgid, sig); }

bool has_exited(pid_t pid) {
  siginfo_t info{};
  info.si_pid = 0;
  if (::waitid(P_PID, pid, &info, WEXITED | WNOHANG | WNOWAIT) != 0) return errno == ECHILD;
  return info.si_pid == pid;
}
}  // namespace detail

using detail::has_exited;
using detail::kill_group;

namespace detail {

// Prepares everything that allocates, forks, wires the child's stdin/stdout/stderr to
// `fd_in`/`fd_out`/`fd_err` (-1: /dev/null for stdin), switches user and execs. Returns
// once exec succeeded (or with the Error saying which step failed).
Result<Started> start_process(const ProcessSpec& spec, int fd_in, int fd_out, int fd_err) {
  if (spec.argv.empty()) return make_error(Errc::invalid_argument, "no command given");
  auto prog = resolve_program(spec.argv[0], spec);
  if (!prog) return prog.error();

  std::optional<UserInfo> user;
  if (spec.user) {
    auto u = lookup_user(*spec.user);
    if (!u) return u.error();
    if (::geteuid() != 0 && ::geteuid() != u->uid)
      return make_error(Errc::permission_denied,
                        "cannot run '" + spec.argv[0] + "' as user '" + *spec.user +
                            "': drd is not running as root");
    if (::geteuid() == u->uid) u->groups.clear();  // already that user: nothing to switch
    user = std::move(u.value());
  }

  // Environment: inherited, then the user's identity, then the spec's overrides.
  std::map<std::string, std::string> envmap;
  for (char** e = environ; e && *e; ++e) {
    std::string kv = *e;
    auto eq = kv.find('=');
    if (eq != std::string::npos) envmap[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  if (user) {
    envmap["HOME"] = user->home;
    envmap["USER"] = user->name;
    envmap["LOGNAME"] = user->name;
  }
  for (const auto& [k, v] : spec.env) envmap[k] = v;
  std::vector<std::string> env_strings;
  env_strings.reserve(envmap.size());
  for (const auto& [k, v] : envmap) env_strings.push_back(k + "=" + v);
  std::vector<char*> envp;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::vector<std::string> argv_copy = spec.argv;
  std::vector<char*> argv;
  for (auto& s : argv_copy) argv.push_back(s.data());
  argv.push_back(nullptr);
  std::string cwd = spec.cwd ? spec.cwd->string() : std::string();

  int err_pipe[2];
  if (::pipe2(err_pipe, O_CLOEXEC) != 0)
    return make_error(Errc::io, std::string("pipe: ") + std::strerror(errno));
  Fd err_r(err_pipe[0]), err_w(err_pipe[1]);
  Fd devnull(::open("/dev/null", O_RDONLY | O_CLOEXEC));

  pid_t pid = ::fork();
  if (pid < 0) return make_error(Errc::io, std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    ::setpgid(0, 0);
    sigset_t all;
    sigemptyset(&all);
    ::sigprocmask(SIG_SETMASK, &all, nullptr);
    for (int s : {SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGCHLD, SIGUSR1, SIGUSR2})
      ::signal(s, SIG_DFL);
    int in_fd = fd_in >= 0 ? fd_in : devnull.fd;
    if (::dup2(in_fd, 0) < 0 || ::dup2(fd_out, 1) < 0 || ::dup2(fd_err, 2) < 0)
      child_fail(err_w.fd, 1);
    // Nothing else of the daemon's (sockets, databases) leaks into the child.
    int keep = err_w.fd;
    if (keep > 3) ::close_range(3, keep - 1, 0);
    ::close_range(keep + 1, ~0U, 0);
    if (!cwd.empty() && ::chdir(cwd.c_str()) != 0) child_fail(keep, 2);
    if (user) {
      if (::geteuid() != user->uid) {
        if (::setgroups(user->groups.size(), user->groups.data()) != 0) child_fail(keep, 3);
        if (::setgid(user->gid) != 0) child_fail(keep, 4);
        if (::setuid(user->uid) != 0) child_fail(keep, 5);
      }
    }
    ::execve(prog->c_str(), argv.data(), envp.data());
    child_fail(keep, 6);
  }
  ::setpgid(pid, pid);  // also in the parent: no race with an early timeout
  // A pidfd turns readable when the child exits, so poll() wakes at once
  // (without it, exits are noticed within 50 ms).
  int exit_fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  err_w.reset();

  // Did exec succeed? The error pipe closes on exec, or carries {stage, errno}.
  int payload[2] = {0, 0};
  ssize_t got;
  do got = ::read(err_r.fd, payload, sizeof payload);
  while (got < 0 && errno == EINTR);
  if (got == static_cast<ssize_t>(sizeof payload)) {
    if (exit_fd >= 0) ::close(exit_fd);
    int status = 0;
    ::waitpid(pid, &status, 0);
    std::string msg = "cannot run '" + spec.argv[0] + "': " + stage_name(payload[0]) + " failed: " +
                      std::strerror(payload[1]);
    Errc code = payload[1] == EACCES || payload[1] == EPERM ? Errc::permission_denied : Errc::io;
    return make_error(code, msg);
  }
  return Started{pid, exit_fd};
}

}  // namespace detail

Result<ProcessOutcome> RealProcessRunner::run(const ProcessSpec& spec) {
  int out_pipe[2], in_pipe[2];
  if (::pipe2(out_pipe, O_CLOEXEC) != 0)
    return make_error(Errc::io, std::string("pipe: ") + std::strerror(errno));
  Fd out_r(out_pipe[0]), out_w(out_pipe[1]);
  if (::pipe2(in_pipe, O_CLOEXEC) != 0)
    return make_error(Errc::io, std::string("pipe: ") + std::strerror(errno));
  Fd in_r(in_pipe[0]), in_w(in_pipe[1]);
  auto started = detail::start_process(spec, spec.stdin_data.empty() ? -1 : in_r.fd, out_w.fd, out_w.fd);
  if (!started) return started.error();
  const pid_t pid = started->pid;
  Fd exit_fd(started->exit_fd);
  out_w.reset();
  in_r.reset();

  // SIGPIPE from writing stdin to a child that quit early is blocked for this
  // thread and swallowed afterwards, so it never reaches the daemon.
  sigset_t pipe_set, old_set;
  sigemptyset(&pipe_set);
  sigaddset(&pipe_set, SIGPIPE);
  ::pthread_sigmask(SIG_BLOCK, &pipe_set, &old_set);

  ProcessOutcome outcome;
  std::size_t in_off = 0;
  if (spec.stdin_data.empty()) in_w.reset();
  else ::fcntl(in_w.fd, F_SETFL, O_NONBLOCK);

  const auto start = Clock::now();
  const auto deadline = start + spec.timeout;
  std::optional<Clock::time_point> term_sent, exited_at;
  bool out_open = true;
  char buf[65536];
  const std::size_t keep_max = spec.max_output;

  auto append = [&](const char* p, std::size_t n) {
    outcome.output.append(p, n);
    if (outcome.output.size() > 2 * keep_max + 65536)
      outcome.output.erase(0, outcome.output.size() - keep_max);
  };

  for (;;) {
    auto now = Clock::now();
    if (!exited_at && has_exited(pid)) exited_at = now;
    if (exited_at) {
      // Drain what is already there; then stop unless EOF comes quickly.
      if (!out_open || now - *exited_at > std::chrono::milliseconds(200)) break;
    }
    if (!exited_at && !outcome.timed_out && now >= deadline) {
      outcome.timed_out = true;
      kill_group(pid, SIGTERM);
      term_sent = now;
    }
    if (term_sent && !exited_at && now - *term_sent >= std::chrono::seconds(2)) {
      kill_group(pid, SIGKILL);
      term_sent = now + std::chrono::hours(24);  // once
    }

    pollfd fds[3];
    int nfds = 0;
    if (exit_fd.fd >= 0 && !exited_at) fds[nfds++] = {exit_fd.fd, POLLIN, 0};
    int out_idx = -1, in_idx = -1;
    if (out_open) { fds[nfds] = {out_r.fd, POLLIN, 0}; out_idx = nfds++; }
    if (in_w.fd >= 0) { fds[nfds] = {in_w.fd, POLLOUT, 0}; in_idx = nfds++; }
    int wait_ms = 50;
    if (!outcome.timed_out && !exited_at) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - now).count();
      if (left < wait_ms) wait_ms = left < 1 ? 1 : static_cast<int>(left);
    }
    int pr = ::poll(fds, nfds, wait_ms);
    if (pr < 0 && errno != EINTR) break;
    if (pr <= 0) continue;
    if (out_idx >= 0 && (fds[out_idx].revents & (POLLIN | POLLHUP | POLLERR))) {
      ssize_t n = ::read(out_r.fd, buf, sizeof buf);
      if (n > 0) append(buf, static_cast<std::size_t>(n));
      else if (n == 0 || (errno != EINTR && errno != EAGAIN)) out_open = false;
    }
    if (in_idx >= 0 && (fds[in_idx].revents & (POLLOUT | POLLERR | POLLHUP))) {
      ssize_t n = ::write(in_w.fd, spec.stdin_data.data() + in_off, spec.stdin_data.size() - in_off);
      if (n > 0) in_off += static_cast<std::size_t>(n);
      if ((n < 0 && errno != EAGAIN && errno != EINTR) || in_off >= spec.stdin_data.size())
        in_w.reset();  // all written (or the child stopped reading): send EOF
    }
  }
  in_w.reset();

  // Whatever remains of the group after a timeout goes too, before the reap.
  // (!exited_at here only after a poll failure: do not wait on it forever.)
  if (outcome.timed_out || !exited_at) kill_group(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status)) outcome.exit_code = WEXITSTATUS(status);
  else if (WIFSIGNALED(status)) outcome.signal = WTERMSIG(status);

  // Swallow a SIGPIPE our stdin writes may have raised, then restore the mask.
  timespec zero{0, 0};
  while (::sigtimedwait(&pipe_set, nullptr, &zero) == SIGPIPE) {
  }
  ::pthread_sigmask(SIG_SETMASK, &old_set, nullptr);

  if (outcome.output.size() > keep_max) outcome.output.erase(0, outcome.output.size() - keep_max);
  return outcome;
}

}  // namespace drd
