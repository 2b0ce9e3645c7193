// The pure side of postgres_local: postmaster.pid and /proc parsing, the
// verdict on a postmaster, the process tree. Table-driven, no server.
#include <catch2/catch.hpp>

#include "daemon/engines/postgres/postgres_local.hpp"

using namespace drd::pg;

TEST_CASE("postmaster.pid: pid, data folder and start time from the first three lines", "[pg][local]") {
  auto p = parse_postmaster_pid("4242\n/var/lib/postgresql/15/main\n1700000000\n5432\n/run/postgresql\n*\n  5432001    360448\nready   \n");
  REQUIRE(p);
  CHECK(p->pid == 4242);
  CHECK(p->data_dir == "/var/lib/postgresql/15/main");
  CHECK(p->start_unix == 1700000000);
  struct Row { const char* what; const char* text; };
  const Row bad[] = {
      {"empty (being written)", ""},
      {"only the pid", "4242\n"},
      {"pid not a number", "abc\n/d\n1700000000\n"},
      {"negative pid", "-5\n/d\n1700000000\n"},
      {"trailing junk after the pid", "42x\n/d\n1700000000\n"},
      {"start time not a number", "42\n/d\nsoon\n"},
  };
  for (auto& r : bad) {
    INFO(r.what);
    CHECK_FALSE(parse_postmaster_pid(r.text));
  }
}

TEST_CASE("/proc/PID/stat: comm with spaces and parentheses, state, ppid, start ticks", "[pg][local]") {
  // Fields 7..17, then priority, nice, threads, itrealvalue, starttime (22), vsize, rss.
  std::string tail = " 0 0 0 0 0 0 0 0 0 0 0 20 0 1 0 98765 1000 10";
  auto s = parse_proc_stat("123 (postgres) S 1 123 123" + tail);
  REQUIRE(s);
  CHECK(s->pid == 123);
  CHECK(s->comm == "postgres");
  CHECK(s->state == 'S');
  CHECK(s->ppid == 1);
  CHECK(s->start_ticks == 98765);
  auto odd = parse_proc_stat("77 (a) b (c)) T 9 77 77" + tail);
  REQUIRE(odd);
  CHECK(odd->comm == "a) b (c)");
  CHECK(odd->state == 'T');
  CHECK(odd->ppid == 9);
  CHECK_FALSE(parse_proc_stat(""));
  CHECK_FALSE(parse_proc_stat("12 (x) S 1"));  // too short
}

TEST_CASE("postmaster verdict: running, gone (crashed or pid reused), or no pid file", "[pg][local]") {
  PostmasterPid file{100, "/data", 1700000000};
  auto proc = [](pid_t pid, const char* comm, char state, double start, std::optional<std::string> cwd) {
    ProcInfo p;
    p.pid = pid;
    p.comm = comm;
    p.state = state;
    p.start_unix = start;
    p.cwd = std::move(cwd);
    return std::optional<ProcInfo>(p);
  };
  struct Row {
    const char* what;
    std::optional<PostmasterPid> file;
    std::optional<ProcInfo> proc;
    PostmasterState expect;
  };
  const Row rows[] = {
      {"no postmaster.pid: stopped cleanly", std::nullopt, std::nullopt, PostmasterState::no_pid_file},
      {"no such process: crashed", file, std::nullopt, PostmasterState::gone},
      {"zombie: dead", file, proc(100, "postgres", 'Z', 1700000000, "/data"), PostmasterState::gone},
      {"alive, cwd is the data folder", file, proc(100, "postgres", 'S', 1, "/data"), PostmasterState::running},
      {"frozen (SIGSTOP) still counts as running", file, proc(100, "postgres", 'T', 1, "/data"),
       PostmasterState::running},
      {"pid reused by another program", file, proc(100, "bash", 'S', 1700000000, std::nullopt),
       PostmasterState::gone},
      {"pid reused by another cluster's postgres (cwd differs)", file, proc(100, "postgres", 'S', 1700000000, "/other"),
       PostmasterState::gone},
      {"cwd unreadable: start time close enough", file, proc(100, "postgres", 'S', 1700000001.5, std::nullopt),
       PostmasterState::running},
      {"cwd unreadable: started much later, so reused", file, proc(100, "postgres", 'S', 1700009999, std::nullopt),
       PostmasterState::gone},
  };
  for (auto& r : rows) {
    INFO(r.what);
    CHECK(judge_postmaster(r.file, r.proc, "/data") == r.expect);
  }
}

TEST_CASE("process tree: the root and all descendants, parents first", "[pg][local]") {
  auto pi = [](pid_t pid, pid_t ppid) {
    ProcInfo p;
    p.pid = pid;
    p.ppid = ppid;
    return p;
  };
  std::vector<ProcInfo> procs{pi(1, 0), pi(10, 1), pi(11, 10), pi(12, 10), pi(13, 12), pi(20, 1), pi(21, 20)};
  CHECK(process_tree(10, procs) == std::vector<pid_t>{10, 11, 12, 13});
  CHECK(process_tree(21, procs) == std::vector<pid_t>{21});
  CHECK(process_tree(99, procs) == std::vector<pid_t>{99});
}

TEST_CASE("connection refused is told apart from timeouts and server errors", "[pg][local]") {
  CHECK(connection_refused("probe a: connection failed: connection to server at \"127.0.0.1\", port 5 failed: "
                           "Connection refused\n\tIs the server running on that host and accepting TCP/IP connections?"));
  CHECK_FALSE(connection_refused("probe a: connection timed out (no answer from the server in time)"));
  CHECK_FALSE(connection_refused("probe a: FATAL:  the database system is starting up"));
}
