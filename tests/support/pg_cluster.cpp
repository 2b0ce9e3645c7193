#include "tests/support/pg_cluster.hpp"

#include <arpa/inet.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace drd::test {
namespace {

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void spit(const fs::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  if (!out) throw std::runtime_error("PgCluster: cannot write " + p.string());
  out << text;
}

std::pair<uid_t, gid_t> postgres_ids() {
  passwd* pw = ::getpwnam(PgCluster::kOsUser);
  if (!pw) throw std::runtime_error("PgCluster: OS user 'postgres' does not exist");
  return {pw->pw_uid, pw->pw_gid};
}

void chown_postgres(const fs::path& p) {
  auto [uid, gid] = postgres_ids();
  if (::chown(p.c_str(), uid, gid) != 0)
    throw std::runtime_error("PgCluster: chown postgres " + p.string() + " failed");
}

fs::path make_temp_root(const std::string& prefix) {
  std::string tmpl = (fs::temp_directory_path() / (prefix + "-XXXXXX")).string();
  if (!::mkdtemp(tmpl.data())) throw std::runtime_error("PgCluster: mkdtemp failed for " + tmpl);
  ::chmod(tmpl.c_str(), 0755);
  chown_postgres(tmpl);
  return tmpl;
}

bool keep_dirs() {
  const char* keep = std::getenv("DRD_KEEP_TEST_DIRS");
  return keep && *keep == '1';
}

// The initdb'd template shared by every cluster of this test process.
struct Template {
  fs::path root, data;
  ~Template() {
    std::error_code ec;
    if (!root.empty() && !keep_dirs()) fs::remove_all(root, ec);
  }
};

const char* kHba =
    "local all all trust\n"
    "local replication all trust\n"
    "host all drd_pw 127.0.0.1/32 scram-sha-256\n"
    "host replication drd_pw 127.0.0.1/32 scram-sha-256\n"
    "host all all 127.0.0.1/32 trust\n"
    "host replication all 127.0.0.1/32 trust\n";

const char* kCommonConf =
    "\n# --- drd test cluster ---\n"
    "listen_addresses = '127.0.0.1'\n"
    "wal_level = replica\n"
    "max_wal_senders = 10\n"
    "max_replication_slots = 10\n"
    "hot_standby = on\n"
    "wal_keep_size = 256MB\n"
    "wal_log_hints = on\n"
    "fsync = off\n"
    "shared_buffers = 16MB\n"
    "autovacuum = off\n"
    "logging_collector = off\n"
    "wal_retrieve_retry_interval = 200ms\n"
    "wal_receiver_status_interval = 1s\n"
    "hot_standby_feedback = off\n";

const Template& the_template(ProcessRunner& runner) {
  static Template tpl;
  static std::once_flag once;
  std::call_once(once, [&] {
    tpl.root = make_temp_root("drd-pgtpl");
    tpl.data = tpl.root / "data";
    ProcessSpec spec{{std::string(PgCluster::kBinDir) + "/initdb", "-D", tpl.data.string(),
                      "--data-checksums", "-A", "trust", "-U", "postgres", "--no-sync", "--wal-segsize=1",
                      "--no-instructions", "-E", "UTF8", "--locale=C"}};
    spec.user = PgCluster::kOsUser;
    spec.timeout = 60s;
    auto out = runner.run(spec);
    if (!out || !out->success())
      throw std::runtime_error("PgCluster: initdb failed: " +
                               (out ? out->output : out.error().message));
    spit(tpl.data / "pg_hba.conf", kHba);
    std::string conf = slurp(tpl.data / "postgresql.conf") + kCommonConf;
    spit(tpl.data / "postgresql.conf", conf);
  });
  return tpl;
}

std::string proc_link(pid_t pid, const char* what) {
  std::error_code ec;
  auto p = fs::read_symlink("/proc/" + std::to_string(pid) + "/" + what, ec);
  return ec ? std::string() : p.string();
}

// Alive and not a zombie.
bool pid_alive(pid_t pid) {
  std::ifstream st("/proc/" + std::to_string(pid) + "/stat");
  std::string s;
  std::getline(st, s);
  if (s.empty()) return false;
  auto close = s.rfind(')');
  return close == std::string::npos || close + 2 >= s.size() || s[close + 2] != 'Z';
}

pid_t parent_of(pid_t pid) {
  std::ifstream st("/proc/" + std::to_string(pid) + "/stat");
  std::string s;
  std::getline(st, s);
  auto close = s.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream rest(s.substr(close + 2));
  char state;
  long ppid = 0;
  rest >> state >> ppid;
  return static_cast<pid_t>(ppid);
}

// `root` and all its descendants. PostgreSQL's children call setsid(), so a
// process-group signal would reach only the postmaster.
std::vector<pid_t> process_tree(pid_t root) {
  std::map<pid_t, std::vector<pid_t>> kids;
  for (const auto& e : fs::directory_iterator("/proc")) {
    const std::string name = e.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    pid_t pid = std::stoi(name);
    kids[parent_of(pid)].push_back(pid);
  }
  std::vector<pid_t> out{root};
  for (std::size_t i = 0; i < out.size(); ++i)
    for (pid_t k : kids[out[i]]) out.push_back(k);
  return out;
}

// Freezes the postmaster first so it forks nothing new, then signals the tree.
std::vector<pid_t> signal_tree(pid_t pid, int sig) {
  ::kill(pid, SIGSTOP);
  auto tree = process_tree(pid);
  for (auto it = tree.rbegin(); it != tree.rend(); ++it) ::kill(*it, sig);
  if (sig == SIGCONT) ::kill(pid, SIGCONT);
  return tree;
}

// Waits until `pid` is gone; we are a child subreaper, so orphaned postgres
// processes are ours to reap (the container's init reaps only every few seconds).
void reap(pid_t pid, std::chrono::steady_clock::time_point until) {
  for (;;) {
    int status;
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) return;
    if (r < 0 && !fs::exists("/proc/" + std::to_string(pid))) return;
    if (std::chrono::steady_clock::now() >= until) return;
    std::this_thread::sleep_for(5ms);
  }
}

