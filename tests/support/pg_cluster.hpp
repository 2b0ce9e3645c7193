#pragma once
// PgCluster: a real PostgreSQL 15 primary plus N streaming standbys on loopback,
// for tests. Everything lives under one temporary folder owned by the
// `postgres` OS user; servers run as that user (the tests run as root).
//
// Speed: initdb runs once per test process into a template (1 MB WAL segments
// so copies are small; data checksums on, so pg_rewind works); each node's
// data folder is a `cp -a` of it. Standbys are
// cold copies of the same template with standby.signal + primary_conninfo, so
// they stream from the primary's first checkpoint without a pg_basebackup.
//
// Node 0 starts as the primary, nodes 1..N as its standbys (application_name
// "node<i>"). fsync is off: durability across a kill -9 of one server is still
// real (the kernel keeps the written pages), only power loss is not covered.
//
// Teardown (destructor, also after a failed test): every postmaster this
// cluster ever started, or that a node's postmaster.pid names, is SIGCONTed and
// SIGKILLed with all its child processes (PostgreSQL's children setsid(), so
// the tree is walked in /proc) — by PID, after checking that the postmaster's
// cwd is inside this cluster's folder — then the folder is removed. The test
// process makes itself a child subreaper so killed servers are reaped at once
// (pg_ctl's stale-lock check would otherwise see a zombie postmaster).
// Set DRD_KEEP_TEST_DIRS=1 to keep the folder (server logs are node<i>.log).
//
// Failure behaviour: setup and exec() throw std::runtime_error with the
// command's output; query() returns nullopt on SQL errors.
// Threading: one test thread.
#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/config.hpp"
#include "common/process.hpp"

namespace drd::test {

struct PgClusterOptions {
  int standbys = 2;
  // Extra postgresql.conf lines for every node, e.g. {"synchronous_commit", "on"}.
  std::map<std::string, std::string> settings;
  // false: every node's data checksums are switched off (pg_checksums --disable
  // on its copy of the template) and wal_log_hints is off, so pg_rewind cannot work.
  bool data_checksums = true;
  // Several "hosts" on one machine (tests/etcd): the address node i listens on and is
  // reached at (default 127.0.0.1; it also listens on 127.0.0.1 unless it runs in a
  // namespace), and the network namespace its server runs in (`ip netns exec`; root
  // only). With any host set, pg_hba trusts 10.0.0.0/8 and the harness's own SQL
  // (exec/query) goes through the Unix socket, which no network cut affects.
  std::map<int, std::string> hosts;
  std::map<int, std::string> netns;
  // Non-empty: every node's pg_hba.conf is this text instead of the template's
  // (e.g. hostssl lines only, with ssl=on in `settings`). The harness itself connects
  // as postgres to 127.0.0.1 (sslmode prefer), so keep a line that lets it in.
  std::string hba;
};

class PgCluster {
 public:
  static constexpr const char* kBinDir = "/usr/lib/postgresql/15/bin";
  static constexpr const char* kOsUser = "postgres";

  // Builds and starts the primary and its standbys (throws on failure).
  explicit PgCluster(PgClusterOptions opts = {});
  explicit PgCluster(int standbys) : PgCluster(PgClusterOptions{standbys, {}, true, {}, {}}) {}
  ~PgCluster();
  PgCluster(const PgCluster&) = delete;
  PgCluster& operator=(const PgCluster&) = delete;

  int size() const { return static_cast<int>(nodes_.size()); }  // 1 + standbys (+ spares)

  // Reserves a node index with a free port and a data folder path under root()
  // but creates nothing: for a server that something else (drd clone) builds
  // there. Once it runs, running()/kill9()/query() work on it and the teardown
  // kills it like the others.
  int add_spare();

  // Server control. start/restart wait until the server accepts connections.
  void start(int i);
  void stop(int i);      // pg_ctl stop -m fast
  void restart(int i);
  void kill9(int i);     // SIGKILL to the postmaster and all its children (a crash); reaped
  void sigstop(int i);   // freezes the postmaster and every backend
  void sigcont(int i);
  bool running(int i) const;  // a live postmaster for this node's folder
  std::optional<pid_t> postmaster_pid(int i) const;  // from postmaster.pid

  // Facts.
  std::string url(int i) const;  // postgresql://postgres@HOST:PORT/postgres (HOST: 127.0.0.1 unless set)
  std::string host(int i) const;  // the address node i listens on
  // libpq conninfo over the Unix socket (no network namespace or cut gets in the way).
  std::string socket_conninfo(int i) const;
  int port(int i) const { return nodes_.at(i).port; }
  std::filesystem::path data_dir(int i) const { return nodes_.at(i).data_dir; }
  std::filesystem::path log_file(int i) const;
  const std::filesystem::path& root() const { return root_; }
  static std::filesystem::path bin_dir() { return kBinDir; }
  // A NodeConfig drd would load for this node: name "node<i>", engine postgresql,
  // url/pg_conninfo = url(i), data_dir, bin_dir, os_user "postgres"; node 0 is type primary.
  NodeConfig node_config(int i) const;

  // SQL over libpq as the postgres superuser (connect_timeout 5 s).
  void exec(int i, const std::string& sql);  // throws with the server's message
  std::optional<std::string> query(int i, const std::string& sql);  // first column of first row
  // Polls query(i, sql) until it returns `expected` (true) or the timeout passes (false).
  bool wait_for(int i, const std::string& sql, const std::string& expected,
                std::chrono::milliseconds timeout = std::chrono::seconds(15));
  // Waits until node `primary` lists `count` standbys (default: all others)
  // as streaming in pg_stat_replication and each has replayed its current LSN.
  void wait_streaming(int primary = 0, int count = -1,
                      std::chrono::milliseconds timeout = std::chrono::seconds(20));

  // Runs a PostgreSQL binary (by name, from bin_dir) as the postgres user.
  ProcessOutcome run_pg_tool(std::vector<std::string> argv,
                             std::chrono::milliseconds timeout = std::chrono::seconds(60));

 private:
  struct NodeState {
    int port = 0;
    std::filesystem::path data_dir;
  };
  void create_node(int i, bool standby);
  std::string conninfo(int i) const;
  void remember_pid(int i);
  void teardown();

  PgClusterOptions opts_;
  std::filesystem::path root_;
  std::vector<NodeState> nodes_;
  std::set<pid_t> pids_;  // every postmaster this cluster saw
  RealProcessRunner runner_;
};

// A free TCP port on 127.0.0.1 (bound to port 0 and released).
int free_loopback_port();

}  // namespace drd::test
