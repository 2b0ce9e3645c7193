#include "daemon/coord/peer_server.hpp"

#include <spdlog/spdlog.h>

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "daemon/observability/http_server.hpp"

namespace drd::coord {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
using tcp = asio::ip::tcp;

boost::json::object error_json(const Error& e) {
  return json::object{{"errc", errc_name(e.code)}, {"message", e.message}, {"hint", e.hint}};
}

Error error_from_json(const json::value& v) {
  Error e{Errc::internal, "unreadable error from the leading drd", ""};
  if (!v.is_object()) return e;
  auto& o = v.as_object();
  if (auto* m = o.if_contains("message"); m && m->is_string()) e.message = std::string(m->as_string());
  if (auto* h = o.if_contains("hint"); h && h->is_string()) e.hint = std::string(h->as_string());
  if (auto* c = o.if_contains("errc"); c && c->is_string())
    for (int i = 0; i <= static_cast<int>(Errc::internal); ++i)
      if (c->as_string() == errc_name(static_cast<Errc>(i))) e.code = static_cast<Errc>(i);
  return e;
}

struct PeerServer::Shared : std::enable_shared_from_this<PeerServer::Shared> {
  Shared(asio::io_context& io, asio::any_io_executor ex, std::string l, std::string t, PeerHandlers h)
      : io(io), handler_ex(std::move(ex)), listen(std::move(l)), token(std::move(t)), handlers(std::move(h)),
        acceptor(io) {}
  asio::io_context& io;
  asio::any_io_executor handler_ex;
  std::string listen, token;
  PeerHandlers handlers;
  tcp::acceptor acceptor;
  std::atomic<int> connections{0};
  std::atomic<bool> stopped{false};

  void accept();
};

namespace {

struct Session : std::enable_shared_from_this<Session> {
  Session(std::shared_ptr<PeerServer::Shared> s, tcp::socket sock) : shared(std::move(s)), stream(std::move(sock)) {}
  ~Session() { --shared->connections; }
  std::shared_ptr<PeerServer::Shared> shared;
  beast::tcp_stream stream;
  beast::flat_buffer buffer;
  http::request_parser<http::string_body> parser;
  http::response<http::string_body> res;

  void run() {
    parser.body_limit(64 * 1024);
    stream.expires_after(std::chrono::seconds(10));
    http::async_read(stream, buffer, parser, [self = shared_from_this()](beast::error_code ec, std::size_t) {
      if (ec) return;
      self->handle();
    });
  }

  void send(http::status st, json::value body) {
    auto self = shared_from_this();
    asio::post(stream.get_executor(), [self, st, body = std::move(body)]() mutable {
      self->res.result(st);
      self->res.version(11);
      self->res.set(http::field::content_type, "application/json");
      self->res.set(http::field::connection, "close");
      self->res.body() = json::serialize(body);
      self->res.prepare_payload();
      // A forwarded failover may take long; the write itself gets its own 10 s.
      self->stream.expires_after(std::chrono::seconds(10));
      http::async_write(self->stream, self->res, [self](beast::error_code, std::size_t) {
        beast::error_code ignored;
        self->stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
      });
    });
  }

  void handle() {
    auto& req = parser.get();
    if (!shared->token.empty()) {
      std::string auth(req[http::field::authorization]);
      if (!monitoring::constant_time_equal(auth, "Bearer " + shared->token))
        return send(http::status::unauthorized, json::object{{"error", error_json(make_error(Errc::permission_denied, "bad or missing peer token"))}});
    }
    if (req.method() != http::verb::post)
      return send(http::status::method_not_allowed, json::object{{"error", "POST only"}});
    boost::system::error_code ec;
    auto v = json::parse(req.body(), ec);
    if (ec || !v.is_object())
      return send(http::status::bad_request, json::object{{"error", error_json(make_error(Errc::invalid_argument, "the body must be a JSON object"))}});
    auto body = v.as_object();
    stream.expires_never();  // the handler decides how long it takes
    auto self = shared_from_this();
    if (req.target() == "/peer/v1/failsafe") {
      asio::post(shared->handler_ex, [self, body] {
        if (self->shared->stopped) return self->send(http::status::service_unavailable, json::object{{"confirm", false}, {"reason", "stopping"}});
        self->send(http::status::ok, self->shared->handlers.failsafe(body));
      });
      return;
    }
    if (req.target() == "/peer/v1/rpc") {
      auto* m = body.if_contains("method");
      if (!m || !m->is_string())
        return send(http::status::bad_request, json::object{{"error", error_json(make_error(Errc::invalid_argument, "missing \"method\""))}});
      std::string method(m->as_string());
      json::object params;
      if (auto* p = body.if_contains("params"); p && p->is_object()) params = p->as_object();
      asio::post(shared->handler_ex, [self, method, params] {
        if (self->shared->stopped)
          return self->send(http::status::service_unavailable, json::object{{"error", error_json(make_error(Errc::unavailable, "drd is stopping"))}});
        self->shared->handlers.rpc(method, params, [self](Result<json::value> r) {
          if (r) self->send(http::status::ok, json::object{{"result", std::move(r.value())}});
          else self->send(http::status::ok, json::object{{"error", error_json(r.error())}});
        });
      });
      return;
    }
    send(http::status::not_found, json::object{{"error", error_json(make_error(Errc::not_found, "no such peer path"))}});
  }
};

}  // namespace

void PeerServer::Shared::accept() {
  acceptor.async_accept([self = shared_from_this()](beast::error_code ec, tcp::socket sock) {
    if (self->stopped) return;
    if (!ec) {
      if (self->connections.load() >= 32) {
        beast::error_code ignored;
        sock.close(ignored);
      } else {
        ++self->connections;
        std::make_shared<Session>(self, std::move(sock))->run();
      }
    }
    self->accept();
  });
}

PeerServer::PeerServer(asio::io_context& io, asio::any_io_executor ex, std::string listen, std::string token,
                       PeerHandlers handlers)
    : shared_(std::make_shared<Shared>(io, std::move(ex), std::move(listen), std::move(token), std::move(handlers))) {}

PeerServer::~PeerServer() { stop(); }

Status PeerServer::start() {
  std::string host = shared_->listen, port;
  if (!host.empty() && host.front() == '[') {
    auto close = host.find(']');
    port = host.substr(close + 2);
    host = host.substr(1, close - 1);
  } else {
    auto colon = host.rfind(':');
    port = host.substr(colon + 1);
    host = host.substr(0, colon);
  }
  beast::error_code ec;
  auto addr = asio::ip::make_address(host, ec);
  if (ec) return make_error(Errc::invalid_argument, "store.peer_listen: '" + host + "' is not an IP address");
  tcp::endpoint ep(addr, static_cast<unsigned short>(std::stoi(port)));
  auto& a = shared_->acceptor;
  a.open(ep.protocol(), ec);
  if (!ec) a.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) a.bind(ep, ec);
  if (!ec) a.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return make_error(Errc::unavailable, "cannot listen on store.peer_listen " + shared_->listen + ": " + ec.message());
  shared_->accept();
  return ok_status();
}

void PeerServer::stop() {
  if (shared_->stopped.exchange(true)) return;
  asio::post(shared_->acceptor.get_executor(), [s = shared_] {
    beast::error_code ignored;
    s->acceptor.close(ignored);
  });
}

}  // namespace drd::coord