struct Conn {
  PGconn* c = nullptr;
  ~Conn() { if (c) PQfinish(c); }
};

std::string conninfo_for(int port) {
  return "host=127.0.0.1 port=" + std::to_string(port) +
         " user=postgres dbname=postgres connect_timeout=5 application_name=pg_cluster";
}

}  // namespace

int free_loopback_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error("PgCluster: socket() failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    throw std::runtime_error("PgCluster: cannot bind a loopback port");
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

// A postmaster killed with SIGKILL (every teardown, kill9, drd's own fencing) leaves its small
// System V shared memory segment behind; PostgreSQL removes it only when a server starts again
// in the same folder, and test folders are deleted. Left alone they pile up over runs until
// shmget fails ("No space left on device", SHMMNI). Removed here: segments of the postgres
// user with nothing attached whose creating process is gone — garbage for any server.
static void remove_orphaned_pg_shm() {
  std::ifstream in("/proc/sysvipc/shm");
  passwd* pw = ::getpwnam(PgCluster::kOsUser);
  if (!in || !pw) return;
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    std::istringstream f(line);
    long long key = 0, shmid = -1, perms = 0, size = 0, cpid = 0, lpid = 0, nattch = -1, uid = -1;
    if (!(f >> key >> shmid >> perms >> size >> cpid >> lpid >> nattch >> uid)) continue;
    if (uid != static_cast<long long>(pw->pw_uid) || nattch != 0 || cpid <= 0) continue;
    if (::kill(static_cast<pid_t>(cpid), 0) == 0 || errno != ESRCH) continue;  // its creator still runs
    (void)::shmctl(static_cast<int>(shmid), IPC_RMID, nullptr);
  }
}

PgCluster::PgCluster(PgClusterOptions opts) : opts_(std::move(opts)) {
  ::prctl(PR_SET_CHILD_SUBREAPER, 1);
  remove_orphaned_pg_shm();
  the_template(runner_);
  root_ = make_temp_root("drd-pg");
  try {
    nodes_.resize(1 + opts_.standbys);
    create_node(0, false);
    start(0);
    for (int i = 1; i <= opts_.standbys; ++i) {
      create_node(i, true);
      start(i);
    }
  } catch (...) {
    teardown();
    throw;
  }
}

PgCluster::~PgCluster() { teardown(); }

int PgCluster::add_spare() {
  NodeState n;
  n.port = free_loopback_port();
  n.data_dir = root_ / ("node" + std::to_string(size()));
  nodes_.push_back(n);
  return size() - 1;
}

