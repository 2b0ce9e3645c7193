#pragma once
// A throwaway PKI for TLS tests, made with the `openssl` command line in a folder
// the caller owns (usually a TempDir): a test CA, a server certificate for
// CN=localhost with subjectAltName DNS:localhost and IP:127.0.0.1 (usable for both
// serverAuth and clientAuth, as etcd's gateway presents the server certificate to
// its own gRPC port), a client certificate, and a second, unrelated
// "wrong" CA whose certificate a misconfigured client may trust instead.
//
// Keys are ECDSA P-256 (fast to make; PostgreSQL, libpq, OpenSSL and Go all take
// them). The certificates are valid for two days.
//
// Ownership: every file is world-readable except the keys (0600). With
// `key_owner` set (e.g. "postgres") the server and client keys are chowned to that
// OS user, because PostgreSQL refuses a key that is not its own or is group/world
// readable. Throws std::runtime_error with openssl's output when a step fails.
//
// The client certificate's subject is CN=`client_cn`, or O=drd test client without a
// CN when `client_cn` is empty: etcd 3.4's JSON gateway refuses (HTTP 400) a client
// certificate that carries a CommonName when --client-cert-auth is on.
#include <filesystem>
#include <string>

namespace drd::test {

struct TestPki {
  explicit TestPki(const std::filesystem::path& dir, const std::string& key_owner = "",
                   const std::string& client_cn = "");
  std::filesystem::path dir;
  std::filesystem::path ca_cert, ca_key;
  std::filesystem::path wrong_ca_cert, wrong_ca_key;
  std::filesystem::path server_cert, server_key;
  std::filesystem::path client_cert, client_key;
};

}  // namespace drd::test
