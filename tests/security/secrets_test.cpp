// Secrets never appear anywhere drd writes: a real drd on real SQLite files is given a webhook
// URL carrying a token, an HTTP bearer token file and a backup key file, is made to use all
// three (alerts delivered and failing, /metrics served, an encrypted backup taken), is called
// with parameters holding a password and a password-bearing URL, and then every output is
// searched for every secret: drd's log, every drctl --json answer, /metrics and the status
// page, the webhook bodies, and the bytes of every file drd created (state database, WAL,
// audit log, backups and manifests).
#include <catch2/catch.hpp>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <iterator>

#include "tests/e2e/drd_fixture.hpp"
#include "tests/monitoring/receiver.hpp"

using namespace drd::test;
namespace fs = std::filesystem;
namespace json = boost::json;

namespace {

// Distinctive so that a hit can only be a leak.
const std::string kWebhookToken = "WHTOKEN-9c41e7d2a";
const std::string kHttpToken = "HTTPTOKEN-3f0b8a61c";
const std::string kBackupKeyHex = "c0ffee11d00dfeed2233445566778899aabbccddeeff00112233445566778899";
const std::string kParamPassword = "s3cret-param-77e1";
const std::string kUrlPassword = "urlpass-51d9c0";

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void write_secret(const fs::path& p, const std::string& text) {
  std::ofstream(p, std::ios::trunc) << text << "\n";
  ::chmod(p.c_str(), 0600);
}

unsigned short free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

// One plain HTTP/1.0 GET on loopback; the whole response (status line, headers, body).
std::string http_get(unsigned short port, const std::string& path, const std::string& bearer = "") {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return "";
  }
  std::string req = "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n";
  if (!bearer.empty()) req += "Authorization: Bearer " + bearer + "\r\n";
  req += "\r\n";
  (void)!::write(fd, req.data(), req.size());
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) out.append(buf, static_cast<std::size_t>(n));
  ::close(fd);
  return out;
}

// Every secret, with where it was found.
void require_no_secret(const std::string& where, const std::string& text) {
  for (const auto* s : {&kWebhookToken, &kHttpToken, &kBackupKeyHex, &kParamPassword, &kUrlPassword}) {
    const auto at = text.find(*s);
    // Only the surroundings of a hit: some outputs are binary (the state database).
    INFO(where << " contains the secret " << *s << ": ..."
               << (at == std::string::npos ? "" : text.substr(at < 300 ? 0 : at - 300, 600)) << "...");
    CHECK(at == std::string::npos);
  }
}

}  // namespace

TEST_CASE("no secret appears in any log, reply, endpoint or file drd writes", "[security][secrets]") {
  HttpReceiver hook;
  const unsigned short http_port = free_port();
  DrdOptions o;
  o.standbys = 1;
  o.extra_yaml =
      "  backup:\n"
      "    enabled: true\n"
      "    directory: ./backups\n"
      "    encryption: { key_file: ./backup.key }\n"
      "  alerts:\n"
      "    channels:\n"
      "      hook_ok: { type: webhook, url: \"" + hook.url("/hook?token=" + kWebhookToken) + "\", retries: 0 }\n"
      "      hook_dead: { type: webhook, url: \"http://127.0.0.1:1/dead?token=" + kWebhookToken +
      "\", retries: 0, timeout: 1s }\n"
      "    rules:\n"
      "      - { name: always, metric: up, op: \">=\", threshold: 0, severity: info, channels: [hook_ok, hook_dead] }\n"
      "  http:\n"
      "    listen: 127.0.0.1:" + std::to_string(http_port) + "\n"
      "    token_file: ./http.token\n";
  DrdFixture f(o);
  write_secret(f.dir() / "backup.key", kBackupKeyHex);
  write_secret(f.dir() / "http.token", kHttpToken);
  f.start();

  // Use every secret: alerts delivered (and failing on the dead channel), the token checked,
  // an encrypted backup written and verified.
  REQUIRE(hook.wait_for(1, std::chrono::seconds(15)));
  const std::string metrics = http_get(http_port, "/metrics", kHttpToken);
  REQUIRE_THAT(metrics, Catch::Contains("200"));
  const std::string refused = http_get(http_port, "/metrics", "wrong-token");
  CHECK_THAT(refused, Catch::Contains("401"));
  const std::string page = http_get(http_port, "/", kHttpToken);

  auto backup = f.drctl({"backup", "--json"});
  INFO(backup.out << backup.err << f.log());
  REQUIRE(backup.exit_code == 0);
  const std::string id(json::parse(backup.out).at("id").as_string());
  auto verify = f.drctl({"verify", id, "--json"});
  REQUIRE(verify.exit_code == 0);

  // State-changing calls carrying secrets in their parameters, succeeding or refused: both
  // are audited. The URL-bearing value goes where a target path would.
  for (const char* method : {"reload", "backup.create", "restore", "failover"}) {
    drd::rpc::Client c(f.socket().string(), std::chrono::seconds(30));
    (void)c.call(method, {{"password", kParamPassword},
                          {"db_password", kParamPassword},
                          {"token", kParamPassword},
                          {"target", "postgresql://app:" + kUrlPassword + "@db.example/app"},
                          {"node", "postgresql://app:" + kUrlPassword + "@db.example/app"}});
  }
  // drd wrote the audit records for all four (the secret-free part is still there).
  auto audit = f.drctl({"audit", "--json"});
  REQUIRE(audit.exit_code == 0);
  for (const char* method : {"reload", "backup.create", "restore", "failover"}) CHECK_THAT(audit.out, Catch::Contains(method));
  CHECK_THAT(audit.out, Catch::Contains("db.example"));

  // Let an alert repeat / fail once more, then stop drd so everything is flushed to disk.
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  std::vector<std::pair<std::string, std::string>> outputs = {
      {"drctl status --json", f.drctl({"status", "--json"}).out},
      {"drctl audit --json", audit.out},
      {"drctl alerts --json", f.drctl({"alerts", "--json"}).out},
      {"drctl backups --json", f.drctl({"backups", "--json"}).out},
      {"drctl history --json", f.drctl({"history", "--json"}).out},
      {"drctl health --json", f.drctl({"health", "--json"}).out},
      {"drctl backup --json", backup.out + backup.err},
      {"drctl verify --json", verify.out + verify.err},
      {"/metrics", metrics},
      {"/metrics refused", refused},
      {"status page", page},
  };
  for (auto& b : hook.bodies()) outputs.emplace_back("webhook body", b);
  REQUIRE(f.stop() == 0);
  outputs.emplace_back("drd log", f.log());
  CHECK(f.log().size() > 0);

  for (auto& [where, text] : outputs) require_no_secret(where, text);

  // Every file drd created under the test folder, byte for byte (state database and its WAL,
  // backups, manifests, catalog, the socket folder). The secret files themselves and the
  // config are ours.
  int files = 0;
  for (auto& e : fs::recursive_directory_iterator(f.dir())) {
    if (!e.is_regular_file()) continue;
    const auto name = e.path().filename().string();
    if (name == "backup.key" || name == "http.token" || name == "drd.yaml") continue;
    ++files;
    require_no_secret(e.path().string(), slurp(e.path()));
  }
  CHECK(files >= 5);
}
