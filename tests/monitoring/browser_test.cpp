// Renders the status page in headless Chromium and keeps the screenshot under
// the build folder (monitoring-status-page.png) as an artifact. Skipped, with a
// warning, when /usr/bin/chromium is not installed (apt install chromium).
#include <catch2/catch.hpp>

#include <boost/asio.hpp>

#include <filesystem>
#include <fstream>
#include <thread>

#include "common/process.hpp"
#include "daemon/observability/http_server.hpp"
#include "tests/support/temp_dir.hpp"

using namespace drd;
using namespace drd::monitoring;
using namespace std::chrono_literals;
namespace json = boost::json;
namespace asio = boost::asio;

TEST_CASE("the status page renders in headless Chromium", "[browser]") {
  const std::filesystem::path chromium = "/usr/bin/chromium";
  if (!std::filesystem::exists(chromium)) {
    WARN("skipped: /usr/bin/chromium is not installed (apt install chromium)");
    return;
  }
  asio::io_context io;
  auto control = asio::make_strand(io);
  auto work = asio::make_work_guard(io);
  std::thread loop([&] { io.run(); });

  MetricsRecorder rec;
  const SysTime now = std::chrono::system_clock::now();
  for (int i = 0; i < 360; ++i) {
    const SysTime t = now - std::chrono::seconds(10 * i);
    rec.on_probe("primary", t, true, 0.5 + (i % 17) * 0.1);
    rec.on_probe("secondary1", t, i % 40 != 0, 1.0 + (i % 23) * 0.2);
  }
  HttpProviders p;
  p.status = [] {
    return json::parse(R"({"enabled": true, "primary": "primary", "term": 2, "monitoring": true,
      "auto_failover": true, "auto_backup": true, "failure_threshold": 3, "failover_state": "normal",
      "nodes": [{"name": "primary", "type": "primary", "role": "primary", "priority": 0, "engine": "sqlite",
                 "healthy": true, "connection": "ok", "response_time_ms": 0.61},
                {"name": "secondary1", "type": "secondary", "role": "standby", "priority": 1, "engine": "sqlite",
                 "healthy": true, "connection": "ok", "response_time_ms": 1.4, "lag_bytes": 4096, "lag_ms": 12}]})");
  };
  p.alerts = [] { return json::value(json::object{{"firing", json::array{}}}); };
  p.chart = [&rec](SysTime t) { return rec.chart(t, {"primary", "secondary1"}); };
  HttpServerOptions o;
  o.listen = "127.0.0.1:0";
  HttpServer server(io, control, o, p);
  REQUIRE(server.start().ok());

  test::TempDir profile("drd-chromium");
  const std::filesystem::path png = std::filesystem::path(DRD_BIN_DIR).parent_path() / "monitoring-status-page.png";
  std::filesystem::remove(png);
  ProcessSpec spec;
  spec.argv = {chromium.string(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--user-data-dir=" + profile.path().string(), "--screenshot=" + png.string(), "--window-size=1200,900",
               "http://127.0.0.1:" + std::to_string(server.port()) + "/"};
  spec.timeout = 60s;
  RealProcessRunner runner;
  auto out = runner.run(spec);
  server.stop();
  work.reset();
  io.stop();
  loop.join();
  REQUIRE(out.ok());
  INFO(out->output);
  CHECK(out->success());
  REQUIRE(std::filesystem::exists(png));
  CHECK(std::filesystem::file_size(png) > 10'000);  // a real page, not a blank one
  std::ifstream f(png, std::ios::binary);
  char magic[8] = {};
  f.read(magic, 8);
  CHECK(std::string(magic + 1, 3) == "PNG");
}