void PgCluster::create_node(int i, bool standby) {
  const auto& tpl = the_template(runner_);
  auto& n = nodes_[i];
  n.data_dir = root_ / ("node" + std::to_string(i));
  n.port = free_loopback_port();
  auto cp = runner_.run(ProcessSpec{{"cp", "-a", tpl.data.string(), n.data_dir.string()}});
  if (!cp || !cp->success())
    throw std::runtime_error("PgCluster: copying the template failed: " +
                             (cp ? cp->output : cp.error().message));
  if (!opts_.data_checksums) {
    auto off = run_pg_tool({"pg_checksums", "--disable", "--no-sync", "-D", n.data_dir.string()});
    if (!off.success()) throw std::runtime_error("PgCluster: pg_checksums --disable failed: " + off.output);
  }
  std::string conf = slurp(n.data_dir / "postgresql.conf");
  if (!opts_.data_checksums) conf += "wal_log_hints = off\n";
  conf += "port = " + std::to_string(n.port) + "\n";
  conf += "unix_socket_directories = '" + root_.string() + "'\n";
  conf += "cluster_name = 'node" + std::to_string(i) + "'\n";
  if (opts_.hosts.count(i))
    conf += "listen_addresses = '" + (opts_.netns.count(i) ? host(i) : "127.0.0.1," + host(i)) + "'\n";
  if (!opts_.hosts.empty()) {
    std::string hba = slurp(n.data_dir / "pg_hba.conf");
    hba += "host all all 10.0.0.0/8 trust\nhost replication all 10.0.0.0/8 trust\n";
    spit(n.data_dir / "pg_hba.conf", hba);
  }
  for (const auto& [k, v] : opts_.settings) conf += k + " = '" + v + "'\n";
  spit(n.data_dir / "postgresql.conf", conf);
  if (!opts_.hba.empty()) spit(n.data_dir / "pg_hba.conf", opts_.hba);
  if (standby) {
    spit(n.data_dir / "standby.signal", "");
    chown_postgres(n.data_dir / "standby.signal");
    std::string autoconf = slurp(n.data_dir / "postgresql.auto.conf");
    autoconf += "primary_conninfo = 'host=" + host(0) + " port=" + std::to_string(nodes_[0].port) +
                " user=postgres application_name=node" + std::to_string(i) + "'\n";
    spit(n.data_dir / "postgresql.auto.conf", autoconf);
  }
}

fs::path PgCluster::log_file(int i) const { return root_ / ("node" + std::to_string(i) + ".log"); }

ProcessOutcome PgCluster::run_pg_tool(std::vector<std::string> argv, std::chrono::milliseconds timeout) {
  if (!argv.empty() && argv[0].find('/') == std::string::npos) argv[0] = std::string(kBinDir) + "/" + argv[0];
  ProcessSpec spec{std::move(argv)};
  spec.user = kOsUser;
  spec.timeout = timeout;
  spec.cwd = root_;
  auto out = runner_.run(spec);
  if (!out) throw std::runtime_error("PgCluster: cannot run " + spec.argv[0] + ": " + out.error().message);
  return out.value();
}

void PgCluster::start(int i) {
  auto& n = nodes_.at(i);
  std::vector<std::string> argv{"pg_ctl", "start", "-D", n.data_dir.string(), "-w", "-t", "60", "-s", "-l",
                                log_file(i).string()};
  ProcessOutcome out;
  if (auto ns = opts_.netns.find(i); ns != opts_.netns.end()) {
    // Entering the namespace needs root; the server itself still runs as postgres.
    argv[0] = std::string(kBinDir) + "/pg_ctl";
    argv.insert(argv.begin(), {"ip", "netns", "exec", ns->second, "runuser", "-u", kOsUser, "--"});
    ProcessSpec spec{std::move(argv)};
    spec.timeout = 90s;
    spec.cwd = root_;
    auto r = runner_.run(spec);
    if (!r) throw std::runtime_error("PgCluster: cannot run pg_ctl in namespace " + ns->second + ": " + r.error().message);
    out = r.value();
  } else {
    out = run_pg_tool(std::move(argv), 90s);
  }
  if (!out.success())
    throw std::runtime_error("PgCluster: pg_ctl start node" + std::to_string(i) + " failed:\n" +
                             out.output + "\n--- server log ---\n" + slurp(log_file(i)));
  remember_pid(i);
}

void PgCluster::stop(int i) {
  auto out = run_pg_tool({"pg_ctl", "stop", "-D", nodes_.at(i).data_dir.string(), "-m", "fast", "-w",
                          "-t", "60", "-s"});
  if (!out.success())
    throw std::runtime_error("PgCluster: pg_ctl stop node" + std::to_string(i) + " failed: " + out.output);
}

void PgCluster::restart(int i) {
  if (running(i)) stop(i);
  start(i);
}

std::optional<pid_t> PgCluster::postmaster_pid(int i) const {
  std::ifstream in(nodes_.at(i).data_dir / "postmaster.pid");
  long pid = 0;
  if (!(in >> pid) || pid <= 0) return std::nullopt;
  return static_cast<pid_t>(pid);
}

void PgCluster::remember_pid(int i) {
  if (auto pid = postmaster_pid(i)) pids_.insert(*pid);
}

bool PgCluster::running(int i) const {
  auto pid = postmaster_pid(i);
  if (!pid || !pid_alive(*pid)) return false;
  // Guard against a reused PID: the postmaster's cwd is its data folder.
  return proc_link(*pid, "cwd") == nodes_.at(i).data_dir.string();
}

