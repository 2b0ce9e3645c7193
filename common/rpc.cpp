#include "common/rpc.hpp"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cmath>
#include <cstring>

#include "common/json_text.hpp"

namespace drd::rpc {

namespace {

// Boost.JSON turns a number beyond the range of a double (1e400) into an infinity, which
// serializes as "Infinity": not JSON. Such requests are refused so nothing drd echoes or
// stores (replies, the audit log) can become unparsable. (Found by tests/fuzz/fuzz_rpc.)
bool all_numbers_finite(const json::value& v) {
  switch (v.kind()) {
    case json::kind::double_: return std::isfinite(v.get_double());
    case json::kind::array:
      for (auto& e : v.get_array())
        if (!all_numbers_finite(e)) return false;
      return true;
    case json::kind::object:
      for (auto& kv : v.get_object())
        if (!all_numbers_finite(kv.value())) return false;
      return true;
    default: return true;
  }
}

}  // namespace

std::variant<Request, ParseFailure> parse_request(std::string_view line) {
  if (line.size() > kMaxMessageBytes)
    return ParseFailure{nullptr, invalid_request, "request larger than 1 MiB"};
  json::error_code ec;
  json::value v = json::parse(line, ec);
  if (ec) return ParseFailure{nullptr, parse_error, "malformed JSON: " + ec.message()};
  if (!all_numbers_finite(v)) return ParseFailure{nullptr, parse_error, "malformed JSON: a number is out of range"};
  if (!v.is_object()) return ParseFailure{nullptr, invalid_request, "a request must be a JSON object"};
  auto& o = v.as_object();
  json::value id = nullptr;
  if (auto* p = o.if_contains("id")) {
    if (!p->is_null() && !p->is_string() && !p->is_int64() && !p->is_uint64())
      return ParseFailure{nullptr, invalid_request, "\"id\" must be a string, an integer or null"};
    id = *p;
  }
  auto* ver = o.if_contains("jsonrpc");
  if (!ver || !ver->is_string() || ver->as_string() != "2.0")
    return ParseFailure{id, invalid_request, "\"jsonrpc\" must be \"2.0\""};
  auto* m = o.if_contains("method");
  if (!m || !m->is_string() || m->as_string().empty())
    return ParseFailure{id, invalid_request, "\"method\" must be a non-empty string"};
  Request r;
  r.id = id;
  r.method = std::string(m->as_string());
  if (auto* p = o.if_contains("params")) {
    if (p->is_object()) r.params = p->as_object();
    else if (!p->is_null())
      return ParseFailure{id, invalid_params, "\"params\" must be an object of named parameters"};
  }
  return r;
}

std::string result_line(const json::value& id, json::value result) {
  json::object o;
  o["jsonrpc"] = "2.0";
  o["id"] = id;
  o["result"] = std::move(result);
  return serialize_plain(o) + "\n";
}

std::string error_line(const json::value& id, int code, std::string_view message, json::value data) {
  json::object err;
  err["code"] = code;
  err["message"] = message;
  if (!data.is_null()) err["data"] = std::move(data);
  json::object o;
  o["jsonrpc"] = "2.0";
  o["id"] = id;
  o["error"] = std::move(err);
  return serialize_plain(o) + "\n";
}

int code_for(Errc e) {
  switch (e) {
    case Errc::invalid_argument: return invalid_params;
    case Errc::unsupported: return not_supported;
    case Errc::permission_denied: return permission_denied;
    case Errc::conflict: return busy;
    default: return operation_failed;
  }
}

std::string error_line(const json::value& id, const Error& e) {
  json::object data;
  data["errc"] = errc_name(e.code);
  if (!e.hint.empty()) data["hint"] = e.hint;
  return error_line(id, code_for(e.code), e.message, std::move(data));
}

std::string notification_line(std::string_view method, json::object params) {
  json::object o;
  o["jsonrpc"] = "2.0";
  o["method"] = method;
  o["params"] = std::move(params);
  return serialize_plain(o) + "\n";
}

Client::Client(std::string socket_path, std::chrono::milliseconds timeout)
    : path_(std::move(socket_path)), timeout_(timeout) {}

Client::~Client() {
  if (fd_ >= 0) ::close(fd_);
}

std::optional<CallError> Client::ensure_connected() {
  if (fd_ >= 0) return std::nullopt;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path_.size() >= sizeof(addr.sun_path))
    return CallError{true, 0, "socket path too long: " + path_, nullptr};
  std::memcpy(addr.sun_path, path_.c_str(), path_.size() + 1);
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return CallError{true, 0, std::string("socket(): ") + std::strerror(errno), nullptr};
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    int err = errno;
    ::close(fd);
    return CallError{true, 0, "cannot reach drd at " + path_ + ": " + std::strerror(err), nullptr};
  }
  fd_ = fd;
  return std::nullopt;
}

std::variant<json::value, CallError> Client::call(
    std::string_view method, json::object params,
    const std::function<void(const json::object&)>& on_notification) {
  if (auto err = ensure_connected()) return *err;
  const std::int64_t id = next_id_++;
  json::object req;
  req["jsonrpc"] = "2.0";
  req["id"] = id;
  req["method"] = method;
  req["params"] = std::move(params);
  std::string line = json::serialize(req) + "\n";
  for (std::size_t off = 0; off < line.size();) {
    ssize_t n = ::send(fd_, line.data() + off, line.size() - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return CallError{true, 0, "lost connection to drd at " + path_ + " while sending", nullptr};
    off += static_cast<std::size_t>(n);
  }
  auto deadline = std::chrono::steady_clock::now() + timeout_;
  for (;;) {
    auto nl = buffer_.find('\n');
    if (nl != std::string::npos) {
      std::string msg = buffer_.substr(0, nl);
      buffer_.erase(0, nl + 1);
      json::error_code ec;
      json::value v = json::parse(msg, ec);
      if (ec || !v.is_object()) return CallError{false, internal_error, "drd sent a malformed reply", nullptr};
      auto& o = v.as_object();
      if (!o.contains("id")) {  // a notification
        if (on_notification) on_notification(o);
        continue;
      }
      if (auto* e = o.if_contains("error"); e && e->is_object()) {
        auto& eo = e->as_object();
        CallError ce;
        ce.code = eo.contains("code") && eo.at("code").is_int64() ? static_cast<int>(eo.at("code").as_int64()) : internal_error;
        ce.message = eo.contains("message") && eo.at("message").is_string() ? std::string(eo.at("message").as_string()) : "error";
        if (auto* d = eo.if_contains("data")) ce.data = *d;
        return ce;
      }
      if (auto* r = o.if_contains("result")) return *r;
      return CallError{false, internal_error, "drd sent a reply without result or error", nullptr};
    }
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return CallError{true, 0, "drd at " + path_ + " did not answer in time", nullptr};
    pollfd p{fd_, POLLIN, 0};
    int pr = ::poll(&p, 1, static_cast<int>(left.count()));
    if (pr < 0 && errno == EINTR) continue;
    if (pr <= 0) continue;
    char buf[65536];
    ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return CallError{true, 0, "drd at " + path_ + " closed the connection", nullptr};
    buffer_.append(buf, static_cast<std::size_t>(n));
    if (buffer_.size() > 64 * kMaxMessageBytes)
      return CallError{false, internal_error, "reply from drd too large", nullptr};
  }
}

}  // namespace drd::rpc
