// TLS to etcd with a throwaway CA (tests/support/test_ca.hpp): the JSON-gateway client
// verifies the server certificate and its name, presents a client certificate, and
// authenticates with user/password on top; a real drd leads through it; a wrong CA
// is reported naming the endpoint and the failed verification, never the password.
#include <catch2/catch.hpp>

#include <fstream>
#include <sys/stat.h>

#include <csignal>

#include "daemon/coord/etcd_client.hpp"
#include "tests/etcd/etcd_fixture.hpp"
#include "tests/support/test_ca.hpp"

using namespace drd;
using namespace drd::coord;
using namespace drd::test;
using namespace std::chrono_literals;

namespace {

const std::string kPassword = "tls-Pa55word-7q";

EtcdTls etcd_tls(const TestPki& pki) {
  return EtcdTls{pki.server_cert, pki.server_key, pki.ca_cert, true, pki.client_cert, pki.client_key};
}

// A user `drd` with readwrite on /drd/, then auth on (root must exist for that).
void enable_auth(EtcdCluster& etcd) {
  const std::string ep = etcd.endpoints()[0];
  for (std::vector<std::string> a :
       {std::vector<std::string>{"user", "add", "root:rootpw-x"}, {"user", "add", "drd:" + kPassword},
        {"role", "add", "drd"}, {"role", "grant-permission", "drd", "--prefix=true", "readwrite", "/drd/"},
        {"user", "grant-role", "drd", "drd"}, {"auth", "enable"}}) {
    auto r = etcd.etcdctl(ep, a);
    INFO(a[0] << " " << a[1] << ": " << r.out << r.err);
    REQUIRE(r.exit_code == 0);
  }
  etcd.set_etcdctl_user("root:rootpw-x");
}

std::string port_of(const std::string& endpoint) { return endpoint.substr(endpoint.rfind(':') + 1); }

}  // namespace

TEST_CASE("etcd client over TLS: CA, host name, client certificate and user auth", "[etcd][tls]") {
  TempDir dir("drd-etcd-tls");
  TestPki pki(dir / "pki");
  // 127.0.0.2 is loopback too, but not a name in the server certificate.
  EtcdCluster etcd(dir / "etcd", 1, "127.0.0.2", etcd_tls(pki));
  enable_auth(etcd);
  const std::string ep = etcd.endpoints()[0];
  REQUIRE(ep.rfind("https://127.0.0.1:", 0) == 0);
  const std::string port = port_of(ep);

  EtcdOptions good;
  good.endpoints = {ep};
  good.ca_file = pki.ca_cert;
  good.cert_file = pki.client_cert;
  good.key_file = pki.client_key;
  good.username = "drd";
  good.password = kPassword;
  good.timeout = Millis(3000);

  SECTION("the right CA, by IP and by name") {
    EtcdClient c(good);
    auto put = c.put("/drd/tls", "1");
    INFO((put ? std::string() : put.error().message));
    REQUIRE(put);
    CHECK(c.range("/drd/tls")->front().value == "1");
    auto by_name = good;
    by_name.endpoints = {"https://localhost:" + port};  // subjectAltName DNS:localhost
    EtcdClient n(by_name);
    auto r = n.range("/drd/tls");
    INFO((r ? std::string() : r.error().message));
    REQUIRE(r);
    CHECK(r->front().value == "1");
    auto h = c.health(Millis(2000));
    REQUIRE(h.size() == 1);
    INFO(h[0].error);
    CHECK(h[0].ok);
  }

  auto failure = [&](EtcdOptions o) {
    o.timeout = Millis(2000);
    EtcdClient c(o);
    auto r = c.range("/drd/tls");
    REQUIRE_FALSE(r);
    const std::string msg = r.error().message;
    CHECK(msg.find(kPassword) == std::string::npos);
    return msg;
  };

  SECTION("a CA that did not sign the server certificate") {
    auto o = good;
    o.ca_file = pki.wrong_ca_cert;
    const std::string msg = failure(o);
    INFO(msg);
    CHECK(msg.find(ep) != std::string::npos);
    CHECK(msg.find("TLS handshake") != std::string::npos);
    CHECK(msg.find("certificate verify failed") != std::string::npos);
    // The health check (status) says the same.
    EtcdClient c(o);
    auto h = c.health(Millis(2000));
    REQUIRE(h.size() == 1);
    CHECK_FALSE(h[0].ok);
    CHECK(h[0].error.find("certificate verify failed") != std::string::npos);
  }

  SECTION("a name the certificate does not carry") {
    auto o = good;
    o.endpoints = {"https://127.0.0.2:" + port};
    const std::string msg = failure(o);
    INFO(msg);
    CHECK(msg.find("127.0.0.2") != std::string::npos);
    CHECK(msg.find("certificate verify failed") != std::string::npos);
    CHECK(msg.find("IP address mismatch") != std::string::npos);
  }

  SECTION("no client certificate where etcd asks for one") {
    auto o = good;
    o.cert_file.reset();
    o.key_file.reset();
    const std::string msg = failure(o);
    INFO(msg);
    CHECK(msg.find(ep) != std::string::npos);
  }

  SECTION("plain http to a TLS port, and a wrong password over TLS") {
    auto o = good;
    o.endpoints = {"http://127.0.0.1:" + port};
    failure(o);
    o = good;
    o.password = "not-the-password";
    const std::string msg = failure(o);
    INFO(msg);
    CHECK(msg.find("not-the-password") == std::string::npos);
    CHECK(msg.find("authentication") != std::string::npos);
  }

  SECTION("a CA file that does not exist") {
    auto o = good;
    o.ca_file = dir / "missing-ca.crt";
    const std::string msg = failure(o);
    INFO(msg);
    CHECK(msg.find("missing-ca.crt") != std::string::npos);
  }
}

