// Where drctl looks for drd's socket, in the documented order.
#include <catch2/catch.hpp>

#include "ctl/socket_path.hpp"
#include "tests/support/temp_dir.hpp"

using namespace drd::ctl;
using drd::test::TempDir;
using drd::test::write_file;

TEST_CASE("socket resolution follows --socket, $DRD_SOCKET, --config, system config, default", "[socket]") {
  TempDir dir("drctl-sock");
  const auto cfg = dir / "etc/drd.yaml";
  write_file(cfg, "disaster_recovery:\n  control:\n    socket: ./run/drd.sock\n");
  const auto system_cfg = dir / "system/drd.yaml";
  write_file(system_cfg, "disaster_recovery:\n  control:\n    socket: /srv/drd/ctl.sock\n");
  const auto missing = dir / "nowhere/drd.yaml";

  struct Row { std::string flag, env, config; std::filesystem::path system; std::string path, origin; };
  const std::string from_cfg = (dir.path() / "etc/run/drd.sock").string();
  const Row rows[] = {
      {"/a.sock", "/b.sock", cfg.string(), system_cfg, "/a.sock", "--socket"},
      {"", "/b.sock", cfg.string(), system_cfg, "/b.sock", "$DRD_SOCKET"},
      {"", "", cfg.string(), system_cfg, from_cfg, cfg.string()},
      {"", "", "", system_cfg, "/srv/drd/ctl.sock", system_cfg.string()},
      {"", "", "", missing, "/run/drd/drd.sock", "default"},
  };
  for (const auto& r : rows) {
    INFO(r.flag << " | " << r.env << " | " << r.config << " | " << r.system);
    SocketInputs in{r.flag, r.env, r.config, r.system};
    auto got = resolve_socket(in);
    REQUIRE(got);
    CHECK(got->path == r.path);
    CHECK(got->origin == r.origin);
  }
}

TEST_CASE("a config without control.socket uses state_dir/drd.sock, relative to base_dir or the config's folder", "[socket]") {
  TempDir dir("drctl-sock");
  struct Row { const char* yaml; std::string expected; };
  const Row rows[] = {
      {"disaster_recovery:\n  state_dir: ./state\n", (dir.path() / "conf/state/drd.sock").string()},
      {"disaster_recovery:\n  state_dir: /var/lib/drd\n", "/var/lib/drd/drd.sock"},
      {"disaster_recovery:\n  enabled: true\n", (dir.path() / "conf/var/drd/drd.sock").string()},
      {"disaster_recovery:\n  control: {}\n  state_dir: ../s\n", (dir.path() / "s/drd.sock").string()},
      {"# empty\n", (dir.path() / "conf/var/drd/drd.sock").string()},
      {"disaster_recovery:\n  control:\n    socket: /x/y.sock\n  state_dir: /ignored\n", "/x/y.sock"},
      // base_dir, as drd resolves it: relative to the config's folder, then every path against it.
      {"disaster_recovery:\n  base_dir: ..\n", (dir.path() / "var/drd/drd.sock").string()},
      {"disaster_recovery:\n  state_dir: ./st\n  base_dir: ..\n", (dir.path() / "st/drd.sock").string()},
      {"disaster_recovery:\n  base_dir: /opt/app\n  control: { socket: run/d.sock }\n", "/opt/app/run/d.sock"},
      {"disaster_recovery:\n  base_dir: /opt/app\n  control: { socket: /x/y.sock }\n", "/x/y.sock"},
  };
  for (const auto& r : rows) {
    INFO(r.yaml);
    write_file(dir / "conf/drd.yaml", r.yaml);
    auto got = socket_from_config(dir / "conf/drd.yaml");
    REQUIRE(got);
    CHECK(*got == r.expected);
  }
}

TEST_CASE("an unreadable config is an error naming the file, not a silent fallback", "[socket]") {
  TempDir dir("drctl-sock");
  SocketInputs in;
  in.config_file = (dir / "missing.yaml").string();
  auto r = resolve_socket(in);
  REQUIRE_FALSE(r);
  CHECK(r.error().message.find("missing.yaml does not exist") != std::string::npos);

  write_file(dir / "bad.yaml", "disaster_recovery:\n  control: [\n");
  auto bad = socket_from_config(dir / "bad.yaml");
  REQUIRE_FALSE(bad);
  CHECK(bad.error().message.find("bad.yaml:") != std::string::npos);

  write_file(dir / "shape.yaml", "disaster_recovery:\n  control:\n    socket: [a, b]\n");
  auto shape = socket_from_config(dir / "shape.yaml");
  REQUIRE_FALSE(shape);
  CHECK(shape.error().message.find("shape.yaml:3:") != std::string::npos);
  CHECK(shape.error().message.find("disaster_recovery.control.socket must be a path") != std::string::npos);

  SocketInputs sys;
  sys.system_config = dir / "bad.yaml";
  auto broken_system = resolve_socket(sys);
  REQUIRE_FALSE(broken_system);
  CHECK(broken_system.error().hint.find("--socket") != std::string::npos);
}
