// The Debian package: cpack builds it from this build folder, dpkg-deb
// inspects and unpacks it, and the unpacked drd validates the packaged config.
#include <catch2/catch.hpp>
#include <sys/stat.h>

#include <regex>

#include "tests/service/service_helpers.hpp"

using namespace drd::test;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

// The `dpkg-deb -c` line for `path` ("./usr/sbin/drd"), or "" if absent.
std::string listing_line(const std::string& listing, const std::string& path) {
  for (auto& l : lines(listing)) {
    auto at = l.rfind(' ');
    if (at == std::string::npos) continue;
    std::string name = l.substr(at + 1);
    if (name == path) return l;
    // symlinks: "./a -> b"
    if (auto arrow = l.find(" " + path + " -> "); arrow != std::string::npos) return l;
  }
  return "";
}

std::string mode_of(const std::string& listing_line) { return listing_line.substr(0, 10); }

}  // namespace

TEST_CASE("cpack builds drd_VERSION_ARCH.deb with the programs, units, conffile, man pages, completion and docs",
          "[service][package]") {
  const fs::path build = build_dir();
  for (const char* needed : {"bin/drd", "bin/drctl", "man/drd.8.gz", "man/drctl.8.gz", "man/drd.yaml.5.gz",
                             "CPackConfig.cmake"}) {
    INFO("missing " << (build / needed) << ": build the targets drd drctl drd_man in " << build << " first");
    REQUIRE(fs::exists(build / needed));
  }
  TempDir out("drd-deb");
  auto pack = run({"cpack", "-G", "DEB", "--config", (build / "CPackConfig.cmake").string(), "-B", out.path().string()},
                  {}, 300s);
  INFO("cpack stdout: " << pack.out << "\ncpack stderr: " << pack.err);
  REQUIRE(pack.exit_code == 0);

  auto version = run({bin("drd"), "--version"});
  REQUIRE(version.exit_code == 0);
  std::smatch vm;
  REQUIRE(std::regex_search(version.out, vm, std::regex("drd ([0-9][0-9.]*)")));
  const std::string ver = vm[1];
  // One version everywhere: CMake's project(VERSION) is the only place it is written.
  CHECK(ver == DRD_PROJECT_VERSION);
  auto arch = run({"dpkg", "--print-architecture"});
  REQUIRE(arch.exit_code == 0);
  const fs::path deb = out / ("drd_" + ver + "_" + lines(arch.out).at(0) + ".deb");
  INFO("expected " << deb);
  REQUIRE(fs::exists(deb));

  // ---- control fields ----
  auto fields = run({"dpkg-deb", "-f", deb.string()});
  REQUIRE(fields.exit_code == 0);
  INFO("control:\n" << fields.out);
  CHECK(std::regex_search(fields.out, std::regex("(^|\\n)Package: drd\\n")));
  CHECK(std::regex_search(fields.out, std::regex("(^|\\n)Version: " + std::regex_replace(ver, std::regex("\\."), "\\.") + "\\n")));
  std::smatch dm;
  REQUIRE(std::regex_search(fields.out, dm, std::regex("\\nDepends: ([^\\n]*)")));
  const std::string depends = dm[1];
  CHECK(has_word(depends, "adduser"));       // the maintainer scripts use it
  CHECK(has_word(depends, "libc6"));         // computed by dpkg-shlibdeps
  CHECK(depends.find("libsqlite3") != std::string::npos);
  CHECK(depends.find("libpq") != std::string::npos);
  CHECK(std::regex_search(fields.out, std::regex("\\nMaintainer: .+")));
  CHECK(std::regex_search(fields.out, std::regex("\\nDescription: .+")));

  // ---- contents ----
  auto contents = run({"dpkg-deb", "-c", deb.string()});
  REQUIRE(contents.exit_code == 0);
  INFO("contents:\n" << contents.out);
  std::vector<std::pair<std::string, std::string>> expected = {
      {"./usr/sbin/drd", "-rwxr-xr-x"},
      {"./usr/bin/drctl", "-rwxr-xr-x"},
      {"./lib/systemd/system/drd.service", "-rw-r--r--"},
      {"./lib/systemd/system/drd.socket", "-rw-r--r--"},
      {"./usr/lib/tmpfiles.d/drd.conf", "-rw-r--r--"},
      {"./usr/lib/sysusers.d/drd.conf", "-rw-r--r--"},
      {"./etc/drd/drd.yaml", "-rw-r-----"},
      {"./usr/share/man/man8/drd.8.gz", "-rw-r--r--"},
      {"./usr/share/man/man8/drctl.8.gz", "-rw-r--r--"},
      {"./usr/share/man/man5/drd.yaml.5.gz", "-rw-r--r--"},
      {"./usr/share/doc/drd/operations-systemd.md", "-rw-r--r--"},
  };
  if (fs::exists(source_dir() / "packaging/completion/drctl"))
    expected.push_back({"./usr/share/bash-completion/completions/drctl", "-rw-r--r--"});
  for (auto& [path, mode] : expected) {
    INFO(path);
    auto line = listing_line(contents.out, path);
    CHECK_FALSE(line.empty());
    if (!line.empty()) CHECK(mode_of(line) == mode);
  }
  for (auto& l : lines(contents.out)) {  // everything belongs to root; postinst hands out groups
    INFO(l);
    CHECK(l.find(" root/root ") != std::string::npos);
  }

  // ---- control archive: conffiles and maintainer scripts ----
  auto info = run({"dpkg-deb", "-I", deb.string()});
  REQUIRE(info.exit_code == 0);
  INFO("dpkg-deb -I:\n" << info.out);
  for (const char* member : {"conffiles", "postinst", "prerm", "postrm"}) CHECK(has_word(info.out, member));
  TempDir ctrl("drd-deb-ctrl");
  REQUIRE(run({"dpkg-deb", "-e", deb.string(), (ctrl / "DEBIAN").string()}).exit_code == 0);
  CHECK(read_file(ctrl / "DEBIAN/conffiles") == "/etc/drd/drd.yaml\n");
  for (const char* script : {"postinst", "prerm", "postrm"}) {
    INFO(script);
    struct stat st {};
    REQUIRE(::stat((ctrl / "DEBIAN" / script).c_str(), &st) == 0);
    CHECK((st.st_mode & 0777) == 0755);
    auto syntax = run({"sh", "-n", (ctrl / "DEBIAN" / script).string()});
    INFO(syntax.err);
    CHECK(syntax.exit_code == 0);
  }

  // ---- unpacked: the files are the sources, the programs run ----
  TempDir root("drd-deb-root");
  REQUIRE(run({"dpkg-deb", "-x", deb.string(), root.path().string()}).exit_code == 0);
  CHECK(read_file(root / "lib/systemd/system/drd.service") == read_file(source_dir() / "systemd/drd.service"));
  CHECK(read_file(root / "lib/systemd/system/drd.socket") == read_file(source_dir() / "systemd/drd.socket"));
  CHECK(read_file(root / "etc/drd/drd.yaml") == read_file(source_dir() / "packaging/drd.yaml.packaged"));

  auto check = run({(root / "usr/sbin/drd").string(), "--check-config", "--config", (root / "etc/drd/drd.yaml").string()});
  INFO("drd --check-config: " << check.out << check.err);
  CHECK(check.exit_code == 0);
  CHECK(check.out.find("ok (3 databases)") != std::string::npos);
  auto ctl = run({(root / "usr/bin/drctl").string(), "--version"});
  CHECK(ctl.exit_code == 0);
  CHECK(ctl.out.find(ver) != std::string::npos);

  for (const char* page : {"usr/share/man/man8/drd.8.gz", "usr/share/man/man8/drctl.8.gz", "usr/share/man/man5/drd.yaml.5.gz"}) {
    INFO(page);
    auto r = run({"sh", "-c", "MANWIDTH=80 man --warnings -l \"$0\" 2>&1 >/dev/null", (root / page).string()});
    CHECK(r.exit_code == 0);
    CHECK(r.out.empty());
  }
}
