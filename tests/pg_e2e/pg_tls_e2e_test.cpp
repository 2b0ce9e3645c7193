// PostgreSQL over TLS end to end: a real primary and standbys serving TLS only
// (ssl=on, hostssl lines only in pg_hba.conf, scram passwords), certificates from a
// throwaway CA (tests/support/test_ca.hpp), and a real drd whose URLs say
// sslmode=verify-full with sslrootcert. Checks status, a kill -9 failover, the
// repointed standby's primary_conninfo, a pg_rewind rejoin over TLS, libpq's host
// name rules, a wrong CA (a configuration problem: reported, no failover), passwords
// from the URL, password_file and PGPASSFILE, and that
// the password shows up nowhere: drd's log, status, audit, drctl output, /proc.
#include <catch2/catch.hpp>
#include <libpq-fe.h>
#include <sys/stat.h>

#include <atomic>
#include <fstream>
#include <sstream>
#include <thread>

#include "tests/pg_e2e/pg_drd_fixture.hpp"
#include "tests/support/test_ca.hpp"

using namespace drd::test;
using namespace std::chrono_literals;
namespace json = boost::json;
namespace fs = std::filesystem;

namespace {

const std::string kPassword = "Tls-s3cret-Qx7";

// TLS only: no `host` lines, so a plain TCP connection finds no pg_hba.conf entry.
// The harness itself connects as postgres (sslmode prefer: it gets TLS).
const char* kTlsHba =
    "local all all trust\n"
    "local replication all trust\n"
    "hostssl all drd_pw 127.0.0.1/32 scram-sha-256\n"
    "hostssl replication drd_pw 127.0.0.1/32 scram-sha-256\n"
    "hostssl all postgres 127.0.0.1/32 trust\n"
    "hostssl replication postgres 127.0.0.1/32 trust\n";

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Where the CA lives: readable by the postgres user (a standby's walreceiver and
// pg_rewind read sslrootcert too), so the folder is 0755, not a 0700 TempDir.
struct Pki {
  TempDir dir{"drd-pg-tls"};
  std::unique_ptr<TestPki> pki;
  fs::path password_file;
  Pki() {
    ::chmod(dir.path().c_str(), 0755);
    pki = std::make_unique<TestPki>(dir / "pki", PgCluster::kOsUser);
    password_file = dir / "pg-password";
    write_file(password_file, kPassword + "\n");
    ::chmod(password_file.c_str(), 0600);
  }
};

PgDrdOptions tls_options(const Pki& k, int standbys) {
  PgDrdOptions o;
  o.standbys = standbys;
  o.hba = kTlsHba;
  o.pg_settings = {{"ssl", "on"},
                   {"ssl_cert_file", k.pki->server_cert.string()},
                   {"ssl_key_file", k.pki->server_key.string()},
                   {"password_encryption", "scram-sha-256"}};
  return o;
}

std::string tls_url(const std::string& userinfo, const std::string& host, int port, const fs::path& ca,
                    const std::string& mode = "verify-full") {
  return "postgresql://" + userinfo + "@" + host + ":" + std::to_string(port) + "/postgres?sslmode=" + mode +
         "&sslrootcert=" + ca.string() + "&connect_timeout=2";
}

// The role drd connects as, replicated to every standby before drd starts.
void create_role(PgCluster& pg) {
  pg.exec(0, "CREATE ROLE drd_pw LOGIN SUPERUSER REPLICATION PASSWORD '" + kPassword + "'");
  for (int i = 1; i < pg.size(); ++i)
    REQUIRE(pg.wait_for(i, "SELECT count(*) FROM pg_roles WHERE rolname = 'drd_pw'", "1"));
}

// A libpq connection attempt; "" when it worked, else libpq's message.
std::string try_connect(const std::string& conninfo) {
  PGconn* c = PQconnectdb(conninfo.c_str());
  std::string err = PQstatus(c) == CONNECTION_OK ? "" : PQerrorMessage(c);
  PQfinish(c);
  return err;
}

// Scans every process's command line for `needle` until stopped.
struct ProcWatch {
  std::atomic<bool> stop{false}, seen{false};
  std::string where;
  std::thread t;
  explicit ProcWatch(std::string needle) {
    t = std::thread([this, needle] {
      while (!stop) {
        for (auto& e : fs::directory_iterator("/proc")) {
          auto name = e.path().filename().string();
          if (name.find_first_not_of("0123456789") != std::string::npos) continue;
          std::string cmd = slurp(e.path() / "cmdline");
          if (cmd.find(needle) != std::string::npos && !seen) {
            for (auto& ch : cmd)
              if (ch == '\0') ch = ' ';
            where = cmd;
            seen = true;
          }
        }
        std::this_thread::sleep_for(2ms);
      }
    });
  }
  ~ProcWatch() {
    stop = true;
    t.join();
  }
};

std::string str(const json::value& v) { return std::string(v.as_string()); }

}  // namespace

TEST_CASE("pg over TLS: verify-full URLs, failover, repointed standby and rejoin keep TLS - no password anywhere",
          "[pg_e2e][tls]") {
  Pki k;
  const fs::path ca = k.pki->ca_cert;
  auto o = tls_options(k, 2);
  // node0 and node1: password in the URL (node1 by name: DNS:localhost in the certificate);
  // node2: password_file.
  o.node_url = [&](int i, int port) {
    if (i == 0) return tls_url("drd_pw:" + kPassword, "127.0.0.1", port, ca);
    if (i == 1) return tls_url("drd_pw:" + kPassword, "localhost", port, ca);
    return tls_url("drd_pw", "127.0.0.1", port, ca);
  };
  o.node_yaml = [&](int i) { return i == 2 ? "      password_file: " + k.password_file.string() + "\n" : std::string(); };
  PgDrdFixture f(o);
  auto& pg = f.pg();
  create_role(pg);

  // The servers refuse plain TCP, and libpq's name rules hold: verify-full matches the
  // host against the certificate's subjectAltName (IP:127.0.0.1, DNS:localhost); a
  // name it does not carry fails verify-full but passes verify-ca.
  const int p0 = pg.port(0);
  CHECK_THAT(try_connect("host=127.0.0.1 port=" + std::to_string(p0) + " user=postgres dbname=postgres sslmode=disable"),
             Catch::Contains("no pg_hba.conf entry") && Catch::Contains("no encryption"));
  CHECK(try_connect(tls_url("drd_pw:" + kPassword, "127.0.0.1", p0, ca)) == "");
  CHECK(try_connect(tls_url("drd_pw:" + kPassword, "localhost", p0, ca)) == "");
  const std::string by_ip = "hostaddr=127.0.0.1 host=db.invalid port=" + std::to_string(p0) +
                            " user=drd_pw password=" + kPassword + " dbname=postgres sslrootcert=" + ca.string();
  CHECK_THAT(try_connect(by_ip + " sslmode=verify-full"), Catch::Contains("does not match host name"));
  CHECK(try_connect(by_ip + " sslmode=verify-ca") == "");
  CHECK_THAT(try_connect(tls_url("drd_pw:" + kPassword, "127.0.0.1", p0, k.pki->wrong_ca_cert)),
             Catch::Contains("certificate verify failed"));

  f.start();
  REQUIRE(f.wait_streaming_in_status("node1"));
  REQUIRE(f.wait_streaming_in_status("node2"));
  const auto st = f.status();
  for (auto& n : st.at("nodes").as_array()) {
    INFO(json::serialize(n));
    CHECK(n.at("healthy").as_bool());
    if (str(n.at("name")) != "node0") CHECK(n.as_object().contains("position"));
  }
  CHECK(str(f.node_status("node0").at("role")) == "primary");
  CHECK(str(f.node_status("node2").at("role")) == "standby");
  // drd's own sessions are TLS (pg_stat_ssl on the primary, drd's application name).
  CHECK(pg.query(0, "SELECT bool_and(s.ssl)::text FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) "
                    "WHERE a.usename = 'drd_pw'") == std::optional<std::string>("true"));

  // kill -9 of the primary: node1 is promoted over TLS; node2 is repointed to it.
  pg.exec(0, "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t VALUES (1)");
  REQUIRE(pg.wait_for(2, "SELECT count(*) FROM t", "1"));
  pg.kill9(0);
  REQUIRE(f.wait_primary("node1", 20s));
  REQUIRE(pg.wait_for(1, "SELECT (NOT pg_is_in_recovery() AND current_setting('default_transaction_read_only') = 'off')::text",
                      "true", 15s));
  pg.exec(1, "INSERT INTO t VALUES (2)");
  REQUIRE(pg.wait_for(2, "SELECT count(*) FROM t WHERE id = 2", "1", 20s));
  // node2 streams from node1 over TLS with the conninfo drd wrote: node1's URL settings.
  const std::string auto_conf = slurp(pg.data_dir(2) / "postgresql.auto.conf");
  INFO(auto_conf);
  // ALTER SYSTEM doubles the conninfo's own quotes.
  CHECK(auto_conf.find("sslmode=''verify-full''") != std::string::npos);
  CHECK(auto_conf.find("sslrootcert=''" + ca.string() + "''") != std::string::npos);
  CHECK(auto_conf.find("host=''localhost''") != std::string::npos);
  REQUIRE(pg.wait_for(1, "SELECT s.ssl::text FROM pg_stat_ssl s JOIN pg_stat_replication r USING (pid) "
                         "WHERE r.application_name = 'node2'", "true", 10s));

  // Rejoin node0 with pg_rewind (source: node1 over verify-full TLS); meanwhile no
  // process has the password on its command line.
  RunResult rejoin;
  bool on_cmdline = false;
  std::string cmdline;
  {
    ProcWatch watch(kPassword);
    rejoin = f.drctl({"rejoin", "node0"});
    on_cmdline = watch.seen;
    cmdline = watch.where;
  }
  INFO(rejoin.out << rejoin.err << f.log());
  REQUIRE(rejoin.exit_code == 0);
  CHECK_FALSE(on_cmdline);
  INFO(cmdline);
  REQUIRE(pg.wait_for(1, "SELECT s.ssl::text FROM pg_stat_ssl s JOIN pg_stat_replication r USING (pid) "
                         "WHERE r.application_name = 'node0'", "true", 15s));
  REQUIRE(f.wait_streaming_in_status("node0"));

  // The password is nowhere drd or drctl writes.
  std::vector<std::pair<std::string, std::string>> outputs = {
      {"drd log", f.log()},
      {"status", json::serialize(f.status())},
      {"drctl status", f.drctl({"status"}).out},
      {"drctl status --json", f.drctl({"status", "--json"}).out},
      {"drctl history", f.drctl({"history"}).out},
      {"audit", json::serialize(f.call("audit", {{"limit", 1000}}))},
      {"drctl audit", f.drctl({"audit"}).out},
  };
  for (auto& [what, text] : outputs) {
    INFO(what);
    CHECK(text.find(kPassword) == std::string::npos);
  }
}

TEST_CASE("pg over TLS: a wrong CA for the primary is a named configuration problem, not a failover",
          "[pg_e2e][tls]") {
  Pki k;
  auto o = tls_options(k, 1);
  fs::path node0_ca = k.pki->ca_cert;
  // node1's password comes from libpq's PGPASSFILE (in drd's environment), no URL password.
  o.node_url = [&, right = k.pki->ca_cert](int i, int port) {
    return i == 0 ? tls_url("drd_pw:" + kPassword, "127.0.0.1", port, node0_ca)
                  : tls_url("drd_pw", "127.0.0.1", port, right);
  };
  PgDrdFixture f(o);
  create_role(f.pg());
  const fs::path pgpass = k.dir / "pgpass";
  write_file(pgpass, "127.0.0.1:" + std::to_string(f.pg().port(1)) + ":*:drd_pw:" + kPassword + "\n");
  ::chmod(pgpass.c_str(), 0600);
  const std::map<std::string, std::string> env{{"PGPASSFILE", pgpass.string()}};
  f.start(env);
  REQUIRE(f.wait_streaming_in_status("node1"));

  // The operator points node0's sslrootcert at the wrong CA and restarts drd.
  f.kill_drd();
  node0_ca = k.pki->wrong_ca_cert;
  f.write_config();
  f.start(env);
  std::string err;
  REQUIRE(eventually([&] {
    auto n = f.node_status("node0");
    err = str(n.at("last_error"));
    return !n.at("healthy").as_bool() && err.find("certificate verify failed") != std::string::npos;
  }, 10s));
  INFO(err << "\n" << f.log());
  CHECK_THAT(err, Catch::Contains("configuration"));
  CHECK(f.node_status("node0").contains("config_problem"));
  // Several failure thresholds later: still node0, still writable, node1 still a standby.
  std::this_thread::sleep_for(2s);
  auto st = f.status();
  CHECK(str(st.at("primary")) == "node0");
  CHECK(f.pg().query(1, "SELECT pg_is_in_recovery()") == std::optional<std::string>("t"));
  CHECK(f.pg().query(0, "SELECT pg_is_in_recovery()") == std::optional<std::string>("f"));
  CHECK(f.drctl({"history"}).out.find("node1") == std::string::npos);
  CHECK(f.node_status("node1").at("healthy").as_bool());  // through PGPASSFILE
  CHECK_THAT(f.log(), Catch::Contains("configuration problem"));
  for (const std::string& text : {f.log(), json::serialize(st), f.drctl({"status", "--json"}).out})
    CHECK(text.find(kPassword) == std::string::npos);
}
