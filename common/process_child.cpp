// RealProcessRunner::spawn: a child with streamed stdin/stdout (see ChildProcess in
// process.hpp). Started through the same detail::start_process as run(), so user
// switching, environment and process-group handling are identical.
//
// Why it is built this way:
// - Every wait polls the pipe the caller wants *and* stderr (and an unread stdout), so a
//   child blocked on a full stderr pipe can never deadlock against us.
// - SIGPIPE is blocked around stdin writes and swallowed, so a child that quits early
//   turns into an Errc::io for the caller, never a signal for the daemon.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "common/process.hpp"
#include "common/process_detail.hpp"

namespace drd {

Result<std::unique_ptr<ChildProcess>> ProcessRunner::spawn(const ProcessSpec& spec, const PipeOptions&) {
  return make_error(Errc::unsupported, "this process runner cannot stream '" +
                                           (spec.argv.empty() ? std::string("?") : spec.argv[0]) + "'");
}

namespace {

using Clock = std::chrono::steady_clock;

void close_fd(int& fd) {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

class RealChild : public ChildProcess {
 public:
  RealChild(const ProcessSpec& spec, const PipeOptions& pipes, detail::Started st, int in_w, int out_r, int err_r)
      : pid_(st.pid), exit_fd_(st.exit_fd), in_w_(in_w), out_r_(out_r), err_r_(err_r), idle_(pipes.idle_timeout),
        total_(spec.timeout), keep_max_(spec.max_output) {
    name_ = spec.argv[0];
    if (auto slash = name_.rfind('/'); slash != std::string::npos) name_ = name_.substr(slash + 1);
    start_ = last_progress_ = Clock::now();
    if (in_w_ >= 0) ::fcntl(in_w_, F_SETFL, O_NONBLOCK);
  }
  ~RealChild() override {
    if (!reaped_) kill();
    close_fd(exit_fd_);
  }

  Result<std::size_t> read(char* buf, std::size_t cap) override {
    if (out_r_ < 0) return std::size_t{0};
    for (;;) {
      if (auto t = check_time(); !t) return t.error();
      pollfd fds[2];
      int n = 0;
      fds[n++] = {out_r_, POLLIN, 0};
      int err_idx = err_r_ >= 0 ? n++ : -1;
      if (err_idx >= 0) fds[err_idx] = {err_r_, POLLIN, 0};
      int pr = ::poll(fds, n, 100);
      if (pr < 0 && errno != EINTR) return make_error(Errc::io, std::string("poll: ") + std::strerror(errno));
      if (pr <= 0) continue;
      if (err_idx >= 0 && fds[err_idx].revents) drain_stderr();
      if (fds[0].revents & (POLLIN | POLLHUP | POLLERR)) {
        ssize_t got = ::read(out_r_, buf, cap);
        if (got > 0) {
          last_progress_ = Clock::now();
          return static_cast<std::size_t>(got);
        }
        if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
          close_fd(out_r_);
          return std::size_t{0};
        }
      }
    }
  }

  Status write(const char* p, std::size_t len) override {
    if (in_w_ < 0) return make_error(Errc::io, name_ + " has no open input");
    sigset_t pipe_set, old_set;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    ::pthread_sigmask(SIG_BLOCK, &pipe_set, &old_set);
    Status result = ok_status();
    std::size_t off = 0;
    while (off < len) {
      if (auto t = check_time(); !t) {
        result = t.error();
        break;
      }
      pollfd fds[3];
      int n = 0;
      fds[n++] = {in_w_, POLLOUT, 0};
      int err_idx = err_r_ >= 0 ? n++ : -1;
      if (err_idx >= 0) fds[err_idx] = {err_r_, POLLIN, 0};
      int out_idx = out_r_ >= 0 ? n++ : -1;
      if (out_idx >= 0) fds[out_idx] = {out_r_, POLLIN, 0};
      int pr = ::poll(fds, n, 100);
      if (pr < 0 && errno != EINTR) {
        result = make_error(Errc::io, std::string("poll: ") + std::strerror(errno));
        break;
      }
      if (pr <= 0) continue;
      if (err_idx >= 0 && fds[err_idx].revents) drain_stderr();
      if (out_idx >= 0 && fds[out_idx].revents) discard_stdout();
      if (fds[0].revents & (POLLOUT | POLLERR | POLLHUP)) {
        ssize_t w = ::write(in_w_, p + off, len - off);
        if (w > 0) {
          off += static_cast<std::size_t>(w);
          last_progress_ = Clock::now();
        } else if (w < 0 && errno != EAGAIN && errno != EINTR) {
          result = make_error(Errc::io, name_ + " stopped reading its input (" + std::strerror(errno) + ")");
          close_fd(in_w_);
          break;
        }
      }
    }
    timespec zero{0, 0};
    while (::sigtimedwait(&pipe_set, nullptr, &zero) == SIGPIPE) {
    }
    ::pthread_sigmask(SIG_SETMASK, &old_set, nullptr);
    return result;
  }

  ProcessOutcome wait() override {
    close_fd(in_w_);
    std::optional<Clock::time_point> exited_at;
    bool killed = false;
    for (;;) {
      auto now = Clock::now();
      if (!exited_at && detail::has_exited(pid_)) exited_at = now;
      if (exited_at && ((err_r_ < 0 && out_r_ < 0) || now - *exited_at > std::chrono::milliseconds(200))) break;
      if (!exited_at && !killed && now - start_ >= total_) {
        outcome_.timed_out = true;
        detail::kill_group(pid_, SIGKILL);
        killed = true;
      }
      pollfd fds[3];
      int n = 0, err_idx = -1, out_idx = -1;
      if (exit_fd_ >= 0 && !exited_at) fds[n++] = {exit_fd_, POLLIN, 0};
      if (err_r_ >= 0) { fds[n] = {err_r_, POLLIN, 0}; err_idx = n++; }
      if (out_r_ >= 0) { fds[n] = {out_r_, POLLIN, 0}; out_idx = n++; }
      int pr = ::poll(fds, n, 50);
      if (pr < 0 && errno != EINTR) break;
      if (pr <= 0) continue;
      if (err_idx >= 0 && fds[err_idx].revents) drain_stderr();
      if (out_idx >= 0 && fds[out_idx].revents) discard_stdout();
    }
    return reap(!exited_at);
  }

  std::optional<ProcessOutcome> try_wait() override {
    if (reaped_) return outcome_;
    while (err_r_ >= 0) {
      pollfd fd{err_r_, POLLIN, 0};
      if (::poll(&fd, 1, 0) <= 0 || !fd.revents) break;
      drain_stderr();
    }
    if (out_r_ >= 0) {
      pollfd fd{out_r_, POLLIN, 0};
      if (::poll(&fd, 1, 0) > 0 && fd.revents) discard_stdout();
    }
    if (!detail::has_exited(pid_)) return std::nullopt;
    return wait();
  }

  ProcessOutcome kill() override {
    if (reaped_) return outcome_;
    detail::kill_group(pid_, SIGKILL);
    // Whatever it said before dying, for the caller's error message.
    for (int i = 0; i < 20 && err_r_ >= 0; ++i) {
      pollfd fd{err_r_, POLLIN, 0};
      if (::poll(&fd, 1, 10) <= 0) break;
      drain_stderr();
    }
    return reap(false);
  }

 private:
  Status check_time() {
    auto now = Clock::now();
    if (now - start_ >= total_) {
      outcome_.timed_out = true;
      kill();
      return make_error(Errc::timeout, name_ + " did not finish within " + std::to_string(total_.count() / 1000) + " s");
    }
    if (now - last_progress_ >= idle_) {
      outcome_.timed_out = true;
      kill();
      return make_error(Errc::timeout, name_ + " made no progress for " + std::to_string(idle_.count() / 1000) + " s");
    }
    return ok_status();
  }

  void drain_stderr() {
    char buf[16384];
    ssize_t n = ::read(err_r_, buf, sizeof buf);
    if (n > 0) {
      outcome_.output.append(buf, static_cast<std::size_t>(n));
      if (outcome_.output.size() > 2 * keep_max_ + 65536) outcome_.output.erase(0, outcome_.output.size() - keep_max_);
    } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
      close_fd(err_r_);
    }
  }

