// The backup key file is checked when the config is loaded (drd --check-config) and at reload,
// not only at the next backup.
#include <catch2/catch.hpp>
#include <sys/stat.h>

#include <fstream>

#include "tests/e2e/drd_fixture.hpp"

using namespace drd::test;
namespace fs = std::filesystem;

namespace {

DrdOptions with_key() {
  DrdOptions o;
  o.standbys = 1;
  o.extra_yaml =
      "  backup:\n"
      "    enabled: true\n"
      "    directory: ./backups\n"
      "    encryption: { key_file: ./backup.key }\n";
  return o;
}

void write_key(const fs::path& p, const std::string& text, int mode) {
  fs::remove(p);
  std::ofstream(p, std::ios::trunc) << text;
  ::chmod(p.c_str(), static_cast<mode_t>(mode));
}

const std::string kHex(64, 'c');

}  // namespace

TEST_CASE("drd --check-config names a missing, empty, wrong-length or too-open backup key file",
          "[e2e][config][key]") {
  DrdFixture f(with_key());
  const fs::path key = f.dir() / "backup.key";
  auto check = [&] { return run({bin("drd"), "--config", f.config_path().string(), "--check-config"}); };

  write_key(key, kHex + "\n", 0600);
  auto good = check();
  INFO("good: " << good.out << good.err);
  CHECK(good.exit_code == 0);

  struct Case {
    const char* what;
    std::string text;
    int mode;
    std::vector<std::string> says;
  };
  const std::vector<Case> cases = {
      {"missing", "", -1, {"is missing"}},
      {"empty", "", 0600, {"is empty", "expected 32 raw bytes, 64 hex characters or 44 base64"}},
      {"wrong length", kHex.substr(0, 40) + "\n", 0600, {"41 bytes read", "expected 32 raw bytes, 64 hex"}},
      {"group/others can read", kHex + "\n", 0644, {"mode 644", "chmod 600"}},
      {"group can read", kHex + "\n", 0640, {"mode 640", "chmod 600"}},
  };
  for (auto& c : cases) {
    if (c.mode < 0) fs::remove(key);
    else write_key(key, c.text, c.mode);
    auto r = check();
    INFO(c.what << ": exit " << r.exit_code << "\nstdout: " << r.out << "\nstderr: " << r.err);
    CHECK(r.exit_code == 2);
    CHECK_THAT(r.err, Catch::Contains("backup.encryption.key_file"));
    CHECK_THAT(r.err, Catch::Contains(key.string()));
    for (auto& s : c.says) CHECK_THAT(r.err, Catch::Contains(s));
    CHECK(r.err.find(kHex) == std::string::npos);
  }
}

TEST_CASE("reload refuses a bad backup key file and keeps the running config", "[e2e][config][key]") {
  DrdFixture f(with_key());
  const fs::path key = f.dir() / "backup.key";
  write_key(key, kHex + "\n", 0600);
  f.start();
  CHECK(f.call("status").at("failure_threshold").as_int64() == 3);

  // A new threshold and a key others can read: the whole reload is refused.
  f.opts.threshold = 5;
  f.write_config();
  ::chmod(key.c_str(), 0644);
  auto r = f.drctl({"reload"});
  INFO("stdout: " << r.out << "\nstderr: " << r.err);
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.err, Catch::Contains(key.string()));
  CHECK_THAT(r.err, Catch::Contains("mode 644"));
  CHECK_THAT(r.err, Catch::Contains("chmod 600"));
  CHECK_THAT(r.err, Catch::Contains("running config stays in force"));
  CHECK(f.call("status").at("failure_threshold").as_int64() == 3);

  write_key(key, "", 0600);
  auto empty = f.drctl({"reload"});
  CHECK(empty.exit_code == 1);
  CHECK_THAT(empty.err, Catch::Contains("is empty"));
  CHECK(f.call("status").at("failure_threshold").as_int64() == 3);

  // Fixed: the same reload goes through.
  write_key(key, kHex + "\n", 0600);
  auto ok = f.drctl({"reload"});
  INFO("stdout: " << ok.out << "\nstderr: " << ok.err);
  CHECK(ok.exit_code == 0);
  CHECK(f.call("status").at("failure_threshold").as_int64() == 5);
}
