// The Debian maintainer scripts, run for real against a scratch root
// (DPKG_ROOT) with every system-changing command replaced by a shim that
// records its arguments: users and groups, permissions, systemd calls.
#include <catch2/catch.hpp>
#include <sys/stat.h>

#include "tests/service/service_helpers.hpp"

using namespace drd::test;
namespace fs = std::filesystem;

namespace {

const char* const kShimmed[] = {"getent", "addgroup", "adduser", "deluser", "delgroup", "install", "chown",
                                "chmod", "rm", "dpkg-statoverride", "systemctl", "systemd-tmpfiles",
                                "deb-systemd-helper", "pidof"};

// A scratch root plus a PATH of shims. SHIM_EXISTS=1 makes getent find the
// users/groups; SHIM_OVERRIDE=1 makes dpkg-statoverride report an override.
struct ScriptRun {
  TempDir dir{"drd-maint"};
  fs::path root() const { return dir / "root"; }
  fs::path log() const { return dir / "calls.log"; }

  ScriptRun() {
    fs::create_directories(dir / "shims");
    for (const char* name : kShimmed) {
      std::string body = "#!/bin/sh\necho \"" + std::string(name) + " $*\" >> \"$SHIM_LOG\"\n";
      if (std::string(name) == "getent") body += "[ \"$SHIM_EXISTS\" = 1 ] && exit 0\nexit 2\n";
      else if (std::string(name) == "dpkg-statoverride") body += "[ \"$SHIM_OVERRIDE\" = 1 ] && exit 0\nexit 1\n";
      else if (std::string(name) == "pidof") body += "exit 1\n";
      else body += "exit 0\n";
      write_file(dir / "shims" / name, body);
      fs::permissions(dir / "shims" / name, fs::perms::owner_all);
    }
    fs::create_directories(root() / "etc/drd");
    write_file(root() / "etc/drd/drd.yaml", "disaster_recovery: {}\n");
  }
  void with_systemd() { fs::create_directories(root() / "run/systemd/system"); }

  RunResult operator()(const std::string& script, std::vector<std::string> args, bool exists = false,
                       bool override_ = false) {
    std::vector<std::string> argv{"sh", (source_dir() / "packaging/deb" / script).string()};
    argv.insert(argv.end(), args.begin(), args.end());
    fs::remove(log());
    return run(argv, {{"PATH", (dir / "shims").string() + ":/usr/bin:/bin"},
                      {"DPKG_ROOT", root().string()},
                      {"SHIM_LOG", log().string()},
                      {"SHIM_EXISTS", exists ? "1" : "0"},
                      {"SHIM_OVERRIDE", override_ ? "1" : "0"}});
  }
  std::vector<std::string> calls() const { return fs::exists(log()) ? lines(read_file(log())) : std::vector<std::string>{}; }
  bool called(const std::string& line) const {
    for (auto& c : calls())
      if (c == line) return true;
    return false;
  }
  bool called_prefix(const std::string& prefix) const {
    for (auto& c : calls())
      if (c.rfind(prefix, 0) == 0) return true;
    return false;
  }
};

std::string joined(const std::vector<std::string>& v) {
  std::string s;
  for (auto& l : v) s += l + "\n";
  return s;
}

}  // namespace

TEST_CASE("maintainer scripts are valid POSIX sh (sh -n, shellcheck when installed)", "[service][maintainer]") {
  for (const char* script : {"postinst", "prerm", "postrm"}) {
    const fs::path file = source_dir() / "packaging/deb" / script;
    INFO(file);
    auto r = run({"sh", "-n", file.string()});
    CHECK(r.exit_code == 0);
    CHECK(read_file(file).rfind("#!/bin/sh\n", 0) == 0);
    struct stat st {};
    REQUIRE(::stat(file.c_str(), &st) == 0);
    CHECK((st.st_mode & 0111) != 0);
    if (run({"sh", "-c", "command -v shellcheck"}).exit_code == 0) {
      auto sc = run({"shellcheck", "-s", "sh", file.string()});
      INFO(sc.out);
      CHECK(sc.exit_code == 0);
    } else {
      WARN("shellcheck not installed; only sh -n was checked");
    }
  }
}