  void discard_stdout() {
    char buf[65536];
    ssize_t n = ::read(out_r_, buf, sizeof buf);
    if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) close_fd(out_r_);
  }

  ProcessOutcome reap(bool force_kill) {
    if (force_kill) detail::kill_group(pid_, SIGKILL);
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    reaped_ = true;
    if (WIFEXITED(status)) outcome_.exit_code = WEXITSTATUS(status);
    else if (WIFSIGNALED(status)) outcome_.signal = WTERMSIG(status);
    close_fd(in_w_);
    close_fd(out_r_);
    close_fd(err_r_);
    if (outcome_.output.size() > keep_max_) outcome_.output.erase(0, outcome_.output.size() - keep_max_);
    return outcome_;
  }

  pid_t pid_;
  int exit_fd_, in_w_, out_r_, err_r_;
  Millis idle_, total_;
  std::size_t keep_max_;
  std::string name_;
  Clock::time_point start_, last_progress_;
  ProcessOutcome outcome_;
  bool reaped_ = false;
};

}  // namespace

Result<std::unique_ptr<ChildProcess>> RealProcessRunner::spawn(const ProcessSpec& spec, const PipeOptions& pipes) {
  int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
  auto fail = [&](const char* what) -> Error {
    int e = errno;
    for (int* p : {in, out, err})
      for (int i = 0; i < 2; ++i) close_fd(p[i]);
    return make_error(Errc::io, std::string(what) + ": " + std::strerror(e));
  };
  if (pipes.pipe_stdin && ::pipe2(in, O_CLOEXEC) != 0) return fail("pipe");
  if (pipes.pipe_stdout && ::pipe2(out, O_CLOEXEC) != 0) return fail("pipe");
  if (::pipe2(err, O_CLOEXEC) != 0) return fail("pipe");
  // Streams of backups and restores (pg_basebackup, tar) pass through these pipes: 1 MiB
  // instead of 64 KiB means a sixteenth of the wake-ups and reads. Best effort: the size is
  // capped by /proc/sys/fs/pipe-max-size, and the default still works.
  for (int fd : {in[1], out[0]})
    if (fd >= 0) (void)::fcntl(fd, F_SETPIPE_SZ, 1 << 20);
  auto st = detail::start_process(spec, in[0], pipes.pipe_stdout ? out[1] : err[1], err[1]);
  // The child's ends are ours to close either way.
  close_fd(in[0]);
  close_fd(out[1]);
  close_fd(err[1]);
  if (!st) {
    close_fd(in[1]);
    close_fd(out[0]);
    close_fd(err[0]);
    return st.error();
  }
  return std::unique_ptr<ChildProcess>(new RealChild(spec, pipes, st.value(), in[1], out[0], err[0]));
}

}  // namespace drd
