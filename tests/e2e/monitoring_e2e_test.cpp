// Monitoring through a real drd: alert rules notify a real webhook receiver,
// /primary/NODE follows a failover, /metrics and the status page answer.
#include <catch2/catch.hpp>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <thread>

#include "tests/e2e/drd_fixture.hpp"

using namespace drd::test;

namespace {

int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

// "CODE BODY" of an HTTP GET, via python's urllib (no HTTP client in the test's dependencies).
std::string http_get(int port, const std::string& path) {
  auto r = run({"python3", "-c",
                "import sys,urllib.request,urllib.error\n"
                "try:\n"
                "  r=urllib.request.urlopen('http://127.0.0.1:'+sys.argv[1]+sys.argv[2], timeout=5)\n"
                "  print(r.status, r.read().decode())\n"
                "except urllib.error.HTTPError as e:\n"
                "  print(e.code, e.read().decode())\n",
                std::to_string(port), path});
  return r.out;
}

}  // namespace

TEST_CASE("alerts reach a webhook, /primary follows failover, /metrics and / answer", "[e2e][monitoring]") {
  int hook_port = free_port(), http_port = free_port();
  DrdFixture f;
  f.opts.extra_yaml =
      "  alerts:\n"
      "    channels:\n"
      "      hook: { type: webhook, url: \"http://127.0.0.1:" + std::to_string(hook_port) + "/hook\" }\n"
      "    rules:\n"
      "      - name: standby_down\n"
      "        metric: up\n"
      "        op: \"<\"\n"
      "        threshold: 1\n"
      "        for: 0s\n"
      "        severity: critical\n"
      "        nodes: [secondary2]\n"
      "        channels: [hook]\n"
      "  http:\n"
      "    listen: 127.0.0.1:" + std::to_string(http_port) + "\n";
  f.write_config();
  Background receiver({"python3", "-c",
                       "import sys,http.server\n"
                       "class H(http.server.BaseHTTPRequestHandler):\n"
                       "  def do_POST(self):\n"
                       "    body=self.rfile.read(int(self.headers['Content-Length']))\n"
                       "    open(sys.argv[2],'ab').write(body+b'\\n')\n"
                       "    self.send_response(200); self.end_headers()\n"
                       "  def log_message(self,*a): pass\n"
                       "http.server.HTTPServer(('127.0.0.1',int(sys.argv[1])),H).serve_forever()",
                       std::to_string(hook_port), (f.dir() / "hooks.jsonl").string()},
                      f.dir() / "receiver.log");
  f.start();
  CHECK_THAT(http_get(http_port, "/primary/primary"), Catch::StartsWith("200"));
  CHECK_THAT(http_get(http_port, "/primary/secondary1"), Catch::StartsWith("503"));
  CHECK_THAT(http_get(http_port, "/health"), Catch::StartsWith("200"));
  auto metrics = http_get(http_port, "/metrics");
  CHECK_THAT(metrics, Catch::StartsWith("200"));
  CHECK_THAT(metrics, Catch::Contains("drd_build_info"));
  auto page = http_get(http_port, "/");
  CHECK_THAT(page, Catch::Contains("<svg"));

  // A standby breaks: the rule fires once; it is repaired (re-seeded): resolved once.
  std::filesystem::remove(f.db("secondary2"));
  std::filesystem::create_directories(f.db("secondary2"));
  auto hooks = [&] { return read_file(f.dir() / "hooks.jsonl"); };
  CHECK(eventually([&] { return hooks().find("\"firing\"") != std::string::npos; }, std::chrono::seconds(15)));
  std::filesystem::remove(f.db("secondary2"));
  CHECK(eventually([&] { return hooks().find("\"resolved\"") != std::string::npos; }, std::chrono::seconds(15)));
  auto text = hooks();
  CHECK(text.find("\"firing\"") == text.rfind("\"firing\""));  // no duplicate notification
  CHECK_THAT(text, Catch::Contains("standby_down"));
  auto alerts = f.call("alerts").as_object();
  CHECK_FALSE(alerts.at("recent").as_array().empty());

  // Failover: HAProxy's check on /primary/NODE flips.
  std::filesystem::rename(f.db("primary"), f.dir() / "away.db");
  CHECK(eventually([&] { return http_get(http_port, "/primary/secondary1").rfind("200", 0) == 0; }));
  CHECK_THAT(http_get(http_port, "/primary/primary"), Catch::StartsWith("503"));
}

