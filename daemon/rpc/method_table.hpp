#pragma once
// The control socket's methods: ONE table (docs/rpc.md's "Methods" table is checked against it
// by tests/daemon/method_table_test.cpp).
//
// Owns: for each method its name, whether it is read-only (any member of the socket's group
// may call it, and it is not audited), whether a follower drd forwards it to the leading drd
// (multi-host mode), and its handler. The control server asks it who may call what; the
// daemon's dispatch() asks it what to run. Nothing else lists the methods.
//
// Strand: handlers run on the control strand (Daemon::dispatch); the lookups are pure and
// may be called from any thread.
#include <boost/json.hpp>

#include <cstdint>
#include <functional>
#include <span>
#include <string_view>

#include "common/result.hpp"

namespace drd {

namespace json = boost::json;
class Daemon;

struct Caller {
  std::int64_t uid = -1, gid = -1, pid = -1;
  bool admin = false;
  bool forwarded = false;  // came from another drd's peer endpoint: never forwarded again
};

using Reply = std::function<void(Result<json::value>)>;
using ProgressSink = std::function<void(json::object)>;

namespace rpc {

// One call as a handler sees it.
struct Call {
  const json::object& params;
  const Caller& caller;
  Reply& reply;
  ProgressSink& progress;
};

struct Method {
  std::string_view name;
  bool read_only;    // changes nothing: any member of the socket's group; not audited
  bool forwardable;  // multi-host: a follower drd sends it to the leader
  void (*handler)(Daemon&, Call&);
};

// Every method, in docs/rpc.md's order. Defined with the handlers (daemon/daemon_rpc.cpp).
std::span<const Method> methods();
// nullptr for a method drd does not have.
const Method* find_method(std::string_view name);

}  // namespace rpc
}  // namespace drd
