#pragma once
// A small etcd v3 client over etcd's JSON gateway (HTTP/1.1 POST /v3/..., keys
// and values base64, 64-bit numbers as strings), so drd needs no gRPC stack.
// Boost.Beast, plain or TLS (OpenSSL), optional user/password auth.
//
// Blocking: every call runs its own io_context on the calling thread, so call it
// from a worker, never from the daemon's io_context. Each call has one deadline
// (options.timeout) spread over the endpoints: it starts at the endpoint that
// answered last and moves on when one does not answer or answers that it has no
// quorum/leader, so one dead member costs one attempt, not the call.
// Thread-safe (the current endpoint and auth token are guarded).
#include <cstdint>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <boost/json.hpp>

#include "common/result.hpp"
#include "common/units.hpp"

namespace drd::coord {

struct EtcdOptions {
  std::vector<std::string> endpoints;  // http(s)://HOST:PORT
  std::optional<std::filesystem::path> ca_file, cert_file, key_file;
  std::string username, password;      // password: never logged
  Millis timeout{1000};                // whole call, all endpoints together
};

struct KeyValue {
  std::string key, value;
  std::int64_t create_revision = 0, mod_revision = 0, version = 0, lease = 0;
};

struct Compare {
  enum class Target { value, version, create, mod };
  enum class Op { equal, not_equal, greater, less };
  std::string key;
  Target target = Target::value;
  Op op = Op::equal;
  std::string value;        // Target::value
  std::int64_t number = 0;  // version / create / mod
};

struct TxnOp {
  enum class Kind { put, del, range };
  Kind kind = Kind::put;
  std::string key, value;
  std::int64_t lease = 0;
  bool prefix = false;  // del/range: every key starting with `key`
};

struct TxnResult {
  bool succeeded = false;
  std::vector<std::vector<KeyValue>> ranges;  // one per range op that ran, in order
};

struct EndpointHealth {
  std::string endpoint;
  bool ok = false;          // answered and has a raft leader
  bool reachable = false;   // answered at all
  std::string error;        // why not ok
  std::string version;
  bool has_leader = false;
  std::string member_id;    // this member's id, hex as etcdctl prints it ("" when unreachable)
  std::string leader_id;    // the raft leader it knows, hex ("" when none)
  double round_trip_ms = -1;  // the status call's round trip (also when it failed)
};

class EtcdClient {
 public:
  explicit EtcdClient(EtcdOptions o);

  Result<std::vector<KeyValue>> range(const std::string& key, bool prefix = false);
  Status put(const std::string& key, const std::string& value, std::int64_t lease = 0);
  Result<TxnResult> txn(const std::vector<Compare>& cmp, const std::vector<TxnOp>& success,
                        const std::vector<TxnOp>& failure = {});
  Result<std::int64_t> lease_grant(std::int64_t ttl_seconds);
  // Seconds left after the renewal; 0 when the lease no longer exists (expired or revoked).
  Result<std::int64_t> lease_keepalive(std::int64_t id);
  // Seconds left, -1 when the lease does not exist.
  Result<std::int64_t> lease_time_to_live(std::int64_t id);
  Status lease_revoke(std::int64_t id);
  // Asks every endpoint for its status (one short attempt each, one after the other).
  std::vector<EndpointHealth> health(Millis per_endpoint);

  // Low level: POST `path` (e.g. "/v3/kv/range") with a JSON body, across the endpoints.
  Result<boost::json::object> call(const std::string& path, const boost::json::object& body);

  const EtcdOptions& options() const { return o_; }

 private:
  Result<boost::json::object> call_one(std::size_t endpoint, const std::string& path, const std::string& body,
                                       Millis timeout, bool auth_retry);
  Result<std::string> token(std::size_t endpoint, Millis timeout);

  EtcdOptions o_;
  std::mutex mu_;
  std::size_t current_ = 0;
  std::string token_;  // auth token, when username is set
};

std::string base64_encode(const std::string& in);
Result<std::string> base64_decode(const std::string& in);
// The key after every key that starts with `prefix` (etcd's range_end for a prefix).
std::string prefix_end(const std::string& prefix);

}  // namespace drd::coord