TEST_CASE("every failover, automatic or manual, fires failover_happened once on each of its channels",
          "[e2e][monitoring][failover-alert]") {
  const int port_a = free_port(), port_b = free_port();
  DrdFixture f;
  f.opts.extra_yaml =
      "  alerts:\n"
      "    channels:\n"
      "      hook_a: { type: webhook, url: \"http://127.0.0.1:" + std::to_string(port_a) + "/a\" }\n"
      "      hook_b: { type: webhook, url: \"http://127.0.0.1:" + std::to_string(port_b) + "/b\" }\n"
      "    rules:\n"
      "      - name: failover_happened\n"
      "        metric: failover\n"
      "        severity: critical\n"
      "        channels: [hook_a, hook_b]\n";
  f.write_config();
  const std::string receiver =
      "import sys,http.server\n"
      "class H(http.server.BaseHTTPRequestHandler):\n"
      "  def do_POST(self):\n"
      "    body=self.rfile.read(int(self.headers['Content-Length']))\n"
      "    open(sys.argv[2],'ab').write(body+b'\\n')\n"
      "    self.send_response(200); self.end_headers()\n"
      "  def log_message(self,*a): pass\n"
      "http.server.HTTPServer(('127.0.0.1',int(sys.argv[1])),H).serve_forever()";
  Background a({"python3", "-c", receiver, std::to_string(port_a), (f.dir() / "a.jsonl").string()}, f.dir() / "a.log");
  Background b({"python3", "-c", receiver, std::to_string(port_b), (f.dir() / "b.jsonl").string()}, f.dir() / "b.log");
  f.start();
  auto fired = [&](const char* file) {
    std::size_t n = 0;
    const std::string text = read_file(f.dir() / file);
    for (auto p = text.find("\"rule\":\"failover_happened\""); p != std::string::npos;
         p = text.find("\"rule\":\"failover_happened\"", p + 1))
      ++n;
    return n;
  };

  // 1. Automatic: the primary's file disappears.
  std::filesystem::rename(f.db("primary"), f.dir() / "away.db");
  REQUIRE(eventually([&] { return f.call("status").at("primary").as_string() == "secondary1"; }));
  CHECK(eventually([&] { return fired("a.jsonl") == 1 && fired("b.jsonl") == 1; }, std::chrono::seconds(15)));

  // 2. Manual, a few seconds later (well within the same minute).
  auto r = f.drctl({"failover", "secondary2"});
  INFO(r.out << r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(eventually([&] { return fired("a.jsonl") == 2 && fired("b.jsonl") == 2; }, std::chrono::seconds(15)));

  // Exactly once each: nothing more arrives, and never a "resolved".
  std::this_thread::sleep_for(std::chrono::seconds(2));
  INFO(read_file(f.dir() / "a.jsonl"));
  CHECK(fired("a.jsonl") == 2);
  CHECK(fired("b.jsonl") == 2);
  CHECK(read_file(f.dir() / "a.jsonl").find("\"resolved\"") == std::string::npos);
  CHECK_THAT(read_file(f.dir() / "a.jsonl"), Catch::Contains("primary -> secondary1 (auto"));
  CHECK_THAT(read_file(f.dir() / "a.jsonl"), Catch::Contains("secondary1 -> secondary2 (manual"));
  auto recent = f.call("alerts").at("recent").as_array();
  std::size_t in_recent = 0;
  for (auto& n : recent)
    if (n.at("rule").as_string() == "failover_happened") ++in_recent;
  CHECK(in_recent == 2);
}
