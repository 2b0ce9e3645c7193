#include "tests/support/test_ca.hpp"

#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <stdexcept>
#include <vector>

#include "tests/support/process.hpp"

namespace fs = std::filesystem;

namespace drd::test {
namespace {

void openssl(std::vector<std::string> args) {
  args.insert(args.begin(), "openssl");
  auto r = run(args, {}, std::chrono::seconds(30));
  if (r.exit_code != 0) {
    std::string cmd;
    for (auto& a : args) cmd += a + " ";
    throw std::runtime_error("TestPki: " + cmd + "failed:\n" + r.out + r.err);
  }
}

const std::vector<std::string> kEcKey{"-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"};

void self_signed_ca(const fs::path& key, const fs::path& cert, const std::string& cn) {
  std::vector<std::string> a{"req", "-x509"};
  a.insert(a.end(), kEcKey.begin(), kEcKey.end());
  a.insert(a.end(), {"-keyout", key.string(), "-out", cert.string(), "-days", "2", "-subj", "/CN=" + cn,
                     "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"});
  openssl(a);
}

// A leaf certificate signed by the CA, with the extensions in `ext` (an extfile body).
void leaf(const fs::path& dir, const std::string& name, const std::string& subject, const std::string& ext,
          const fs::path& ca_cert, const fs::path& ca_key) {
  const fs::path key = dir / (name + ".key"), csr = dir / (name + ".csr"), crt = dir / (name + ".crt"),
                 extfile = dir / (name + ".ext");
  std::vector<std::string> a{"req", "-new"};
  a.insert(a.end(), kEcKey.begin(), kEcKey.end());
  a.insert(a.end(), {"-keyout", key.string(), "-out", csr.string(), "-subj", subject});
  openssl(a);
  std::ofstream(extfile) << ext;
  openssl({"x509", "-req", "-in", csr.string(), "-CA", ca_cert.string(), "-CAkey", ca_key.string(),
           "-CAcreateserial", "-out", crt.string(), "-days", "2", "-extfile", extfile.string()});
}

void own(const fs::path& p, const std::string& user, mode_t mode) {
  if (::chmod(p.c_str(), mode) != 0) throw std::runtime_error("TestPki: chmod " + p.string() + " failed");
  if (user.empty()) return;
  passwd* pw = ::getpwnam(user.c_str());
  if (!pw) throw std::runtime_error("TestPki: no OS user " + user);
  if (::chown(p.c_str(), pw->pw_uid, pw->pw_gid) != 0) throw std::runtime_error("TestPki: chown " + p.string() + " failed");
}

}  // namespace

TestPki::TestPki(const fs::path& d, const std::string& key_owner, const std::string& client_cn) : dir(d) {
  fs::create_directories(dir);
  ::chmod(dir.c_str(), 0755);  // a server running as another user reads its files here
  ca_cert = dir / "ca.crt";
  ca_key = dir / "ca.key";
  wrong_ca_cert = dir / "wrong-ca.crt";
  wrong_ca_key = dir / "wrong-ca.key";
  self_signed_ca(ca_key, ca_cert, "drd test CA");
  self_signed_ca(wrong_ca_key, wrong_ca_cert, "drd wrong CA");
  leaf(dir, "server", "/CN=localhost",
       "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyAgreement\n"
       "extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
       ca_cert, ca_key);
  leaf(dir, "client", client_cn.empty() ? "/O=drd test client" : "/CN=" + client_cn,
       "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyAgreement\nextendedKeyUsage=clientAuth\n",
       ca_cert, ca_key);
  server_cert = dir / "server.crt";
  server_key = dir / "server.key";
  client_cert = dir / "client.crt";
  client_key = dir / "client.key";
  for (auto* f : {&ca_cert, &wrong_ca_cert, &server_cert, &client_cert}) own(*f, "", 0644);
  for (auto* f : {&ca_key, &wrong_ca_key}) own(*f, "", 0600);
  own(server_key, key_owner, 0600);
  own(client_key, key_owner, 0600);
}

}  // namespace drd::test
