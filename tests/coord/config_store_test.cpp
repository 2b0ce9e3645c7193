// store: and local: in the configuration (common/config_store.cpp).
#include <catch2/catch.hpp>

#include "common/config.hpp"

using namespace drd;

namespace {

ConfigLoadResult load(const std::string& store, const std::string& local = "  local: a\n") {
  return load_config_text("disaster_recovery:\n"
                          "  databases:\n"
                          "    a: { url: \"sqlite:///a.db\", type: primary }\n"
                          "    b: { url: \"sqlite:///b.db\" }\n" +
                              local + store,
                          "drd.yaml", "/etc/drd");
}

std::string problems(const ConfigLoadResult& r) {
  std::string s;
  for (auto& p : r.problems) s += p.to_string() + "\n";
  return s;
}

}  // namespace

TEST_CASE("the local store is the default", "[config][store]") {
  auto r = load("", "");
  REQUIRE(r.config);
  CHECK(r.config->store.type == "local");
  CHECK(r.config->local.empty());
}

TEST_CASE("an etcd store with every option", "[config][store]") {
  auto r = load("  store:\n"
                "    type: etcd\n"
                "    endpoints: [\"https://10.0.0.1:2379\", \"https://10.0.0.2:2379/\"]\n"
                "    prefix: /drd/images/\n"
                "    ttl: 5s\n"
                "    tls: { ca_file: ca.pem, cert_file: c.pem, key_file: k.pem }\n"
                "    username: drd\n"
                "    password_file: etcd.pass\n"
                "    peer_listen: 10.0.0.1:7480\n"
                "    peer_token_file: peer.token\n"
                "    failsafe: false\n");
  INFO(problems(r));
  REQUIRE(r.config);
  auto& s = r.config->store;
  CHECK(s.type == "etcd");
  CHECK(s.endpoints == std::vector<std::string>{"https://10.0.0.1:2379", "https://10.0.0.2:2379"});
  CHECK(s.prefix == "/drd/images");
  CHECK(s.ttl == Millis(5000));
  CHECK(s.ca_file == std::filesystem::path("/etc/drd/ca.pem"));
  CHECK(s.password_file == std::filesystem::path("/etc/drd/etcd.pass"));
  CHECK(s.peer_listen == "10.0.0.1:7480");
  CHECK_FALSE(s.failsafe);
  CHECK(r.config->local == "a");
}

TEST_CASE("store problems are reported with their position", "[config][store]") {
  struct Row {
    const char* what;
    std::string store, local;
    const char* expect;
  } rows[] = {
      {"no endpoints", "  store: { type: etcd }\n", "  local: a\n", "type etcd needs endpoints"},
      {"bad endpoint", "  store: { type: etcd, endpoints: [\"10.0.0.1:2379\"] }\n", "  local: a\n",
       "drd.yaml:6:36: store.endpoints: expected http://HOST:PORT"},
      {"credentials in an endpoint", "  store: { type: etcd, endpoints: [\"http://u:p@h:2379\"] }\n", "  local: a\n",
       "credentials do not belong in an endpoint"},
      {"no local", "  store: { type: etcd, endpoints: [\"http://h:2379\"] }\n", "", "local: required with store.type etcd"},
      {"unknown local", "  store: { type: etcd, endpoints: [\"http://h:2379\"] }\n", "  local: c\n",
       "drd.yaml:5:10: local: no database named 'c'"},
      {"ttl too short", "  store: { type: etcd, endpoints: [\"http://h:2379\"], ttl: 1s }\n", "  local: a\n",
       "store.ttl: must be at least 2s"},
      {"ttl not whole seconds", "  store: { type: etcd, endpoints: [\"http://h:2379\"], ttl: 2500ms }\n", "  local: a\n",
       "whole seconds"},
      {"relative prefix", "  store: { type: etcd, endpoints: [\"http://h:2379\"], prefix: drd }\n", "  local: a\n",
       "store.prefix: must start with '/'"},
      {"username without password", "  store: { type: etcd, endpoints: [\"http://h:2379\"], username: u }\n", "  local: a\n",
       "username and password_file go together"},
      {"tls on http", "  store: { type: etcd, endpoints: [\"http://h:2379\"], tls: { ca_file: x } }\n", "  local: a\n",
       "the endpoints are http://"},
      {"typo", "  store: { type: etcd, endpoints: [\"http://h:2379\"], tl: 3s }\n", "  local: a\n",
       "unknown key 'tl' in store (did you mean 'ttl'?)"},
      {"bad type", "  store: { type: etcdd }\n", "  local: a\n", "did you mean 'etcd'?"},
  };
  for (auto& r : rows) {
    auto res = load(r.store, r.local);
    INFO(r.what << "\n" << problems(res));
    CHECK_FALSE(res.config);
    CHECK(problems(res).find(r.expect) != std::string::npos);
  }
}