TEST_CASE("postinst on a fresh install creates drd and drd-admin, locks down the config, reloads systemd, and does not start drd",
          "[service][maintainer]") {
  ScriptRun s;
  s.with_systemd();
  auto r = s("postinst", {"configure"});
  INFO("calls:\n" << joined(s.calls()) << "stdout: " << r.out << "\nstderr: " << r.err);
  REQUIRE(r.exit_code == 0);
  CHECK(s.called("addgroup --system --quiet drd-admin"));
  CHECK(s.called("adduser --system --group --quiet --home /var/lib/drd --no-create-home --shell /usr/sbin/nologin "
                 "--gecos drd disaster-recovery daemon drd"));
  const std::string R = s.root().string();
  CHECK(s.called("install -d -o drd -g drd -m 0750 " + R + "/var/lib/drd " + R + "/var/lib/drd/data " + R +
                 "/var/lib/drd/backups"));
  CHECK(s.called("chown root:drd " + R + "/etc/drd"));
  CHECK(s.called("chmod 0750 " + R + "/etc/drd"));
  CHECK(s.called("chown root:drd " + R + "/etc/drd/drd.yaml"));
  CHECK(s.called("chmod 0640 " + R + "/etc/drd/drd.yaml"));
  CHECK(s.called("systemd-tmpfiles --create drd.conf"));
  CHECK(s.called("systemctl daemon-reload"));
  for (auto& c : s.calls()) {
    INFO(c);
    if (c.rfind("systemctl", 0) == 0) CHECK(c == "systemctl daemon-reload");  // no enable, no start
  }
  CHECK(r.out.find("NOT enabled or started") != std::string::npos);
  CHECK(r.out.find("systemctl enable --now drd") != std::string::npos);
}

TEST_CASE("postinst on an upgrade keeps existing users, restarts drd only if it runs, and respects dpkg-statoverride",
          "[service][maintainer]") {
  ScriptRun s;
  s.with_systemd();
  auto r = s("postinst", {"configure", "0.0.9"}, /*exists=*/true, /*override=*/true);
  INFO("calls:\n" << joined(s.calls()) << "stdout: " << r.out << "\nstderr: " << r.err);
  REQUIRE(r.exit_code == 0);
  CHECK_FALSE(s.called_prefix("adduser"));
  CHECK_FALSE(s.called_prefix("addgroup"));
  CHECK_FALSE(s.called_prefix("chown"));  // the administrator's override wins
  CHECK_FALSE(s.called_prefix("chmod"));
  CHECK(s.called("systemctl try-restart drd.service"));
  CHECK_FALSE(s.called_prefix("systemctl enable"));
  CHECK_FALSE(s.called_prefix("systemctl start"));
  CHECK(r.out.find("NOT enabled") == std::string::npos);
}

TEST_CASE("postinst without a running systemd makes no systemctl calls", "[service][maintainer]") {
  ScriptRun s;
  auto r = s("postinst", {"configure"});
  INFO("calls:\n" << joined(s.calls()));
  REQUIRE(r.exit_code == 0);
  CHECK_FALSE(s.called_prefix("systemctl"));
  CHECK_FALSE(s.called_prefix("systemd-tmpfiles"));
  CHECK(s.called_prefix("adduser"));
}

TEST_CASE("prerm stops drd and its socket on remove, not on upgrade", "[service][maintainer]") {
  ScriptRun s;
  s.with_systemd();
  auto r = s("prerm", {"remove"});
  INFO("calls:\n" << joined(s.calls()));
  REQUIRE(r.exit_code == 0);
  CHECK(s.called("systemctl stop drd.socket drd.service"));
  auto u = s("prerm", {"upgrade", "0.2.0"});
  REQUIRE(u.exit_code == 0);
  CHECK(s.calls().empty());
}

TEST_CASE("postrm removes the user and groups on purge only, and keeps /var/lib/drd", "[service][maintainer]") {
  ScriptRun s;
  s.with_systemd();
  fs::create_directories(s.root() / "var/lib/drd/backups");
  auto rm = s("postrm", {"remove"}, /*exists=*/true);
  INFO("remove calls:\n" << joined(s.calls()));
  REQUIRE(rm.exit_code == 0);
  CHECK(s.called("systemctl daemon-reload"));
  CHECK_FALSE(s.called_prefix("deluser"));
  CHECK_FALSE(s.called_prefix("delgroup"));

  auto purge = s("postrm", {"purge"}, /*exists=*/true);
  INFO("purge calls:\n" << joined(s.calls()) << "stdout: " << purge.out);
  REQUIRE(purge.exit_code == 0);
  CHECK(s.called("deb-systemd-helper purge drd.service drd.socket"));
  CHECK(s.called("deluser --system --quiet drd"));
  CHECK(s.called("delgroup --system --quiet --only-if-empty drd"));
  CHECK(s.called("delgroup --system --quiet --only-if-empty drd-admin"));
  for (auto& c : s.calls()) {
    INFO(c);
    if (c.rfind("rm ", 0) == 0) CHECK(c.find("/var/lib/drd") == std::string::npos);  // data and backups stay
  }
  CHECK(purge.out.find("/var/lib/drd") != std::string::npos);
}

TEST_CASE("maintainer scripts refuse an unknown action with exit 1", "[service][maintainer]") {
  ScriptRun s;
  for (const char* script : {"postinst", "prerm", "postrm"}) {
    INFO(script);
    auto r = s(script, {"frobnicate"});
    CHECK(r.exit_code == 1);
    CHECK(r.err.find("unknown argument 'frobnicate'") != std::string::npos);
    CHECK(s.calls().empty());
  }
}
