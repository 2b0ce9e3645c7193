#pragma once
// A real PostgreSQL 15 cluster (PgCluster: node0 primary, node1..N standbys)
// watched by a real drd process started from build/bin with a YAML config
// written here (control socket and state in a temporary folder).
#include <boost/json.hpp>
#include <functional>
#include <memory>
#include <set>
#include <string>

#include "common/rpc.hpp"
#include "tests/support/pg_cluster.hpp"
#include "tests/support/process.hpp"
#include "tests/support/temp_dir.hpp"

namespace drd::test {

struct PgDrdOptions {
  int standbys = 2;
  std::string interval = "200ms";
  std::string timeout = "500ms";
  int threshold = 3;
  bool auto_failover = true;
  bool synchronous = false;
  std::map<std::string, std::string> pg_settings;
  std::string extra_failover_yaml;  // more lines under failover:, each "    key: value\n"
  // Nodes in drd's configuration whose server does not exist yet (PgCluster::add_spare),
  // named after the standbys: node<standbys+1>...
  int spare_nodes = 0;
  bool data_checksums = true;  // false: no checksums and wal_log_hints off (pg_rewind impossible)
  std::string extra_yaml;           // more sections under disaster_recovery:, e.g. "  backup:\n    ..."
  std::string hba;                  // every node's pg_hba.conf (PgClusterOptions::hba)
  // Node i's url: in drd's config (default PgCluster::url(i)), and more lines for its
  // entry (each "      key: value\n", e.g. password_file).
  std::function<std::string(int i, int port)> node_url;
  std::function<std::string(int i)> node_yaml;
};

class PgDrdFixture {
 public:
  explicit PgDrdFixture(PgDrdOptions opts = {});
  ~PgDrdFixture();

  // Starts drd (with `env` added to its environment) and waits until it
  // answers and has a primary. May be called again after the process ended.
  void start(const std::map<std::string, std::string>& env = {});
  // The same, but waits only until drd answers status (it may have elected no primary).
  void start_unsettled(const std::map<std::string, std::string>& env = {});
  // SIGKILLs drd (if it still runs) and reaps it.
  void kill_drd();
  Background* process() { return drd_.get(); }
  boost::json::value call(const std::string& method, boost::json::object params = {});
  rpc::CallError call_error(const std::string& method, boost::json::object params = {});
  boost::json::object status();
  boost::json::object node_status(const std::string& name);
  RunResult drctl(std::vector<std::string> args);
  std::string log() const { return drd_ ? drd_->log() : ""; }
  // Waits until drd's status names `name` as primary.
  bool wait_primary(const std::string& name, std::chrono::milliseconds timeout = std::chrono::seconds(20));
  // Waits until drd's status shows `name` with replication note starting with "streaming".
  bool wait_streaming_in_status(const std::string& name, std::chrono::milliseconds timeout = std::chrono::seconds(20));

  // The libpq multi-host URI with target_session_attrs=read-write over every node.
  std::string multi_host_url() const;
  // A drd-pg-writer in the background writing through multi_host_url().
  std::unique_ptr<Background> start_writer(double seconds, double rate, const std::string& ack_name = "acks.txt");

  PgCluster& pg() { return *pg_; }
  std::filesystem::path dir() const { return dir_.path(); }
  std::filesystem::path socket() const { return dir_ / "state" / "drd.sock"; }
  PgDrdOptions opts;
  // (Re)writes drd.yaml from opts; the constructor writes it once. A running drd
  // sees the change at its next start.
  void write_config();

 private:
  void launch(const std::map<std::string, std::string>& env, bool settled);
  TempDir dir_;
  std::unique_ptr<PgCluster> pg_;
  std::unique_ptr<Background> drd_;
};

// Acknowledged writer ids in an ack file ("id unix_ms port" lines).
struct Ack {
  long long id, ms;
  int port;
};
std::vector<Ack> read_acks(const std::filesystem::path& file);
// Every id in `table` on node `i` (empty when it cannot be read).
std::set<long long> ids_on(PgCluster& pg, int i, const std::string& table = "drd_writer");

}  // namespace drd::test
