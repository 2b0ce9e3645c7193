#pragma once
// Local facts about the server processes of a PostgreSQL data folder, for a
// node whose data_dir lives on drd's machine: is its postmaster alive, which
// processes belong to it, and stopping all of them hard.
//
// Why: a postmaster that crashed (kill -9, OOM killer) leaves postmaster.pid
// behind with a dead pid; together with "connection refused" that is proof the
// server is down, so drd need not wait for failure_threshold probes. And a hung
// old primary (SIGSTOP, stuck) is fenced by SIGKILL of its whole process tree:
// clients get "connection refused" at once instead of waiting out libpq's
// connect_timeout, and it can never wake up as a second writable primary.
//
// The parsers and the verdict are pure (table-tested); reading /proc is the
// only I/O here (world-readable, no privilege needed except for cwd, which is
// used when readable). Threading: free functions, no shared state.
#include <sys/types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace drd::pg {

// The first lines of postmaster.pid: pid, data folder, start time (unix seconds).
struct PostmasterPid {
  pid_t pid = 0;
  std::string data_dir;
  std::int64_t start_unix = 0;
  // Line 8, the postmaster's own status: "starting", "stopping", "ready", "standby" (trimmed);
  // "" when the file does not have it yet.
  std::string status;
};
std::optional<PostmasterPid> parse_postmaster_pid(const std::string& text);

// One process as /proc shows it.
struct ProcInfo {
  pid_t pid = 0;
  pid_t ppid = 0;
  std::string comm;       // executable name (not the rewritten title)
  char state = '?';       // R, S, D, T, Z, ...
  double start_unix = 0;  // boot time + start ticks / CLK_TCK
  std::optional<std::string> cwd;  // nullopt when not readable
};
// "/proc/<pid>/stat" text -> pid, comm, state, ppid, start ticks.
struct ProcStat {
  pid_t pid = 0;
  std::string comm;
  char state = '?';
  pid_t ppid = 0;
  std::uint64_t start_ticks = 0;
};
std::optional<ProcStat> parse_proc_stat(const std::string& text);

// What postmaster.pid plus the process table say about the server.
enum class PostmasterState {
  no_pid_file,  // stopped cleanly (or never started): maybe an operator restart, not proof of a crash
  running,      // the recorded postmaster is alive (possibly frozen)
  gone,         // postmaster.pid is there but its process is not: crashed
};
const char* postmaster_state_name(PostmasterState s);
// `proc` is the process with the recorded pid (nullopt if none). It is the
// postmaster when it is named "postgres", not a zombie, and its cwd is the data
// folder (when readable) or, failing that, it started within 30 s of the
// recorded start time (a reused pid fails both).
PostmasterState judge_postmaster(const std::optional<PostmasterPid>& file, const std::optional<ProcInfo>& proc,
                                 const std::string& data_dir);

// `root` and every process below it in `procs` (parents before children).
std::vector<pid_t> process_tree(pid_t root, const std::vector<ProcInfo>& procs);

// Whether a libpq connection error means nothing listens there (vs. a timeout
// or an answer from the server).
bool connection_refused(const std::string& libpq_message);

// ---- I/O ------------------------------------------------------------------

// One process from /proc (nullopt when it does not exist).
std::optional<ProcInfo> read_proc(pid_t pid);
// Every process in /proc (cwd not read).
std::vector<ProcInfo> read_proc_table();
// `root` and every process below it, from the kernel's per-task children
// lists (fast); nullopt when the kernel does not offer them (then use
// process_tree over read_proc_table()).
std::optional<std::vector<pid_t>> read_process_tree(pid_t root);
// Whether `pid` is gone or a zombie (a dead process its parent has not reaped).
bool process_dead(pid_t pid);

}  // namespace drd::pg
