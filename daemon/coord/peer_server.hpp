#pragma once
// The peer endpoint (store.peer_listen) other drd of the same cluster call:
//   POST /peer/v1/failsafe  {"from","node","term"} -> {"confirm": bool, "reason"}
//   POST /peer/v1/rpc       {"method","params"}    -> {"result": ...} | {"error": {"errc","message","hint"}}
// With store.peer_token_file every request needs "Authorization: Bearer TOKEN"
// (401 otherwise). Plain HTTP/1.1 (Boost.Beast) on the daemon's io_context, one
// request per connection, 64 KiB request limit, 10 s to send it, at most 32
// connections at once. Handlers run on `handler_executor` (the control strand).
#include <boost/asio.hpp>
#include <boost/json.hpp>

#include <functional>
#include <memory>
#include <string>

#include "common/result.hpp"

namespace drd::coord {

struct PeerHandlers {
  std::function<boost::json::object(const boost::json::object&)> failsafe;
  // Must call `done` exactly once (any thread).
  std::function<void(const std::string& method, const boost::json::object& params,
                     std::function<void(Result<boost::json::value>)> done)>
      rpc;
};

class PeerServer {
 public:
  PeerServer(boost::asio::io_context& io, boost::asio::any_io_executor handler_executor, std::string listen,
             std::string token, PeerHandlers handlers);
  ~PeerServer();
  Status start();
  void stop();

  struct Shared;

 private:
  std::shared_ptr<Shared> shared_;
};

// Error <-> JSON for forwarded calls.
boost::json::object error_json(const Error& e);
Error error_from_json(const boost::json::value& v);

}  // namespace drd::coord
