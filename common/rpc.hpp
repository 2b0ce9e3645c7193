#pragma once
// JSON-RPC 2.0 over a Unix stream socket, one JSON object per line, shared by
// drd (server side: parse + build replies) and drctl (client side).
// The method table and result shapes are documented in docs/rpc.md.
#include <boost/json.hpp>
#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "common/result.hpp"

namespace drd::rpc {

namespace json = boost::json;

constexpr std::size_t kMaxMessageBytes = 1 << 20;  // a longer line is refused

// Standard JSON-RPC codes plus drd's own (-32000..-32099).
enum Code : int {
  parse_error = -32700,
  invalid_request = -32600,
  method_not_found = -32601,
  invalid_params = -32602,
  internal_error = -32603,
  operation_failed = -32000,   // refused by policy or failed while running
  not_supported = -32001,      // this drd does not implement it yet
  permission_denied = -32003,
  busy = -32004,               // another operation holds the cluster (retry later)
};

struct Request {
  json::value id;        // null for a notification
  std::string method;
  json::object params;   // positional params are refused: drd uses named ones
};

struct ParseFailure {
  json::value id;  // null when the id could not be read
  int code;
  std::string message;
};

// Parses one line. Never throws.
std::variant<Request, ParseFailure> parse_request(std::string_view line);

std::string result_line(const json::value& id, json::value result);
std::string error_line(const json::value& id, int code, std::string_view message,
                       json::value data = nullptr);
// Maps an internal error to the JSON-RPC code drctl turns into its exit code.
int code_for(Errc e);
std::string error_line(const json::value& id, const Error& e);
std::string notification_line(std::string_view method, json::object params);

// Which methods exist and who may call them: daemon/rpc/method_table.hpp.

// Blocking client for drctl and the tests.
struct CallError {
  bool unreachable = false;  // could not connect / connection lost: drctl exit 3
  int code = 0;              // JSON-RPC error code when the daemon answered
  std::string message;
  json::value data;
};

class Client {
 public:
  explicit Client(std::string socket_path, std::chrono::milliseconds timeout = std::chrono::seconds(30));
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Sends one request and waits for its response. Notifications received
  // before it (e.g. "progress") are handed to on_notification.
  std::variant<json::value, CallError> call(
      std::string_view method, json::object params = {},
      const std::function<void(const json::object&)>& on_notification = {});

  const std::string& socket_path() const { return path_; }

 private:
  std::optional<CallError> ensure_connected();
  std::string path_;
  std::chrono::milliseconds timeout_;
  int fd_ = -1;
  std::string buffer_;
  std::int64_t next_id_ = 1;
};

}  // namespace drd::rpc
