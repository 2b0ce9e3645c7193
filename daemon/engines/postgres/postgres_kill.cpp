// PostgresNode: the local process side of a node whose data_dir is on this
// machine: reading postmaster.pid and judging it against /proc. The hard fence
// (SIGKILL of the whole server) is postgres_local_kill.hpp.
#include <spdlog/spdlog.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "daemon/engines/postgres/postgres_node.hpp"

namespace drd {


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

}  // namespace drd
