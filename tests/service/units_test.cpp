// The systemd units: systemd-analyze verify and security, the directives the
// service depends on, and agreement between the units and the packaged config.
#include <catch2/catch.hpp>

#include <map>
#include <regex>
#include <sstream>

#include "common/config.hpp"
#include "tests/service/service_helpers.hpp"

using namespace drd::test;
namespace fs = std::filesystem;

namespace {

// KEY -> every value it is given, from an INI-style unit file (comments skipped).
std::multimap<std::string, std::string> directives(const fs::path& unit) {
  std::multimap<std::string, std::string> out;
  for (auto& l : lines(read_file(unit))) {
    if (l.empty() || l[0] == '#' || l[0] == ';' || l[0] == '[') continue;
    auto eq = l.find('=');
    if (eq == std::string::npos) continue;
    out.emplace(l.substr(0, eq), l.substr(eq + 1));
  }
  return out;
}

std::string one(const std::multimap<std::string, std::string>& d, const std::string& key) {
  auto [a, b] = d.equal_range(key);
  INFO("directive " << key);
  REQUIRE(a != b);
  REQUIRE(std::next(a) == b);
  return a->second;
}

bool systemd_analyze_present() { return run({"sh", "-c", "command -v systemd-analyze"}).exit_code == 0; }

// Copies the units into `dir`, pointing ExecStart at the drd just built
// (verify insists the program exists).
void stage_units(const fs::path& dir) {
  std::string service = read_file(source_dir() / "systemd/drd.service");
  service = std::regex_replace(service, std::regex("/usr/sbin/drd"), bin("drd"));
  write_file(dir / "drd.service", service);
  fs::copy_file(source_dir() / "systemd/drd.socket", dir / "drd.socket");
}

}  // namespace

TEST_CASE("systemd-analyze verify finds nothing to complain about in drd.service and drd.socket", "[service][units]") {
  if (!systemd_analyze_present()) {
    WARN("systemd-analyze is not installed (apt-get install systemd); unit verification skipped");
    return;
  }
  TempDir dir("drd-units");
  stage_units(dir.path());
  auto r = run({"systemd-analyze", "verify", "--man=no", (dir / "drd.service").string(), (dir / "drd.socket").string()});
  INFO("stdout: " << r.out << "\nstderr: " << r.err);
  CHECK(r.exit_code == 0);
  CHECK(r.err.empty());
  CHECK(r.out.empty());
}

TEST_CASE("systemd-analyze security rates the hardened drd.service as OK (exposure below 3)", "[service][units]") {
  if (!systemd_analyze_present()) {
    WARN("systemd-analyze is not installed; security assessment skipped");
    return;
  }
  TempDir dir("drd-units");
  stage_units(dir.path());
  auto r = run({"systemd-analyze", "security", "--offline=yes", "--no-pager", (dir / "drd.service").string()});
  INFO("stdout: " << r.out << "\nstderr: " << r.err);
  std::smatch m;
  REQUIRE(std::regex_search(r.out, m, std::regex("Overall exposure level for drd.service: ([0-9.]+)")));
  CHECK(std::stod(m[1]) < 3.0);
}

TEST_CASE("drd.service: notify with watchdog, restart on failure but not on a bad config, unprivileged and sandboxed",
          "[service][units]") {
  auto d = directives(source_dir() / "systemd/drd.service");
  CHECK(one(d, "Type") == "notify");
  CHECK(one(d, "NotifyAccess") == "main");
  CHECK(one(d, "ExecStart") == "/usr/sbin/drd --config /etc/drd/drd.yaml");
  CHECK(one(d, "ExecReload") == "/bin/kill -HUP $MAINPID");
  CHECK(one(d, "WatchdogSec") == "10s");
  CHECK(one(d, "Restart") == "on-failure");
  CHECK(one(d, "RestartSec") == "1s");
  CHECK(one(d, "RestartPreventExitStatus") == "2");  // drd's exit code for a bad config
  CHECK(one(d, "User") == "drd");
  CHECK(one(d, "Group") == "drd");
  CHECK(one(d, "UMask") == "0027");
  CHECK(one(d, "RuntimeDirectory") == "drd");
  CHECK(one(d, "RuntimeDirectoryMode") == "0750");
  CHECK(one(d, "StateDirectory") == "drd");
  CHECK(one(d, "ConfigurationDirectory") == "drd");
  CHECK(one(d, "CapabilityBoundingSet").empty());
  CHECK(one(d, "ProtectSystem") == "strict");
  CHECK(one(d, "ReadWritePaths") == "/var/lib/drd");
  for (const char* yes : {"ProtectHome", "PrivateTmp", "NoNewPrivileges", "ProtectKernelTunables", "ProtectKernelModules",
                          "ProtectKernelLogs", "ProtectControlGroups", "RestrictNamespaces", "LockPersonality",
                          "MemoryDenyWriteExecute", "RestrictRealtime"}) {
    INFO(yes);
    CHECK(one(d, yes) == "yes");
  }
  CHECK(one(d, "RestrictAddressFamilies") == "AF_UNIX AF_INET AF_INET6 AF_NETLINK");
  CHECK(one(d, "SystemCallArchitectures") == "native");
  CHECK(one(d, "SystemCallFilter") == "@system-service");
  CHECK(one(d, "WantedBy") == "multi-user.target");
}

TEST_CASE("drd.socket, drd.service and the packaged config agree on paths and groups", "[service][units]") {
  auto sock = directives(source_dir() / "systemd/drd.socket");
  auto svc = directives(source_dir() / "systemd/drd.service");
  CHECK(one(sock, "ListenStream") == "/run/drd/drd.sock");
  CHECK(one(sock, "SocketMode") == "0660");
  CHECK(one(sock, "SocketGroup") == "drd");
  CHECK(one(sock, "Service") == "drd.service");

  auto loaded = drd::load_config(source_dir() / "packaging/drd.yaml.packaged");
  for (auto& p : loaded.problems) UNSCOPED_INFO(p.to_string());
  REQUIRE(loaded.config);
  const auto& cfg = *loaded.config;
  // drctl finds /run/drd/drd.sock by default; socket activation hands over ListenStream.
  CHECK(cfg.control.socket == fs::path(one(sock, "ListenStream")));
  CHECK(cfg.control.socket.parent_path() == fs::path("/run") / one(svc, "RuntimeDirectory"));
  CHECK(cfg.control.socket_group == one(sock, "SocketGroup"));
  CHECK(cfg.control.admin_group == "drd-admin");
  // Everything drd writes must be inside ReadWritePaths (ProtectSystem=strict).
  const fs::path writable = one(svc, "ReadWritePaths");
  auto inside = [&](const fs::path& p) {
    auto rel = p.lexically_relative(writable);
    return !rel.empty() && *rel.begin() != "..";
  };
  CHECK(cfg.state_dir == writable);
  CHECK(inside(cfg.backup.directory));
  REQUIRE(cfg.current_link);
  CHECK(inside(*cfg.current_link));
  for (auto& n : cfg.nodes) {
    INFO(n.name);
    CHECK(inside(n.sqlite_path));
  }
  // The tmpfiles snippet makes the same folders, owned by the service's user.
  const std::string tmpfiles = read_file(source_dir() / "systemd/drd.tmpfiles");
  for (const std::string dir : {"/run/drd", "/var/lib/drd", "/var/lib/drd/data", "/var/lib/drd/backups"})
    CHECK(std::regex_search(tmpfiles, std::regex("\\nd +" + dir + " +0750 +drd +drd")));
}
