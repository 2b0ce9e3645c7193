#include "daemon/observability/http_server.hpp"

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <atomic>
#include <fstream>
#include <mutex>
#include <optional>

#include "common/json_text.hpp"
#include "daemon/observability/status_page.hpp"

namespace drd::monitoring {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
using tcp = asio::ip::tcp;

// ---- helpers ------------------------------------------------------------------------

Result<std::string> read_token_file(const std::filesystem::path& file, const std::string& key) {
  std::ifstream f(file);
  if (!f) return make_error(Errc::io, key + ": cannot read " + file.string(), "check the path and permissions");
  std::string line;
  std::getline(f, line);
  auto b = line.find_first_not_of(" \t\r\n");
  auto e = line.find_last_not_of(" \t\r\n");
  if (b == std::string::npos) return make_error(Errc::invalid_argument, key + ": " + file.string() + " is empty");
  struct stat st{};
  if (stat(file.c_str(), &st) == 0 && (st.st_mode & S_IROTH))
    spdlog::warn("{} {} is readable by every user; chmod 600 it", key, file.string());
  return line.substr(b, e - b + 1);
}

bool constant_time_equal(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  const std::size_t n = std::max(a.size(), b.size());
  for (std::size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0;
    const unsigned char y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff |= static_cast<unsigned char>(x ^ y);
  }
  return diff == 0;
}

namespace {

std::string percent_decode(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() + 0 && std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out += static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

std::optional<std::string> query_param(std::string_view query, std::string_view key) {
  while (!query.empty()) {
    auto amp = query.find('&');
    std::string_view part = query.substr(0, amp);
    auto eq = part.find('=');
    if (part.substr(0, eq) == key) return percent_decode(eq == std::string_view::npos ? "" : part.substr(eq + 1));
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return std::nullopt;
}

enum class Route { health, metrics, primary_any, primary_node, replica_node, page, status_json, alerts_json, not_found };

struct Request {
  Route route = Route::not_found;
  std::string node;
  std::string query;
};

Request parse_target(std::string_view target) {
  Request r;
  auto q = target.find('?');
  std::string_view path = target.substr(0, q);
  if (q != std::string_view::npos) r.query = std::string(target.substr(q + 1));
  auto starts = [&](std::string_view p) { return path.size() > p.size() && path.substr(0, p.size()) == p; };
  if (path == "/health" || path == "/healthz") r.route = Route::health;
  else if (path == "/metrics") r.route = Route::metrics;
  else if (path == "/primary" || path == "/primary/") r.route = Route::primary_any;
  else if (starts("/primary/")) { r.route = Route::primary_node; r.node = percent_decode(path.substr(9)); }
  else if (starts("/replica/")) { r.route = Route::replica_node; r.node = percent_decode(path.substr(9)); }
  else if (path == "/" || path == "/index.html") r.route = Route::page;
  else if (path == "/status.json") r.route = Route::status_json;
  else if (path == "/alerts.json") r.route = Route::alerts_json;
  return r;
}

// What the providers returned, copied out on the callback strand.
struct Data {
  bool alive = false;
  json::value status, alerts;
  std::optional<PrometheusSnapshot> metrics;
  std::vector<ChartSeries> chart;
  SysTime now{};
};

struct Reply {
  unsigned status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

Reply text(unsigned status, std::string body) { return Reply{status, "text/plain; charset=utf-8", std::move(body)}; }

const json::value* find_node(const json::value& status, const std::string& name) {
  if (!status.is_object()) return nullptr;
  auto* nodes = status.as_object().if_contains("nodes");
  if (!nodes || !nodes->is_array()) return nullptr;
  for (const auto& n : nodes->as_array()) {
    if (!n.is_object()) continue;
    auto* nm = n.as_object().if_contains("name");
    if (nm && nm->is_string() && nm->as_string() == name) return &n;
  }
  return nullptr;
}

std::string jstr(const json::value& o, const char* key) {
  auto* v = o.is_object() ? o.as_object().if_contains(key) : nullptr;
  return v && v->is_string() ? std::string(v->as_string()) : std::string();
}
bool jbool(const json::value& o, const char* key) {
  auto* v = o.is_object() ? o.as_object().if_contains(key) : nullptr;
  return v && v->is_bool() && v->as_bool();
}
std::optional<double> jnum(const json::value& o, const char* key) {
  auto* v = o.is_object() ? o.as_object().if_contains(key) : nullptr;
  if (!v) return std::nullopt;
  if (v->is_double()) return v->as_double();
  if (v->is_int64()) return static_cast<double>(v->as_int64());
  if (v->is_uint64()) return static_cast<double>(v->as_uint64());
  return std::nullopt;
}

Reply respond(const Request& rq, const Data& d) {
  switch (rq.route) {
    case Route::health:
      return d.alive ? text(200, "ok\n") : text(503, "drd's control loop is not running\n");
    case Route::metrics:
      if (!d.metrics) return text(503, "metrics unavailable\n");
      return Reply{200, "text/plain; version=0.0.4; charset=utf-8", render_prometheus(*d.metrics)};
    case Route::primary_any: {
      const std::string p = jstr(d.status, "primary");
      if (p.empty()) return text(503, "no primary\n");
      const json::value* n = find_node(d.status, p);
      if (!n || jstr(*n, "role") != "primary" || !jbool(*n, "healthy")) return text(503, p + " (not healthy)\n");
      return text(200, p + "\n");
    }
    case Route::primary_node: {
      const json::value* n = find_node(d.status, rq.node);
      if (!n) return text(404, "no node named '" + rq.node + "'\n");
      const std::string role = jstr(*n, "role");
      if (jstr(d.status, "primary") == rq.node && role == "primary" && jbool(*n, "healthy") && !jbool(*n, "fenced"))
        return text(200, "primary\n");
      return text(503, "not the writable primary (role: " + (role.empty() ? std::string("unknown") : role) +
                           (jbool(*n, "healthy") ? "" : ", unhealthy") + ")\n");
    }
    case Route::replica_node: {
      const json::value* n = find_node(d.status, rq.node);
      if (!n) return text(404, "no node named '" + rq.node + "'\n");
      const std::string role = jstr(*n, "role");
      if (role != "standby" || !jbool(*n, "healthy") || jbool(*n, "fenced") || jstr(d.status, "primary") == rq.node)
        return text(503, "not a healthy standby (role: " + (role.empty() ? std::string("unknown") : role) + ")\n");
      if (auto max = query_param(rq.query, "lag")) {
        std::optional<std::uint64_t> limit = parse_size(*max);
        if (!limit && !max->empty() && max->find_first_not_of("0123456789") == std::string::npos)
          limit = std::stoull(*max);
        if (!limit) return text(400, "lag must be a byte count (e.g. 1048576 or 16MB), got '" + *max + "'\n");
        auto lag = jnum(*n, "lag_bytes");
        if (!lag) return text(503, "replication lag unknown\n");
        if (*lag > static_cast<double>(*limit))
          return text(503, "standby, but " + std::to_string(static_cast<std::uint64_t>(*lag)) + " bytes behind (max " +
                               std::to_string(*limit) + ")\n");
      }
      return text(200, "standby\n");
    }
    case Route::page:
      return Reply{200, "text/html; charset=utf-8", render_status_page(d.status, d.alerts, d.chart, d.now)};
    case Route::status_json:
      return Reply{200, "application/json", serialize_plain(d.status) + "\n"};
    case Route::alerts_json:
      return Reply{200, "application/json", serialize_plain(d.alerts) + "\n"};
    case Route::not_found:
      break;
  }
  return text(404, "not found; try /, /metrics, /health, /primary/NODE, /replica/NODE\n");
}

// Runs on the callback strand: copies out only what the route needs.
Data gather(const Request& rq, const HttpProviders& p) {
  Data d;
  d.now = p.now ? p.now() : std::chrono::system_clock::now();
  switch (rq.route) {
    case Route::health: d.alive = p.alive && p.alive(); break;
    case Route::metrics: if (p.metrics) d.metrics = p.metrics(); break;
    case Route::page:
      if (p.alerts) d.alerts = p.alerts();
      if (p.chart) d.chart = p.chart(d.now);
      [[fallthrough]];
    case Route::primary_any:
    case Route::primary_node:
    case Route::replica_node:
    case Route::status_json:
      if (p.status) d.status = p.status();
      break;
    case Route::alerts_json: if (p.alerts) d.alerts = p.alerts(); break;
    case Route::not_found: break;
  }
  return d;
}

class Session;

}  // namespace

struct HttpServer::Shared {
  asio::any_io_executor callback;
  HttpServerOptions options;
  HttpProviders providers;
  std::atomic<std::size_t> active{0};
  std::optional<tcp::acceptor> acceptor;
  std::optional<asio::strand<asio::io_context::executor_type>> accept_strand;
  unsigned short port = 0;
  std::mutex mu;
  bool stopped = false;
  std::vector<std::weak_ptr<Session>> sessions;
  std::chrono::steady_clock::time_point last_limit_warning{};
};

namespace {

class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, std::shared_ptr<HttpServer::Shared> shared)
      : stream_(std::move(socket)), timer_(stream_.get_executor()), shared_(std::move(shared)) {}
  ~Session() { --shared_->active; }

  void start() {
    asio::dispatch(stream_.get_executor(), [self = shared_from_this()] { self->read(); });
  }
  void close() {
    asio::post(stream_.get_executor(), [self = shared_from_this()] {
      beast::error_code ec;
      self->timer_.cancel();
      self->stream_.socket().close(ec);
    });
  }

 private:
  void read() {
    parser_.emplace();
    parser_->header_limit(static_cast<std::uint32_t>(shared_->options.header_limit));
    stream_.expires_after(shared_->options.read_timeout);
    http::async_read_header(stream_, buffer_, *parser_,
                            [self = shared_from_this()](beast::error_code ec, std::size_t) { self->on_header(ec); });
  }

  void on_header(beast::error_code ec) {
    if (ec == http::error::header_limit) return send(text(431, "request header larger than 8 KiB\n"), false);
    if (ec) return;  // timeout, reset, garbage: just close
    const auto& req = parser_->get();
    head_ = req.method() == http::verb::head;
    if (req.method() != http::verb::get && !head_) return send(text(405, "only GET and HEAD\n"), false);
    Request rq = parse_target(std::string_view(req.target().data(), req.target().size()));
    if (rq.route != Route::health && !shared_->options.token.empty()) {
      std::string_view auth(req[http::field::authorization].data(), req[http::field::authorization].size());
      const std::string given = auth.substr(0, 7) == "Bearer " ? std::string(auth.substr(7)) : std::string();
      if (!constant_time_equal(given, shared_->options.token)) {
        Reply r = text(401, "a bearer token is required (Authorization: Bearer ...)\n");
        return send(std::move(r), true);
      }
    }
    if (rq.route == Route::not_found) return send(respond(rq, Data{}), false);

    // Ask the callback strand; whichever comes first (the answer or the deadline) replies.
    timer_.expires_after(shared_->options.callback_timeout);
    timer_.async_wait([self = shared_from_this()](beast::error_code e) {
      if (e || self->answered_) return;
      self->answered_ = true;
      self->send(text(503, "drd's control loop did not answer in time\n"), false);
    });
    asio::post(shared_->callback, [self = shared_from_this(), rq] {
      Data d;
      std::string failure;
      bool stopped;
      {
        std::lock_guard lk(self->shared_->mu);
        stopped = self->shared_->stopped;
      }
      // After stop() the providers' owner may be gone: never call them then.
      if (stopped) failure = "stopping";
      else try {
        d = gather(rq, self->shared_->providers);
      } catch (const std::exception& e) {
        failure = e.what();
      }
      asio::post(self->stream_.get_executor(), [self, rq, d = std::move(d), failure]() mutable {
        if (self->answered_) return;
        self->answered_ = true;
        self->timer_.cancel();
        if (failure == "stopping") return self->send(text(503, "drd is stopping\n"), false);
        if (!failure.empty()) {
          spdlog::error("http: {} failed: {}", static_cast<int>(rq.route), failure);
          return self->send(text(500, "internal error\n"), false);
        }
        self->send(respond(rq, d), false);
      });
    });
  }

  void send(Reply r, bool auth_challenge) {
    res_.emplace(static_cast<http::status>(r.status), 11);
    res_->set(http::field::server, "drd");
    res_->set(http::field::content_type, r.content_type);
    res_->set(http::field::cache_control, "no-store");
    res_->set(http::field::connection, "close");
    if (auth_challenge) res_->set(http::field::www_authenticate, "Bearer realm=\"drd\"");
    res_->body() = std::move(r.body);
    res_->prepare_payload();
    if (head_) res_->body().clear();  // Content-Length stays that of the GET
    stream_.expires_after(shared_->options.read_timeout);
    http::async_write(stream_, *res_, [self = shared_from_this()](beast::error_code, std::size_t) {
      beast::error_code ec;
      self->stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
      self->stream_.close();
    });
  }

  beast::tcp_stream stream_;
  asio::steady_timer timer_;
  beast::flat_buffer buffer_{8192};
  std::optional<http::request_parser<http::empty_body>> parser_;
  std::optional<http::response<http::string_body>> res_;
  std::shared_ptr<HttpServer::Shared> shared_;
  bool head_ = false;
  bool answered_ = false;
};

void do_accept(asio::io_context& io, std::shared_ptr<HttpServer::Shared> shared) {
  shared->acceptor->async_accept(asio::make_strand(io), [&io, shared](beast::error_code ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted || !shared->acceptor->is_open()) return;
    if (!ec) {
      if (shared->active.load() >= shared->options.max_connections) {
        beast::error_code ignored;
        socket.close(ignored);
        auto now = std::chrono::steady_clock::now();
        if (now - shared->last_limit_warning > std::chrono::minutes(1)) {
          shared->last_limit_warning = now;
          spdlog::warn("http: {} connections open, refusing more", shared->options.max_connections);
        }
      } else {
        ++shared->active;
        auto s = std::make_shared<Session>(std::move(socket), shared);
        {
          std::lock_guard lk(shared->mu);
          std::erase_if(shared->sessions, [](const std::weak_ptr<Session>& w) { return w.expired(); });
          shared->sessions.push_back(s);
        }
        s->start();
      }
    } else {
      spdlog::debug("http: accept failed: {}", ec.message());
    }
    do_accept(io, shared);
  });
}

Result<tcp::endpoint> resolve_listen(asio::io_context& io, const std::string& listen) {
  std::string host, port;
  if (!listen.empty() && listen.front() == '[') {
    auto close = listen.find("]:");
    if (close == std::string::npos) return make_error(Errc::invalid_argument, "http.listen: expected [ADDRESS]:PORT, got '" + listen + "'");
    host = listen.substr(1, close - 1);
    port = listen.substr(close + 2);
  } else {
    auto colon = listen.rfind(':');
    if (colon == std::string::npos) return make_error(Errc::invalid_argument, "http.listen: expected HOST:PORT, got '" + listen + "'");
    host = listen.substr(0, colon);
    port = listen.substr(colon + 1);
  }
  if (host.empty()) host = "127.0.0.1";
  tcp::resolver resolver(io);
  beast::error_code ec;
  auto results = resolver.resolve(host, port, tcp::resolver::passive | tcp::resolver::numeric_service, ec);
  if (ec || results.empty())
    return make_error(Errc::invalid_argument, "http.listen: cannot resolve '" + listen + "': " + ec.message());
  return results.begin()->endpoint();
}

}  // namespace

HttpServer::HttpServer(asio::io_context& io, asio::any_io_executor callback_executor, HttpServerOptions options,
                       HttpProviders providers)
    : io_(io), shared_(std::make_shared<Shared>()) {
  shared_->callback = std::move(callback_executor);
  shared_->options = std::move(options);
  shared_->providers = std::move(providers);
}

HttpServer::~HttpServer() { stop(); }

Status HttpServer::start() {
  auto ep = resolve_listen(io_, shared_->options.listen);
  if (!ep) return ep.error();
  shared_->accept_strand.emplace(asio::make_strand(io_));
  shared_->acceptor.emplace(*shared_->accept_strand);
  beast::error_code ec;
  auto& a = *shared_->acceptor;
  a.open(ep->protocol(), ec);
  if (!ec) a.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) a.bind(*ep, ec);
  if (!ec) a.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    a.close(ec);
    return make_error(Errc::unavailable, "http.listen: cannot listen on " + shared_->options.listen + ": " + ec.message(),
                      ec == asio::error::address_in_use ? "another program uses that port; pick another http.listen"
                                                        : "");
  }
  shared_->port = a.local_endpoint().port();
  spdlog::info("http: listening on {}:{}{}", ep->address().to_string(), shared_->port,
               shared_->options.token.empty() ? "" : " (bearer token required)");
  do_accept(io_, shared_);
  return ok_status();
}

void HttpServer::stop() {
  std::vector<std::weak_ptr<Session>> sessions;
  {
    std::lock_guard lk(shared_->mu);
    if (shared_->stopped) return;
    shared_->stopped = true;
    sessions.swap(shared_->sessions);
  }
  if (shared_->acceptor && shared_->accept_strand) {
    auto shared = shared_;
    asio::post(*shared_->accept_strand, [shared] {
      beast::error_code ec;
      shared->acceptor->close(ec);
    });
  }
  for (auto& w : sessions)
    if (auto s = w.lock()) s->close();
}

unsigned short HttpServer::port() const { return shared_->port; }

}  // namespace drd::monitoring
