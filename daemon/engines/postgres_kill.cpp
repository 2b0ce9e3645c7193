// PostgresNode: the local process side of a node whose data_dir is on this
// machine: reading postmaster.pid, and the hard fence (SIGKILL of the whole
// server) used for an old primary drd cannot reach.
#include <signal.h>
#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "daemon/engines/postgres_node.hpp"

namespace drd {

using namespace std::chrono_literals;
using pg::ms_left;

namespace {
SteadyTime now() { return std::chrono::steady_clock::now(); }
}  // namespace

Result<std::optional<std::string>> PostgresNode::read_pid_file(SteadyTime deadline) {
  if (!cfg_.data_dir) return make_error(Errc::invalid_argument, cfg_.name + " has no data_dir");
  const auto path = *cfg_.data_dir / "postmaster.pid";
  {
    std::ifstream in(path);
    if (in) {
      std::ostringstream s;
      s << in.rdbuf();
      return std::optional<std::string>(s.str());
    }
  }
  const int err = errno;
  if (err == ENOENT) return std::optional<std::string>();
  // drd may not read the (0700) data folder itself: ask os_user, like the other file actions.
  if (!cfg_.os_user)
    return make_error(Errc::io, "cannot read " + path.string() + ": " + std::strerror(err),
                      "run drd as root or set os_user for this node");
  auto out = tool({"sh", "-c", "test -e \"$1\" || exit 3; exec cat -- \"$1\"", "sh", path.string()}, deadline);
  if (!out) return out.error();
  if (out->exit_code == 3) return std::optional<std::string>();
  if (!out->success()) return make_error(Errc::io, "cannot read " + path.string() + ": " + out->output);
  return std::optional<std::string>(out->output);
}

std::optional<pg::PostmasterState> PostgresNode::local_state(SteadyTime deadline, pg::PostmasterPid* pid_file) {
  if (!cfg_.data_dir) return std::nullopt;
  auto text = read_pid_file(deadline);
  if (!text) return std::nullopt;
  std::optional<pg::PostmasterPid> file;
  if (text->has_value()) {
    file = pg::parse_postmaster_pid(**text);
    // An empty or half-written file: the postmaster is starting or stopping; no verdict.
    if (!file) return std::nullopt;
    if (pid_file) *pid_file = *file;
  }
  auto proc = file ? pg::read_proc(file->pid) : std::nullopt;
  return pg::judge_postmaster(file, proc, cfg_.data_dir->string());
}

Status PostgresNode::send_signal(const std::vector<pid_t>& pids, int sig, SteadyTime deadline) {
  std::vector<std::string> denied;
  for (pid_t p : pids)
    if (::kill(p, sig) != 0 && errno == EPERM) denied.push_back(std::to_string(p));
  if (denied.empty()) return ok_status();
  if (!cfg_.os_user)
    return make_error(Errc::refused, "not permitted to signal the server processes of " + cfg_.name,
                      "run drd as root, or set os_user for this node");
  const std::string name = sig == SIGKILL ? "KILL" : sig == SIGSTOP ? "STOP" : "CONT";
  std::vector<std::string> argv{"sh", "-c", "kill -s " + name + " \"$@\"", "sh"};
  argv.insert(argv.end(), denied.begin(), denied.end());
  auto out = tool(std::move(argv), deadline);
  if (!out) return out.error();
  // kill(1) fails for a process that exited meanwhile: that is what we want anyway.
  return ok_status();
}

Status PostgresNode::kill_server(Millis timeout) {
  const auto deadline = now() + timeout;
  const auto t0 = now();
  tool_log_.clear();
  conn_.reset();
  if (!cfg_.data_dir)
    return make_error(Errc::invalid_argument, "cannot stop " + cfg_.name + " locally: no data_dir is configured",
                      "add data_dir: (and os_user:) to this node, or stop the server by hand");
  pg::PostmasterPid file;
  auto state = local_state(deadline, &file);
  if (!state)
    return make_error(Errc::io, "cannot tell whether " + cfg_.name + "'s server runs: postmaster.pid in " +
                                    cfg_.data_dir->string() + " is unreadable or incomplete");
  if (*state == pg::PostmasterState::no_pid_file) {
    last_action_ = "server not running (no postmaster.pid)";
    return ok_status();
  }
  if (*state == pg::PostmasterState::gone) {
    last_action_ = "server already down (postmaster pid " + std::to_string(file.pid) + " is gone)";
    return ok_status();
  }
  // Freeze the postmaster first so it forks nothing between listing its children and the kill.
  if (auto s = send_signal({file.pid}, SIGSTOP, deadline); !s) return s;
  auto fast = pg::read_process_tree(file.pid);
  auto tree = fast ? *fast : pg::process_tree(file.pid, pg::read_proc_table());
  std::vector<pid_t> order(tree.rbegin(), tree.rend());  // children first, the postmaster last
  if (auto s = send_signal(order, SIGKILL, deadline); !s) return s;
  for (;;) {
    bool all_dead = true;
    for (pid_t p : tree) all_dead = all_dead && pg::process_dead(p);
    if (all_dead) break;
    if (ms_left(deadline) <= 0)
      return make_error(Errc::timeout, "SIGKILL sent to " + cfg_.name + "'s " + std::to_string(tree.size()) +
                                           " server processes, but not all are gone yet",
                        "a process stuck in the kernel (D state) dies when its I/O returns");
    std::this_thread::sleep_for(2ms);
  }
  stopped_by_fence_ = true;
  last_action_ = "server stopped hard: SIGKILL to the postmaster (pid " + std::to_string(file.pid) + ") and " +
                 std::to_string(tree.size() - 1) + " child process(es), all gone in " +
                 std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(now() - t0).count()) + " ms";
  spdlog::info("fence {}: {}", cfg_.name, last_action_);
  return ok_status();
}

}  // namespace drd
