#include "daemon/engines/postgres/postgres_local_kill.hpp"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <vector>

namespace drd::pg {
namespace fs = std::filesystem;

namespace {

// Parent pid of every process, from /proc/<pid>/stat (the field after the ")" of the name).
std::multimap<int, int> children_by_parent() {
  std::multimap<int, int> out;
  std::error_code ec;
  for (fs::directory_iterator it("/proc", ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream f(it->path() / "stat");
    std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    auto close = s.rfind(')');
    if (close == std::string::npos || close + 4 >= s.size()) continue;
    // ") S PPID ..."
    auto rest = s.substr(close + 2);
    auto sp = rest.find(' ');
    if (sp == std::string::npos) continue;
    try {
      out.emplace(std::stoi(rest.substr(sp + 1)), std::stoi(name));
    } catch (const std::exception&) {
    }
  }
  return out;
}

}  // namespace

Result<LocalKill> freeze_local_server(const fs::path& data_dir) {
  LocalKill r;
  std::ifstream pidfile(data_dir / "postmaster.pid");
  std::string line;
  if (!pidfile || !std::getline(pidfile, line)) return r;  // not running here (or not readable)
  int pid = 0;
  try {
    pid = std::stoi(line);
  } catch (const std::exception&) {
    return r;
  }
  if (pid <= 1) return r;
  std::error_code ec;
  auto cwd = fs::read_symlink("/proc/" + std::to_string(pid) + "/cwd", ec);
  if (ec) return r;  // no such process here (remote server or stale pid file)
  auto want = fs::weakly_canonical(data_dir, ec);
  if (ec || cwd != want) return r;
  r.local = true;
  r.pid = pid;
  // Freeze the postmaster first so it forks nothing while its children are collected.
  if (::kill(pid, SIGSTOP) != 0) {
    if (errno == ESRCH) return LocalKill{};
    return make_error(Errc::permission_denied, "cannot signal the postmaster (pid " + std::to_string(pid) + ") of " +
                                                   data_dir.string() + ": " + std::strerror(errno),
                      "run drd as root or as the server's OS user");
  }
  auto kids = children_by_parent();
  r.tree = {pid};
  for (std::size_t i = 0; i < r.tree.size(); ++i) {
    auto [a, b] = kids.equal_range(r.tree[i]);
    for (auto it = a; it != b; ++it) r.tree.push_back(it->second);
  }
  for (std::size_t i = 1; i < r.tree.size(); ++i) ::kill(r.tree[i], SIGSTOP);
  return r;
}

void kill_frozen_server(LocalKill& k) {
  // Children first: a backend must not outlive its postmaster even for a moment.
  for (auto it = k.tree.rbegin(); it != k.tree.rend(); ++it)
    if (::kill(*it, SIGKILL) == 0) ++k.killed;
}

Result<LocalKill> kill_local_server(const fs::path& data_dir) {
  auto k = freeze_local_server(data_dir);
  if (k && k->local) kill_frozen_server(*k);
  return k;
}

}  // namespace drd::pg
