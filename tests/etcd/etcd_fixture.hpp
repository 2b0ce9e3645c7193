#pragma once
// Multi-host test harness: a real etcd cluster (etcd-server 3.4) on free ports in a
// temporary folder, and several real drd processes, one per emulated "host", each
// with its own folder (SQLite database, state, socket, config) and peer port.
// Every process is started by this harness and stopped by its PID.
//
// Optionally one host runs in its own network namespace behind a veth pair
// (cut_off() takes the link down: that host loses etcd and its peers, while its
// files stay where they are). Needs root; netns_available() says whether it can.
#include <boost/json.hpp>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tests/support/process.hpp"
#include "tests/support/temp_dir.hpp"

namespace drd::test {

int free_port();

// Client TLS for the etcd members (peers stay plain: the tests are about drd's side).
struct EtcdTls {
  std::filesystem::path cert, key, ca;  // server certificate and key; CA of the client certificates
  bool client_cert_auth = false;        // --client-cert-auth: a client without a certificate from `ca` is refused
  // What etcdctl (the fixture's own health checks and get()) presents.
  std::filesystem::path client_cert, client_key;
};

class EtcdCluster {
 public:
  // `extra_listen`: also serve clients on this address (the namespace link's root side).
  // `tls`: serve clients over https only.
  explicit EtcdCluster(const std::filesystem::path& dir, int members = 3, std::string extra_listen = "",
                       std::optional<EtcdTls> tls = std::nullopt);
  ~EtcdCluster();
  std::vector<std::string> endpoints(const std::string& host = "127.0.0.1") const;
  void stop(int i);    // SIGKILL one member
  void pause(int i);   // SIGSTOP
  void resume(int i);  // SIGCONT
  bool healthy() const;  // every running member answers /health
  std::string get(const std::string& key) const;  // etcdctl get --print-value-only
  int size() const { return static_cast<int>(procs_.size()); }
  std::string logs() const;
  // etcdctl with the endpoint and, under TLS, the CA and client certificate.
  RunResult etcdctl(const std::string& endpoint, std::vector<std::string> args) const;
  // "user:password" for etcdctl once auth is on (get(), healthy()).
  void set_etcdctl_user(std::string user) { user_ = std::move(user); }

 private:
  std::filesystem::path dir_;
  std::optional<EtcdTls> tls_;
  std::string user_;
  std::vector<int> client_ports_;
  std::vector<std::unique_ptr<Background>> procs_;
};

// A network namespace joined to the root one by a veth pair 10.R.S.1 (root) <-> 10.R.S.2 (inside).
class NetNs {
 public:
  NetNs();
  ~NetNs();
  bool ok() const { return ok_; }
  const std::string& name() const { return name_; }
  const std::string& root_ip() const { return root_; }
  const std::string& inner_ip() const { return inner_; }
  void cut();      // link down: the inside loses every peer
  void restore();  // link up again
 private:
  bool ok_ = false;
  std::string name_, veth_, root_, inner_;
};
bool netns_available();

struct HostOptions {
  int etcd_members = 3;
  std::optional<EtcdTls> etcd_tls;  // etcd serves https; drd gets store_yaml for its side
  std::string store_yaml;           // more lines under store:, each "    key: value\n"
  std::string extra_yaml;           // more sections under disaster_recovery:, e.g. "  backup:\n    ..."
  std::string ttl = "3s";
  std::string interval = "100ms";
  std::string timeout = "300ms";
  int threshold = 3;
  bool failsafe = true;
};

// A PostgreSQL server for host i (tests/support/pg_cluster.hpp builds them); every drd
// gets the same list, data_dir included, as a real deployment's shared config would.
struct PgHostNode {
  std::string url;
  std::filesystem::path data_dir;
};

class MultiHost {
 public:
  // `ns_host`: index of the host that runs inside `ns` (-1: none).
  MultiHost(int hosts, HostOptions o = {}, NetNs* ns = nullptr, int ns_host = -1);
  ~MultiHost();

  // PostgreSQL instead of SQLite: call before start_etcd() (which writes the configs).
  void use_postgres(std::vector<PgHostNode> nodes) { pg_ = std::move(nodes); }
  void start_etcd();
  void start(int i);  // starts drd i and waits until it answers ping
  void start_all();
  void kill(int i, int sig = 9);
  bool running(int i);
  boost::json::value call(int i, const std::string& method, boost::json::object params = {});
  std::optional<boost::json::value> try_call(int i, const std::string& method, boost::json::object params = {});
  RunResult drctl(int i, std::vector<std::string> args);
  std::string node(int i) const { return "n" + std::to_string(i + 1); }
  std::filesystem::path db(int i) const;
  std::filesystem::path host_dir(int i) const { return dir_ / ("host" + std::to_string(i + 1)); }
  std::filesystem::path socket(int i) const { return host_dir(i) / "state" / "drd.sock"; }
  // The leading drd's index as seen by any running drd, or -1.
  int leader();
  // Waits until exactly one running drd says it leads; returns it (-1 on timeout).
  int wait_leader(std::chrono::milliseconds timeout);
  std::string store_primary();  // from etcd directly
  long long store_term();
  const std::string& prefix() const { return prefix_; }
  std::string logs();
  EtcdCluster& etcd() { return *etcd_; }
  int hosts() const { return hosts_; }
  std::filesystem::path dir() const { return dir_.path(); }
  HostOptions opts;
  std::map<int, std::map<std::string, std::string>> env;  // extra environment of drd i (crash points)

  // (Re)writes host i's drd.yaml from opts (start_etcd writes every host's once).
  void write_config(int i);

 private:
  TempDir dir_;
  int hosts_;
  NetNs* ns_;
  int ns_host_;
  std::vector<int> peer_ports_;
  std::unique_ptr<EtcdCluster> etcd_;
  std::vector<std::unique_ptr<Background>> drd_;
  std::string prefix_;
  std::vector<PgHostNode> pg_;
};

// SQLite: true when a write transaction can start on `file` right now (waits up to `wait`).
bool sqlite_writable(const std::filesystem::path& file, int wait_ms = 0);

// REQUIREs that, within `timeout`, every drd that answers names `primary` and knows every
// other running drd (the failsafe asks the members it has seen).
void require_settled(MultiHost& m, const std::string& primary, std::chrono::milliseconds timeout);

}  // namespace drd::test
