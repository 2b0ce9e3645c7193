#pragma once
// A small blocking HTTP/1.1 client (Boost.Beast) for webhook deliveries and tests.
// Each call uses its own io_context on the calling thread, so it must never be
// called on the daemon's io_context threads. One overall deadline per request.
// Plain http:// only (the config loader refuses https://).
#include <string>
#include <utility>
#include <vector>

#include "common/result.hpp"
#include "common/units.hpp"

namespace drd::monitoring {

struct HttpUrl {
  std::string host;
  std::string port = "80";
  std::string target = "/";  // path and query
  std::string shown() const;  // "http://host:port/path[?***]" for messages: no userinfo, no query
};

// "http://HOST[:PORT][/PATH]"; userinfo ("user:pass@") is refused, so no secret can leak into logs.
Result<HttpUrl> parse_http_url(const std::string& url);

struct HttpResponse {
  int status = 0;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string header(const std::string& name) const;  // case-insensitive; "" when absent
};

struct HttpRequest {
  std::string method = "GET";  // GET | POST | HEAD | ...
  std::string body;
  std::string content_type;
  std::vector<std::pair<std::string, std::string>> headers;
  Millis timeout{5000};
};

// Connect, send, read the response. An Error (unavailable/timeout) when no response came back;
// any HTTP status is a successful Result.
Result<HttpResponse> http_request(const HttpUrl& url, const HttpRequest& req);

}  // namespace drd::monitoring
