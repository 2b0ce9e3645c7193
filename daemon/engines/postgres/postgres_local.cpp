#include "daemon/engines/postgres/postgres_local.hpp"

#include <dirent.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace drd::pg {

std::optional<PostmasterPid> parse_postmaster_pid(const std::string& text) {
  std::istringstream in(text);
  std::string l1, l2, l3;
  if (!std::getline(in, l1) || !std::getline(in, l2) || !std::getline(in, l3)) return std::nullopt;
  PostmasterPid p;
  try {
    std::size_t used = 0;
    long pid = std::stol(l1, &used);
    if (used != l1.size() || pid <= 0) return std::nullopt;
    p.pid = static_cast<pid_t>(pid);
    p.start_unix = std::stoll(l3, &used);
    if (used != l3.size()) return std::nullopt;
  } catch (...) {
    return std::nullopt;
  }
  p.data_dir = l2;
  std::string line;
  for (int i = 4; i <= 8 && std::getline(in, line); ++i)
    if (i == 8) {
      while (!line.empty() && (line.back() == ' ' || line.back() == '\r')) line.pop_back();
      p.status = line;
    }
  return p;
}

std::optional<ProcStat> parse_proc_stat(const std::string& text) {
  // "pid (comm) state ppid ..." where comm may itself hold spaces and parentheses.
  auto open = text.find('(');
  auto close = text.rfind(')');
  if (open == std::string::npos || close == std::string::npos || close < open || close + 2 >= text.size())
    return std::nullopt;
  ProcStat s;
  try {
    s.pid = static_cast<pid_t>(std::stol(text.substr(0, open)));
  } catch (...) {
    return std::nullopt;
  }
  s.comm = text.substr(open + 1, close - open - 1);
  std::istringstream rest(text.substr(close + 2));
  std::vector<std::string> f;
  std::string w;
  while (rest >> w) f.push_back(w);
  // f[0] = state (field 3), f[1] = ppid (4), f[19] = starttime (22).
  if (f.size() < 20 || f[0].size() != 1) return std::nullopt;
  s.state = f[0][0];
  try {
    s.ppid = static_cast<pid_t>(std::stol(f[1]));
    s.start_ticks = std::stoull(f[19]);
  } catch (...) {
    return std::nullopt;
  }
  return s;
}

const char* postmaster_state_name(PostmasterState s) {
  switch (s) {
    case PostmasterState::no_pid_file: return "no postmaster.pid";
    case PostmasterState::running: return "running";
    case PostmasterState::gone: return "gone";
  }
  return "?";
}

PostmasterState judge_postmaster(const std::optional<PostmasterPid>& file, const std::optional<ProcInfo>& proc,
                                 const std::string& data_dir) {
  if (!file) return PostmasterState::no_pid_file;
  if (!proc || proc->pid != file->pid || proc->state == 'Z' || proc->state == 'X') return PostmasterState::gone;
  if (proc->comm != "postgres") return PostmasterState::gone;  // the pid now belongs to something else
  if (proc->cwd) {
    namespace fs = std::filesystem;
    std::error_code ec;
    auto want = fs::weakly_canonical(fs::path(data_dir), ec);
    if (ec) want = fs::path(data_dir);
    return fs::path(*proc->cwd) == want || *proc->cwd == data_dir ? PostmasterState::running
                                                                   : PostmasterState::gone;
  }
  return std::fabs(proc->start_unix - static_cast<double>(file->start_unix)) <= 30 ? PostmasterState::running
                                                                                  : PostmasterState::gone;
}

std::vector<pid_t> process_tree(pid_t root, const std::vector<ProcInfo>& procs) {
  std::map<pid_t, std::vector<pid_t>> kids;
  for (auto& p : procs) kids[p.ppid].push_back(p.pid);
  std::vector<pid_t> out{root};
  for (std::size_t i = 0; i < out.size(); ++i)
    if (auto k = kids.find(out[i]); k != kids.end())
      for (pid_t c : k->second)
        if (c != root) out.push_back(c);
  return out;
}

bool connection_refused(const std::string& msg) { return msg.find("Connection refused") != std::string::npos; }

namespace {

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  if (!in) return {};
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

double boot_time() {
  static const double bt = [] {
    std::istringstream in(slurp("/proc/stat"));
    std::string key;
    double v = 0;
    while (in >> key) {
      if (key == "btime") {
        in >> v;
        break;
      }
    }
    return v;
  }();
  return bt;
}

std::optional<ProcInfo> info_from(pid_t pid, bool with_cwd) {
  auto st = parse_proc_stat(slurp("/proc/" + std::to_string(pid) + "/stat"));
  if (!st) return std::nullopt;
  ProcInfo p;
  p.pid = st->pid;
  p.ppid = st->ppid;
  p.comm = st->comm;
  p.state = st->state;
  static const long hz = sysconf(_SC_CLK_TCK);
  p.start_unix = boot_time() + static_cast<double>(st->start_ticks) / static_cast<double>(hz > 0 ? hz : 100);
  if (with_cwd) {
    std::error_code ec;
    auto cwd = std::filesystem::read_symlink("/proc/" + std::to_string(pid) + "/cwd", ec);
    if (!ec) p.cwd = cwd.string();
  }
  return p;
}

}  // namespace

std::optional<ProcInfo> read_proc(pid_t pid) { return info_from(pid, true); }

std::vector<ProcInfo> read_proc_table() {
  std::vector<ProcInfo> out;
  DIR* d = ::opendir("/proc");
  if (!d) return out;
  while (dirent* e = ::readdir(d)) {
    char* end = nullptr;
    long pid = std::strtol(e->d_name, &end, 10);
    if (!end || *end || pid <= 0) continue;
    if (auto p = info_from(static_cast<pid_t>(pid), false)) out.push_back(std::move(*p));
  }
  ::closedir(d);
  return out;
}

std::optional<std::vector<pid_t>> read_process_tree(pid_t root) {
  std::vector<pid_t> out{root};
  for (std::size_t i = 0; i < out.size(); ++i) {
    const std::string p = std::to_string(out[i]);
    std::ifstream in("/proc/" + p + "/task/" + p + "/children");
    if (!in) {
      if (i == 0) return std::nullopt;  // no such file on this kernel (or the root is gone)
      continue;                         // a child that exited meanwhile
    }
    long c;
    while (in >> c)
      if (c > 0 && c != root) out.push_back(static_cast<pid_t>(c));
  }
  return out;
}

bool process_dead(pid_t pid) {
  auto st = parse_proc_stat(slurp("/proc/" + std::to_string(pid) + "/stat"));
  return !st || st->state == 'Z' || st->state == 'X';
}

}  // namespace drd::pg