void PgCluster::kill9(int i) {
  auto pid = postmaster_pid(i);
  if (!pid || !running(i)) throw std::runtime_error("PgCluster: node" + std::to_string(i) + " is not running");
  pids_.insert(*pid);
  auto tree = signal_tree(*pid, SIGKILL);
  auto until = std::chrono::steady_clock::now() + 10s;
  for (pid_t p : tree) reap(p, until);
}

void PgCluster::sigstop(int i) {
  auto pid = postmaster_pid(i);
  if (!pid || !running(i)) throw std::runtime_error("PgCluster: node" + std::to_string(i) + " is not running");
  pids_.insert(*pid);
  signal_tree(*pid, SIGSTOP);
}

void PgCluster::sigcont(int i) {
  if (auto pid = postmaster_pid(i)) signal_tree(*pid, SIGCONT);
}

std::string PgCluster::url(int i) const {
  return "postgresql://postgres@" + host(i) + ":" + std::to_string(port(i)) + "/postgres";
}

std::string PgCluster::host(int i) const {
  auto h = opts_.hosts.find(i);
  return h == opts_.hosts.end() ? "127.0.0.1" : h->second;
}

std::string PgCluster::socket_conninfo(int i) const {
  return "host=" + root_.string() + " port=" + std::to_string(port(i)) +
         " user=postgres dbname=postgres connect_timeout=5 application_name=pg_cluster";
}

std::string PgCluster::conninfo(int i) const {
  return opts_.hosts.empty() ? conninfo_for(port(i)) : socket_conninfo(i);
}

NodeConfig PgCluster::node_config(int i) const {
  NodeConfig c;
  c.key = c.name = "node" + std::to_string(i);
  c.type = i == 0 ? NodeType::primary : NodeType::secondary;
  c.priority = i;
  c.engine = Engine::postgresql;
  c.url = c.safe_url = c.pg_conninfo = url(i);
  c.data_dir = data_dir(i);
  c.bin_dir = bin_dir();
  c.os_user = kOsUser;
  return c;
}

void PgCluster::exec(int i, const std::string& sql) {
  Conn conn{PQconnectdb(conninfo(i).c_str())};
  if (PQstatus(conn.c) != CONNECTION_OK)
    throw std::runtime_error("PgCluster: connect node" + std::to_string(i) + ": " + PQerrorMessage(conn.c));
  PGresult* res = PQexec(conn.c, sql.c_str());
  auto st = PQresultStatus(res);
  std::string err = PQresultErrorMessage(res);
  PQclear(res);
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
    throw std::runtime_error("PgCluster: node" + std::to_string(i) + ": " + sql + ": " + err);
}

std::optional<std::string> PgCluster::query(int i, const std::string& sql) {
  Conn conn{PQconnectdb(conninfo(i).c_str())};
  if (PQstatus(conn.c) != CONNECTION_OK) return std::nullopt;
  PGresult* res = PQexec(conn.c, sql.c_str());
  std::optional<std::string> out;
  if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) > 0 && PQnfields(res) > 0 &&
      !PQgetisnull(res, 0, 0))
    out = PQgetvalue(res, 0, 0);
  PQclear(res);
  return out;
}

bool PgCluster::wait_for(int i, const std::string& sql, const std::string& expected,
                         std::chrono::milliseconds timeout) {
  auto until = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (query(i, sql) == expected) return true;
    if (std::chrono::steady_clock::now() >= until) return false;
    std::this_thread::sleep_for(25ms);
  }
}

void PgCluster::wait_streaming(int primary, int count, std::chrono::milliseconds timeout) {
  if (count < 0) count = size() - 1;
  const std::string sql =
      "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'";
  if (!wait_for(primary, sql, std::to_string(count), timeout))
    throw std::runtime_error("PgCluster: node" + std::to_string(primary) + " does not list " +
                             std::to_string(count) + " streaming standbys (has " +
                             query(primary, sql).value_or("?") + ")");
}

void PgCluster::teardown() {
  for (int i = 0; i < size(); ++i)
    if (!nodes_[i].data_dir.empty()) remember_pid(i);
  const std::string prefix = root_.string() + "/";
  std::vector<pid_t> mine;
  for (pid_t pid : pids_) {
    if (!pid_alive(pid)) continue;
    // By PID only, and only a postmaster whose folder is inside this cluster.
    if (proc_link(pid, "cwd").rfind(prefix, 0) != 0) continue;
    signal_tree(pid, SIGCONT);
    for (pid_t p : signal_tree(pid, SIGKILL)) mine.push_back(p);
  }
  auto until = std::chrono::steady_clock::now() + 10s;
  for (pid_t pid : mine) reap(pid, until);
  remove_orphaned_pg_shm();
  if (!root_.empty() && !keep_dirs()) {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }
}

}  // namespace drd::test
