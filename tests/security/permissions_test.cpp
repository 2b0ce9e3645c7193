// File permissions that guard secrets and control, through real drd / drctl processes:
// a backup key file readable by others is refused with a message naming it and the fix,
// the control socket is created 0660, and config errors never echo a URL's password.
#include <catch2/catch.hpp>
#include <sys/stat.h>

#include <fstream>

#include "tests/e2e/drd_fixture.hpp"

using namespace drd::test;
namespace fs = std::filesystem;

TEST_CASE("a backup key file readable by others is refused, naming the file and chmod 600",
          "[security][permissions]") {
  DrdOptions o;
  o.standbys = 1;
  o.extra_yaml =
      "  backup:\n"
      "    enabled: true\n"
      "    directory: ./backups\n"
      "    encryption: { key_file: ./backup.key }\n";
  DrdFixture f(o);
  const fs::path key = f.dir() / "backup.key";
  const std::string key_hex(64, 'e');
  std::ofstream(key, std::ios::trunc) << key_hex << "\n";
  ::chmod(key.c_str(), 0644);
  f.start();

  auto r = f.drctl({"backup"});
  INFO("stdout: " << r.out << "\nstderr: " << r.err << "\nlog: " << f.log());
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.err, Catch::Contains(key.string()));
  CHECK_THAT(r.err, Catch::Contains("chmod 600"));
  CHECK_THAT(r.err, Catch::Contains("644"));
  // Nothing was written, and the key itself was echoed nowhere.
  CHECK((!fs::exists(f.dir() / "backups") || fs::is_empty(f.dir() / "backups")));
  CHECK(r.out.find(key_hex) == std::string::npos);
  CHECK(r.err.find(key_hex) == std::string::npos);
  CHECK(f.log().find(key_hex) == std::string::npos);

  // Fixed as the message says, the next backup works without restarting drd... or after a
  // reload at the latest.
  ::chmod(key.c_str(), 0600);
  auto again = f.drctl({"backup"});
  if (again.exit_code != 0) {
    REQUIRE(f.drctl({"reload"}).exit_code == 0);
    again = f.drctl({"backup"});
  }
  INFO("after chmod 600: " << again.out << again.err);
  CHECK(again.exit_code == 0);
}

TEST_CASE("the control socket is created with mode 0660", "[security][permissions]") {
  DrdOptions o;
  o.standbys = 1;
  DrdFixture f(o);
  f.start();
  struct stat st {};
  REQUIRE(::stat(f.socket().c_str(), &st) == 0);
  CHECK(S_ISSOCK(st.st_mode));
  CHECK((st.st_mode & 0777) == 0660);
}

TEST_CASE("drd --check-config never echoes the password of a postgresql:// URL", "[security][config]") {
  TempDir dir;
  const std::string pw = "hunter2";
  // One password in a well-formed URL next to an unknown key, one in a URL that is itself
  // wrong (bad port), one in a conninfo-style parameter, and a misspelled node key.
  const fs::path cfg = dir / "drd.yaml";
  std::ofstream(cfg) << "disaster_recovery:\n"
                        "  enabled: true\n"
                        "  databases:\n"
                        "    pg1:\n"
                        "      type: primary\n"
                        "      priority: 0\n"
                        "      url: \"postgresql://u:" << pw << "@h/db\"\n"
                        "      colour: blue\n"
                        "    pg2:\n"
                        "      type: secondary\n"
                        "      priority: 1\n"
                        "      url: \"postgresql://u:" << pw << "@h:notaport/db\"\n"
                        "    pg3:\n"
                        "      type: secondary\n"
                        "      priorty: 2\n"
                        "      url: \"postgresql://u@h/db?password=" << pw << "&sslmode=bogus\"\n"
                        "  unknown_section: { password: " << pw << " }\n";
  auto r = run({bin("drd"), "--check-config", "--config", cfg.string()});
  INFO("stdout: " << r.out << "\nstderr: " << r.err);
  CHECK(r.exit_code == 2);
  const std::string all = r.out + r.err;
  CHECK_THAT(all, Catch::Contains("colour"));         // the unknown key is reported...
  CHECK_THAT(all, Catch::Contains("priority"));       // ...with a did-you-mean
  CHECK_THAT(all, Catch::Contains(cfg.string()));     // as FILE:LINE:COL
  CHECK(all.find(pw) == std::string::npos);           // ...and the password nowhere

  // The same file through drctl (which loads the config to find the socket) and through a
  // running drd's reload would use the same loader; drctl must not echo it either.
  auto c = run({bin("drctl"), "--config", cfg.string(), "status"});
  INFO("drctl: " << c.out << c.err);
  CHECK(c.exit_code != 0);
  CHECK((c.out + c.err).find(pw) == std::string::npos);
}