TEST_CASE("drd leads through etcd over TLS with auth - a wrong CA is reported, never the password", "[etcd][tls]") {
  TempDir keys("drd-etcd-tls-pki");
  TestPki pki(keys / "pki");
  const auto pw_file = keys / "etcd-password";
  write_file(pw_file, kPassword + "\n");
  ::chmod(pw_file.c_str(), 0600);
  auto store_yaml = [&](const std::filesystem::path& ca) {
    return "    tls:\n      ca_file: " + ca.string() + "\n      cert_file: " + pki.client_cert.string() +
           "\n      key_file: " + pki.client_key.string() + "\n    username: drd\n    password_file: " +
           pw_file.string() + "\n";
  };
  HostOptions ho;
  ho.etcd_members = 1;
  ho.etcd_tls = etcd_tls(pki);
  ho.store_yaml = store_yaml(pki.ca_cert);
  MultiHost m(1, ho);
  m.start_etcd();
  enable_auth(m.etcd());
  m.start(0);
  REQUIRE(m.wait_leader(15s) == 0);
  auto st = m.call(0, "status");
  auto& health = st.at("cluster").at("store_health").as_object();
  CHECK(health.at("ok").as_bool());
  CHECK(health.at("endpoints").as_array()[0].as_string().find("https://") == 0);
  CHECK(m.store_primary() == "n1");
  auto shown = m.drctl(0, {"status"});
  CHECK(shown.exit_code == 0);
  auto shown_json = m.drctl(0, {"status", "--json"});

  // The same drd with a CA that did not sign etcd's certificate: it runs, does not
  // lead, and says why (endpoint and certificate verification), in status and log.
  m.kill(0, SIGTERM);
  m.opts.store_yaml = store_yaml(pki.wrong_ca_cert);
  m.write_config(0);
  m.start(0);
  std::string error;
  bool reported = eventually([&] {
    auto s = m.call(0, "status");
    auto& h = s.at("cluster").at("store_health").as_object();
    if (h.at("ok").as_bool()) return false;
    error = h.at("error").as_string().c_str();
    return error.find("certificate verify failed") != std::string::npos;
  }, 15s);
  INFO(error << "\n" << m.logs());
  CHECK(reported);
  CHECK(error.find(m.etcd().endpoints()[0]) != std::string::npos);
  CHECK_FALSE(m.call(0, "status").at("cluster").at("leading").as_bool());
  auto wrong_json = m.drctl(0, {"status", "--json"});
  auto wrong_text = m.drctl(0, {"status"});
  CHECK(m.running(0));

  for (const std::string& out : {m.logs(), shown.out + shown.err, shown_json.out, wrong_json.out,
                                 wrong_text.out + wrong_text.err, boost::json::serialize(st)})
    CHECK(out.find(kPassword) == std::string::npos);
}
