#include "daemon/observability/http_client.hpp"

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/version.hpp>

#include <strings.h>

namespace drd::monitoring {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

// The query string is left out: webhook tokens often travel there ("?token=..."), and this
// text goes to logs (found by tests/security).
std::string HttpUrl::shown() const {
  const auto q = target.find('?');
  return "http://" + host + ":" + port + (q == std::string::npos ? target : target.substr(0, q) + "?***");
}

Result<HttpUrl> parse_http_url(const std::string& url) {
  const std::string scheme = "http://";
  if (url.rfind(scheme, 0) != 0)
    return make_error(Errc::invalid_argument, "not an http:// URL: '" + url.substr(0, 8) + "...'",
                      "use http://HOST[:PORT]/PATH");
  std::string rest = url.substr(scheme.size());
  HttpUrl u;
  auto slash = rest.find('/');
  std::string authority = rest.substr(0, slash);
  if (slash != std::string::npos) u.target = rest.substr(slash);
  if (authority.find('@') != std::string::npos)
    return make_error(Errc::invalid_argument, "credentials in a webhook URL are not supported",
                      "put the secret in the path or a relay; URLs are logged");
  if (!authority.empty() && authority.front() == '[') {  // [v6]:port
    auto close = authority.find(']');
    if (close == std::string::npos) return make_error(Errc::invalid_argument, "bad IPv6 host in URL");
    u.host = authority.substr(1, close - 1);
    if (close + 1 < authority.size() && authority[close + 1] == ':') u.port = authority.substr(close + 2);
  } else {
    auto colon = authority.rfind(':');
    u.host = authority.substr(0, colon);
    if (colon != std::string::npos) u.port = authority.substr(colon + 1);
  }
  if (u.host.empty()) return make_error(Errc::invalid_argument, "URL has no host: '" + url + "'");
  if (u.port.empty() || u.port.find_first_not_of("0123456789") != std::string::npos)
    return make_error(Errc::invalid_argument, "URL has a bad port: '" + url + "'");
  return u;
}

std::string HttpResponse::header(const std::string& name) const {
  for (const auto& [k, v] : headers)
    if (strcasecmp(k.c_str(), name.c_str()) == 0) return v;
  return {};
}

Result<HttpResponse> http_request(const HttpUrl& url, const HttpRequest& req) {
  asio::io_context ioc;
  tcp::resolver resolver(ioc);
  beast::tcp_stream stream(ioc);
  beast::flat_buffer buffer;
  http::request<http::string_body> request{http::string_to_verb(req.method), url.target, 11};
  request.set(http::field::host, url.host + ":" + url.port);
  request.set(http::field::user_agent, "drd");
  request.set(http::field::connection, "close");
  if (!req.content_type.empty()) request.set(http::field::content_type, req.content_type);
  for (const auto& [k, v] : req.headers) request.set(k, v);
  request.body() = req.body;
  request.prepare_payload();
  http::response_parser<http::string_body> parser;
  parser.body_limit(4 << 20);
  if (req.method == "HEAD") parser.skip(true);

  beast::error_code failure;
  std::string phase = "resolving";
  // The stream's expiry is one deadline for connect + write + read together.
  stream.expires_after(req.timeout);
  resolver.async_resolve(url.host, url.port, [&](beast::error_code ec, tcp::resolver::results_type results) {
    if (ec) { failure = ec; return; }
    phase = "connecting";
    stream.async_connect(results, [&](beast::error_code ec2, const tcp::endpoint&) {
      if (ec2) { failure = ec2; return; }
      phase = "sending";
      http::async_write(stream, request, [&](beast::error_code ec3, std::size_t) {
        if (ec3) { failure = ec3; return; }
        phase = "reading the response";
        http::async_read(stream, buffer, parser, [&](beast::error_code ec4, std::size_t) {
          if (ec4) failure = ec4;
        });
      });
    });
  });
  // The resolver has no expiry of its own: bound the whole run as well.
  ioc.run_for(req.timeout + Millis(100));
  if (!ioc.stopped()) {
    ioc.stop();
    return make_error(Errc::timeout, url.shown() + ": no answer within " + format_duration(req.timeout) + " (" + phase + ")");
  }
  if (failure) {
    if (failure == beast::error::timeout)
      return make_error(Errc::timeout, url.shown() + ": no answer within " + format_duration(req.timeout) + " (" + phase + ")");
    return make_error(Errc::unavailable, url.shown() + ": " + phase + " failed: " + failure.message());
  }
  beast::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  HttpResponse out;
  auto& res = parser.get();
  out.status = static_cast<int>(res.result_int());
  out.body = res.body();
  for (const auto& f : res) out.headers.emplace_back(std::string(f.name_string()), std::string(f.value()));
  return out;
}

}  // namespace drd::monitoring
