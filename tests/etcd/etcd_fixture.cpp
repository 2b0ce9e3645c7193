#include "tests/etcd/etcd_fixture.hpp"

#include <arpa/inet.h>
#include <csignal>
#include <netinet/in.h>
#include <sqlite3.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <set>

#include "common/rpc.hpp"
#include "tests/e2e/drd_fixture.hpp"

namespace drd::test {

int free_port_once();

namespace {
std::set<int> g_used;  // never hand out one port twice in a test process
}

int free_port() {
  for (;;) {
    int p = free_port_once();
    if (g_used.insert(p).second) return p;
  }
}

int free_port_once() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

// ---- etcd -------------------------------------------------------------------

EtcdCluster::EtcdCluster(const std::filesystem::path& dir, int members, std::string extra_listen,
                         std::optional<EtcdTls> tls)
    : dir_(dir), tls_(std::move(tls)) {
  const std::string scheme = tls_ ? "https://" : "http://";
  std::vector<int> peer_ports;
  std::string initial;
  for (int i = 0; i < members; ++i) {
    client_ports_.push_back(free_port());
    peer_ports.push_back(free_port());
    initial += (i ? "," : "") + std::string("e") + std::to_string(i) + "=http://127.0.0.1:" + std::to_string(peer_ports[i]);
  }
  for (int i = 0; i < members; ++i) {
    std::string name = "e" + std::to_string(i);
    std::string client = scheme + "127.0.0.1:" + std::to_string(client_ports_[i]);
    std::string listen = client;
    if (!extra_listen.empty()) listen += "," + scheme + extra_listen + ":" + std::to_string(client_ports_[i]);
    std::filesystem::create_directories(dir_ / name);
    std::vector<std::string> tls_args;
    if (tls_) {
      tls_args = {"--cert-file", tls_->cert.string(), "--key-file", tls_->key.string()};
      if (tls_->client_cert_auth)
        tls_args.insert(tls_args.end(), {"--client-cert-auth", "--trusted-ca-file", tls_->ca.string()});
    }
    std::vector<std::string> argv{"etcd", "--name", name, "--data-dir", (dir_ / name / "data").string(),
                                 "--listen-client-urls", listen, "--advertise-client-urls", client,
                                 "--listen-peer-urls", "http://127.0.0.1:" + std::to_string(peer_ports[i]),
                                 "--initial-advertise-peer-urls", "http://127.0.0.1:" + std::to_string(peer_ports[i]),
                                 "--initial-cluster", initial, "--initial-cluster-state", "new",
                                 "--initial-cluster-token", "drd-test-" + std::to_string(::getpid()),
                                 "--heartbeat-interval", "100", "--election-timeout", "1000",
                                 "--log-level", "warn", "--logger", "zap"};
    argv.insert(argv.end(), tls_args.begin(), tls_args.end());
    procs_.push_back(std::make_unique<Background>(argv, dir_ / name / "etcd.log"));
  }
  bool up = eventually([&] { return healthy(); }, std::chrono::seconds(30));
  INFO(logs());
  REQUIRE(up);
}

EtcdCluster::~EtcdCluster() = default;  // Background kills each member by PID

std::vector<std::string> EtcdCluster::endpoints(const std::string& host) const {
  std::vector<std::string> out;
  for (int p : client_ports_) out.push_back((tls_ ? "https://" : "http://") + host + ":" + std::to_string(p));
  return out;
}

void EtcdCluster::stop(int i) {
  procs_[i]->signal(SIGKILL);
  procs_[i]->wait(std::chrono::seconds(10));
}
void EtcdCluster::pause(int i) { procs_[i]->signal(SIGSTOP); }
void EtcdCluster::resume(int i) { procs_[i]->signal(SIGCONT); }

RunResult EtcdCluster::etcdctl(const std::string& endpoint, std::vector<std::string> args) const {
  std::vector<std::string> argv{"etcdctl", "--endpoints", endpoint, "--dial-timeout", "1s", "--command-timeout", "2s"};
  if (tls_) {
    argv.insert(argv.end(), {"--cacert", tls_->ca.string()});
    if (!tls_->client_cert.empty())
      argv.insert(argv.end(), {"--cert", tls_->client_cert.string(), "--key", tls_->client_key.string()});
  }
  if (!user_.empty()) argv.insert(argv.end(), {"--user", user_});
  argv.insert(argv.end(), args.begin(), args.end());
  return run(argv, {{"ETCDCTL_API", "3"}}, std::chrono::seconds(5));
}

bool EtcdCluster::healthy() const {
  for (std::size_t i = 0; i < procs_.size(); ++i)
    if (etcdctl(endpoints()[i], {"endpoint", "health"}).exit_code != 0) return false;
  return true;
}

std::string EtcdCluster::get(const std::string& key) const {
  std::string eps;
  for (auto& e : endpoints()) eps += (eps.empty() ? "" : ",") + e;
  auto r = etcdctl(eps, {"get", "--print-value-only", key});
  std::string v = r.out;
  while (!v.empty() && (v.back() == '\n' || v.back() == '\r')) v.pop_back();
  return v;
}

std::string EtcdCluster::logs() const {
  std::string s;
  for (auto& p : procs_) s += p->log().substr(p->log().size() > 3000 ? p->log().size() - 3000 : 0);
  return s;
}

// ---- network namespace -------------------------------------------------------

namespace {
int sh(const std::string& cmd) { return run({"/bin/sh", "-c", cmd}, {}, std::chrono::seconds(10)).exit_code; }
}  // namespace

bool netns_available() {
  return ::geteuid() == 0 && run({"ip", "netns", "list"}, {}, std::chrono::seconds(5)).exit_code == 0;
}

NetNs::NetNs() {
  const int id = ::getpid() % 60000;
  name_ = "drdt" + std::to_string(id);
  veth_ = "drdv" + std::to_string(id);
  // A /30 of its own per test process: .1 on the root side, .2 inside.
  const std::string net = "10." + std::to_string(200 + (id / 16384) % 50) + "." + std::to_string((id / 64) % 256) + ".";
  const int c = (id % 64) * 4;
  root_ = net + std::to_string(c + 1);
  inner_ = net + std::to_string(c + 2);
  sh("ip netns del " + name_ + " 2>/dev/null; ip link del " + veth_ + "a 2>/dev/null");
  ok_ = sh("ip netns add " + name_) == 0 && sh("ip netns exec " + name_ + " ip link set lo up") == 0 &&
        sh("ip link add " + veth_ + "a type veth peer name " + veth_ + "b") == 0 &&
        sh("ip link set " + veth_ + "b netns " + name_) == 0 &&
        sh("ip addr add " + root_ + "/30 dev " + veth_ + "a") == 0 && sh("ip link set " + veth_ + "a up") == 0 &&
        sh("ip netns exec " + name_ + " ip addr add " + inner_ + "/30 dev " + veth_ + "b") == 0 &&
        sh("ip netns exec " + name_ + " ip link set " + veth_ + "b up") == 0;
}

NetNs::~NetNs() {
  sh("ip link del " + veth_ + "a 2>/dev/null");
  sh("ip netns del " + name_ + " 2>/dev/null");
}

void NetNs::cut() { REQUIRE(sh("ip link set " + veth_ + "a down") == 0); }
void NetNs::restore() { REQUIRE(sh("ip link set " + veth_ + "a up") == 0); }

// ---- drd hosts -----------------------------------------------------------------

MultiHost::MultiHost(int hosts, HostOptions o, NetNs* ns, int ns_host)
    : opts(std::move(o)), dir_("drd-etcd"), hosts_(hosts), ns_(ns), ns_host_(ns_host) {
  prefix_ = "/drd/test" + std::to_string(::getpid());
  for (int i = 0; i < hosts_; ++i) {
    std::filesystem::create_directories(host_dir(i) / "data");
    std::filesystem::create_directories(host_dir(i) / "state");
    if (i == 0) make_sqlite_db(db(0), 10);
    else std::filesystem::copy_file(db(0), db(i));
  }
  drd_.resize(static_cast<std::size_t>(hosts_));
}

MultiHost::~MultiHost() {
  for (auto& d : drd_)
    if (d && d->running()) {
      d->signal(SIGCONT);
      d->signal(SIGTERM);
      d->wait(std::chrono::seconds(5));
    }
  drd_.clear();
  etcd_.reset();
}

std::filesystem::path MultiHost::db(int i) const { return host_dir(i) / "data" / (node(i) + ".db"); }

void MultiHost::start_etcd() {
  etcd_ = std::make_unique<EtcdCluster>(dir_ / "etcd", opts.etcd_members, ns_ ? ns_->root_ip() : "", opts.etcd_tls);
  for (int i = 0; i < hosts_; ++i) peer_ports_.push_back(free_port());
  for (int i = 0; i < hosts_; ++i) write_config(i);
}

void MultiHost::write_config(int i) {
  // Inside the namespace only the link's root side reaches etcd and the peers.
  const std::string etcd_host = ns_ && i == ns_host_ ? ns_->root_ip() : "127.0.0.1";
  std::string peer_ip = "127.0.0.1";
  if (ns_) peer_ip = i == ns_host_ ? ns_->inner_ip() : ns_->root_ip();
  std::ofstream f(host_dir(i) / "drd.yaml", std::ios::trunc);
  f << "disaster_recovery:\n"
       "  state_dir: ./state\n"
       "  control:\n    socket: ./state/drd.sock\n"
       "  local: " << node(i) << "\n"
       "  databases:\n";
  for (int j = 0; j < hosts_; ++j) {
    if (pg_.empty())
      f << "    " << node(j) << ": { url: \"sqlite:///" << db(j).string() << "\", priority: " << j;
    else
      f << "    " << node(j) << ": { url: \"" << pg_[j].url << "\", priority: " << j << ", data_dir: \""
        << pg_[j].data_dir.string() << "\", bin_dir: /usr/lib/postgresql/15/bin, os_user: postgres";
    f << (j == 0 ? ", type: primary" : "") << " }\n";
  }
  f << "  monitoring:\n    interval: " << opts.interval << "\n    timeout: " << opts.timeout
    << "\n    failure_threshold: " << opts.threshold << "\n"
    << opts.extra_yaml << "  store:\n    type: etcd\n    prefix: " << prefix_ << "\n    ttl: " << opts.ttl << "\n    endpoints: [";
  auto eps = etcd_->endpoints(etcd_host);
  for (std::size_t k = 0; k < eps.size(); ++k) f << (k ? ", " : "") << "\"" << eps[k] << "\"";
  f << "]\n    peer_listen: \"" << peer_ip << ":" << peer_ports_[i] << "\"\n"
    << "    failsafe: " << (opts.failsafe ? "true" : "false") << "\n"
    << opts.store_yaml;
}

void MultiHost::start(int i) {
  std::vector<std::string> argv{bin("drd"), "--config", (host_dir(i) / "drd.yaml").string(), "--foreground"};
  if (ns_ && i == ns_host_) argv.insert(argv.begin(), {"ip", "netns", "exec", ns_->name()});
  drd_[i] = std::make_unique<Background>(argv, host_dir(i) / "drd.log", env[i]);
  bool up = eventually([&] {
    if (!drd_[i]->running()) return true;
    rpc::Client c(socket(i).string(), std::chrono::milliseconds(500));
    return std::holds_alternative<boost::json::value>(c.call("ping"));
  }, std::chrono::seconds(20));
  INFO(drd_[i]->log());
  REQUIRE(up);
  REQUIRE(drd_[i]->running());
}

void MultiHost::start_all() {
  for (int i = 0; i < hosts_; ++i) start(i);
}

void MultiHost::kill(int i, int sig) {
  drd_[i]->signal(sig);
  if (sig == SIGKILL || sig == SIGTERM) drd_[i]->wait(std::chrono::seconds(10));
}

bool MultiHost::running(int i) { return drd_[i] && drd_[i]->running(); }

std::optional<boost::json::value> MultiHost::try_call(int i, const std::string& method, boost::json::object params) {
  if (!running(i)) return std::nullopt;
  rpc::Client c(socket(i).string(), std::chrono::seconds(5));
  auto r = c.call(method, std::move(params));
  if (auto* v = std::get_if<boost::json::value>(&r)) return *v;
  return std::nullopt;
}

boost::json::value MultiHost::call(int i, const std::string& method, boost::json::object params) {
  rpc::Client c(socket(i).string(), std::chrono::seconds(60));
  auto r = c.call(method, std::move(params));
  if (auto* e = std::get_if<rpc::CallError>(&r)) {
    INFO(method << " on drd " << i << " failed: " << e->message << "\n" << logs());
    FAIL();
  }
  return std::get<boost::json::value>(r);
}

RunResult MultiHost::drctl(int i, std::vector<std::string> args) {
  std::vector<std::string> argv{bin("drctl"), "--socket", socket(i).string()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run(argv, {{"NO_COLOR", "1"}});
}

int MultiHost::leader() {
  int found = -1;
  for (int i = 0; i < hosts_; ++i) {
    auto st = try_call(i, "status");
    if (!st) continue;
    auto& c = st->at("cluster").as_object();
    if (c.at("leading").as_bool()) {
      if (found >= 0) return -2;  // two claim the lead
      found = i;
    }
  }
  return found;
}

int MultiHost::wait_leader(std::chrono::milliseconds timeout) {
  int l = -1;
  eventually([&] { return (l = leader()) >= 0; }, timeout);
  return l;
}

std::string MultiHost::store_primary() { return etcd_->get(prefix_ + "/state/primary"); }
long long MultiHost::store_term() {
  auto t = etcd_->get(prefix_ + "/state/term");
  return t.empty() ? 0 : std::stoll(t);
}

std::string MultiHost::logs() {
  std::string s;
  for (int i = 0; i < hosts_; ++i)
    if (drd_[i]) {
      auto l = drd_[i]->log();
      s += "---- drd " + node(i) + " ----\n" + l.substr(l.size() > 6000 ? l.size() - 6000 : 0);
    }
  return s;
}

bool sqlite_writable(const std::filesystem::path& file, int wait_ms) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(file.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
    sqlite3_close(db);
    return false;
  }
  sqlite3_busy_timeout(db, wait_ms);
  bool ok = sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) == SQLITE_OK;
  if (ok) sqlite3_exec(db, "ROLLBACK", nullptr, nullptr, nullptr);
  sqlite3_close(db);
  return ok;
}

void require_settled(MultiHost& m, const std::string& primary, std::chrono::milliseconds timeout) {
  std::size_t running = 0;
  for (int i = 0; i < m.hosts(); ++i) running += m.running(i) ? 1 : 0;
  bool ok = eventually([&] {
    for (int i = 0; i < m.hosts(); ++i) {
      if (!m.running(i)) continue;
      auto st = m.try_call(i, "status");
      if (!st || st->at("primary").as_string() != primary) return false;
      if (st->at("cluster").at("members").as_array().size() != running) return false;
    }
    return true;
  }, timeout);
  INFO(m.logs());
  REQUIRE(ok);
}

}  // namespace drd::test
