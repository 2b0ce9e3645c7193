#include "tests/pg_e2e/pg_drd_fixture.hpp"

#include <catch2/catch.hpp>
#include <sys/stat.h>

#include <fstream>
#include <sstream>

namespace drd::test {

PgDrdFixture::PgDrdFixture(PgDrdOptions o) : opts(std::move(o)) {
  ::chmod(dir_.path().c_str(), 0755);
  PgClusterOptions po{opts.standbys, opts.pg_settings};
  po.data_checksums = opts.data_checksums;
  po.hba = opts.hba;
  pg_ = std::make_unique<PgCluster>(po);
  pg_->wait_streaming(0);
  for (int i = 0; i < opts.spare_nodes; ++i) pg_->add_spare();
  write_config();
}

PgDrdFixture::~PgDrdFixture() {
  if (drd_ && drd_->running()) {
    drd_->signal(15);
    if (!drd_->wait(std::chrono::seconds(10))) drd_->signal(9);
  }
}

void PgDrdFixture::write_config() {
  std::ofstream f(dir_ / "drd.yaml", std::ios::trunc);
  f << "disaster_recovery:\n"
       "  enabled: true\n"
       "  state_dir: ./state\n"
       "  control:\n"
       "    socket: ./state/drd.sock\n"
       "  databases:\n";
  for (int i = 0; i < pg_->size(); ++i) {
    f << "    node" << i << ":\n"
      << "      name: node" << i << "\n"
      << "      type: " << (i == 0 ? "primary" : "secondary") << "\n"
      << "      priority: " << i << "\n"
      << "      url: \"" << (opts.node_url ? opts.node_url(i, pg_->port(i)) : pg_->url(i)) << "\"\n"
      << "      data_dir: " << pg_->data_dir(i).string() << "\n"
      << "      bin_dir: " << PgCluster::kBinDir << "\n"
      << "      os_user: " << PgCluster::kOsUser << "\n";
    if (opts.node_yaml) f << opts.node_yaml(i);
  }
  f << "  monitoring:\n    enabled: true\n    interval: " << opts.interval << "\n    timeout: " << opts.timeout
    << "\n    failure_threshold: " << opts.threshold << "\n"
    << "  failover:\n    auto: " << (opts.auto_failover ? "true" : "false") << "\n"
    << "    synchronous: " << (opts.synchronous ? "true" : "false") << "\n"
    << opts.extra_failover_yaml << opts.extra_yaml;
}

void PgDrdFixture::kill_drd() {
  if (!drd_) return;
  if (drd_->running()) drd_->signal(9);
  drd_->wait(std::chrono::seconds(10));
}

void PgDrdFixture::start(const std::map<std::string, std::string>& env) { launch(env, /*settled=*/true); }

void PgDrdFixture::start_unsettled(const std::map<std::string, std::string>& env) { launch(env, /*settled=*/false); }

void PgDrdFixture::launch(const std::map<std::string, std::string>& env, bool settled) {
  drd_.reset();  // a previous process has ended (or is killed here); the log file is appended to
  drd_ = std::make_unique<Background>(
      std::vector<std::string>{bin("drd"), "--config", (dir_ / "drd.yaml").string(), "--foreground"}, dir_ / "drd.log",
      env);
  bool up = eventually(
      [&] {
        if (!drd_->running()) return true;
        rpc::Client c(socket().string(), std::chrono::milliseconds(500));
        auto r = c.call("status");
        auto* v = std::get_if<boost::json::value>(&r);
        return v && (!settled || v->as_object().at("primary").as_string() != "");
      },
      std::chrono::seconds(20));
  INFO(log());
  REQUIRE(up);
  REQUIRE(drd_->running());
}

boost::json::value PgDrdFixture::call(const std::string& method, boost::json::object params) {
  rpc::Client c(socket().string(), std::chrono::seconds(120));
  auto r = c.call(method, std::move(params));
  if (auto* e = std::get_if<rpc::CallError>(&r)) {
    INFO(method << " failed: " << e->message << "\n" << log());
    FAIL();
  }
  return std::get<boost::json::value>(r);
}

rpc::CallError PgDrdFixture::call_error(const std::string& method, boost::json::object params) {
  rpc::Client c(socket().string(), std::chrono::seconds(120));
  auto r = c.call(method, std::move(params));
  INFO(method << " unexpectedly succeeded\n" << log());
  REQUIRE(std::holds_alternative<rpc::CallError>(r));
  return std::get<rpc::CallError>(r);
}

boost::json::object PgDrdFixture::status() { return call("status").as_object(); }

boost::json::object PgDrdFixture::node_status(const std::string& name) {
  auto st = status();
  for (auto& n : st.at("nodes").as_array())
    if (n.at("name").as_string() == name) return n.as_object();
  FAIL("no node " << name << " in status");
  return {};
}

RunResult PgDrdFixture::drctl(std::vector<std::string> args) {
  std::vector<std::string> argv{bin("drctl"), "--socket", socket().string()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run(argv, {{"NO_COLOR", "1"}}, std::chrono::seconds(120));
}

bool PgDrdFixture::wait_primary(const std::string& name, std::chrono::milliseconds timeout) {
  return eventually([&] { return status().at("primary").as_string() == name; }, timeout);
}

bool PgDrdFixture::wait_streaming_in_status(const std::string& name, std::chrono::milliseconds timeout) {
  return eventually(
      [&] {
        auto n = node_status(name);
        auto* r = n.if_contains("replication");
        return r && r->is_string() && std::string(r->as_string()).rfind("streaming", 0) == 0;
      },
      timeout);
}

std::string PgDrdFixture::multi_host_url() const {
  std::string hosts;
  for (int i = 0; i < pg_->size(); ++i) hosts += (i ? "," : "") + std::string("127.0.0.1:") + std::to_string(pg_->port(i));
  return "postgresql://postgres@" + hosts + "/postgres?target_session_attrs=read-write&connect_timeout=2";
}

std::unique_ptr<Background> PgDrdFixture::start_writer(double seconds, double rate, const std::string& ack_name) {
  return std::make_unique<Background>(
      std::vector<std::string>{bin("drd-pg-writer"), "--url", multi_host_url(), "--duration", std::to_string(seconds),
                               "--rate", std::to_string(rate), "--ack", (dir_ / ack_name).string(), "--op-timeout",
                               "1000"},
      dir_ / (ack_name + ".log"));
}

std::vector<Ack> read_acks(const std::filesystem::path& file) {
  std::vector<Ack> out;
  std::ifstream in(file);
  Ack a{};
  while (in >> a.id >> a.ms >> a.port) out.push_back(a);
  return out;
}

std::set<long long> ids_on(PgCluster& pg, int i, const std::string& table) {
  std::set<long long> out;
  auto v = pg.query(i, "SELECT coalesce(string_agg(id::text, ','), '') FROM " + table);
  if (!v) return out;
  std::stringstream ss(*v);
  std::string tok;
  while (std::getline(ss, tok, ','))
    if (!tok.empty()) out.insert(std::stoll(tok));
  return out;
}

}  // namespace drd::test
