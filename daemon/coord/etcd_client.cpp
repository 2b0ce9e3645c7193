#include "daemon/coord/etcd_client.hpp"

#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <chrono>
#include <cstdio>

namespace drd::coord {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
using tcp = asio::ip::tcp;

std::string base64_encode(const std::string& in) {
  std::string out(4 * ((in.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(in.data()), static_cast<int>(in.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

Result<std::string> base64_decode(const std::string& in) {
  if (in.size() % 4 != 0) return make_error(Errc::corrupt, "etcd sent a base64 text of bad length");
  std::string out(in.size() / 4 * 3 + 1, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(in.data()), static_cast<int>(in.size()));
  if (n < 0) return make_error(Errc::corrupt, "etcd sent invalid base64");
  std::size_t len = static_cast<std::size_t>(n);
  // EVP_DecodeBlock counts the padding as zero bytes.
  if (!in.empty() && in.back() == '=') --len;
  if (in.size() > 1 && in[in.size() - 2] == '=') --len;
  out.resize(len);
  return out;
}

std::string prefix_end(const std::string& prefix) {
  std::string end = prefix;
  while (!end.empty()) {
    if (static_cast<unsigned char>(end.back()) < 0xff) {
      end.back() = static_cast<char>(static_cast<unsigned char>(end.back()) + 1);
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');  // every key
}

namespace {

struct Endpoint {
  bool tls = false;
  std::string host, port;
};

Endpoint parse_endpoint(const std::string& e) {
  Endpoint ep;
  std::string rest = e;
  if (rest.rfind("https://", 0) == 0) {
    ep.tls = true;
    rest = rest.substr(8);
  } else if (rest.rfind("http://", 0) == 0) {
    rest = rest.substr(7);
  }
  if (!rest.empty() && rest.front() == '[') {
    auto close = rest.find(']');
    ep.host = rest.substr(1, close - 1);
    ep.port = close + 2 <= rest.size() ? rest.substr(close + 2) : "2379";
  } else {
    auto colon = rest.rfind(':');
    ep.host = rest.substr(0, colon);
    ep.port = colon == std::string::npos ? "2379" : rest.substr(colon + 1);
  }
  return ep;
}

std::int64_t num(const json::object& o, const char* key) {
  auto it = o.find(key);
  if (it == o.end()) return 0;  // the gateway leaves zero values out
  if (it->value().is_string()) {
    // Member IDs ("leader", "member_id") are uint64 and half of them exceed int64's range:
    // keep their bits rather than turning them into 0 (which reads as "no leader").
    const std::string text(it->value().as_string());
    try {
      return std::stoll(text);
    } catch (...) {
    }
    try {
      return static_cast<std::int64_t>(std::stoull(text));
    } catch (...) {
      return 0;
    }
  }
  if (it->value().is_int64()) return it->value().as_int64();
  if (it->value().is_uint64()) return static_cast<std::int64_t>(it->value().as_uint64());
  return 0;
}

std::string str(const json::object& o, const char* key) {
  auto it = o.find(key);
  return it != o.end() && it->value().is_string() ? std::string(it->value().as_string()) : std::string();
}

Result<std::vector<KeyValue>> parse_kvs(const json::object& o) {
  std::vector<KeyValue> out;
  auto it = o.find("kvs");
  if (it == o.end() || !it->value().is_array()) return out;
  for (auto& v : it->value().as_array()) {
    if (!v.is_object()) continue;
    auto& kv = v.as_object();
    KeyValue r;
    auto k = base64_decode(str(kv, "key"));
    if (!k) return k.error();
    auto val = base64_decode(str(kv, "value"));
    if (!val) return val.error();
    r.key = *k;
    r.value = *val;
    r.create_revision = num(kv, "create_revision");
    r.mod_revision = num(kv, "mod_revision");
    r.version = num(kv, "version");
    r.lease = num(kv, "lease");
    out.push_back(std::move(r));
  }
  return out;
}

json::object op_json(const TxnOp& op) {
  json::object body{{"key", base64_encode(op.key)}};
  if (op.kind == TxnOp::Kind::put) {
    body["value"] = base64_encode(op.value);
    if (op.lease) body["lease"] = std::to_string(op.lease);
    return {{"request_put", std::move(body)}};
  }
  if (op.prefix) body["range_end"] = base64_encode(prefix_end(op.key));
  if (op.kind == TxnOp::Kind::del) return {{"request_delete_range", std::move(body)}};
  return {{"request_range", std::move(body)}};
}

// etcd answers these when the member it was asked has no quorum or no leader: another
// member may do better.
bool retry_elsewhere(const std::string& msg) {
  for (const char* s : {"no leader", "request timed out", "leader changed", "not capable", "too many requests",
                        "unhealthy cluster", "timed out"})
    if (msg.find(s) != std::string::npos) return true;
  return false;
}

// One HTTP POST with a deadline; the body of any answer comes back with its status.
template <class Stream>
Result<std::pair<int, std::string>> exchange(asio::io_context& ioc, Stream& stream, tcp::resolver& resolver,
                                             const Endpoint& ep, http::request<http::string_body>& req,
                                             Millis timeout, std::function<void(std::function<void(beast::error_code)>)> handshake) {
  beast::error_code failure;
  std::string phase = "resolving";
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(8 << 20);
  bool done = false;
  resolver.async_resolve(ep.host, ep.port, [&](beast::error_code ec, tcp::resolver::results_type results) {
    if (ec) { failure = ec; return; }
    phase = "connecting";
    beast::get_lowest_layer(stream).async_connect(results, [&](beast::error_code ec2, const tcp::endpoint&) {
      if (ec2) { failure = ec2; return; }
      phase = "TLS handshake";
      handshake([&](beast::error_code ec3) {
        if (ec3) { failure = ec3; return; }
        phase = "sending";
        http::async_write(stream, req, [&](beast::error_code ec4, std::size_t) {
          if (ec4) { failure = ec4; return; }
          phase = "reading the answer";
          http::async_read(stream, buffer, parser, [&](beast::error_code ec5, std::size_t) {
            if (ec5) failure = ec5;
            else done = true;
          });
        });
      });
    });
  });
  ioc.run_for(timeout + Millis(50));
  if (!done) {
    if (!ioc.stopped()) ioc.stop();
    if (failure && failure != beast::error::timeout)
      return make_error(Errc::unavailable, phase + " failed: " + failure.message());
    return make_error(Errc::timeout, "no answer within " + format_duration(timeout) + " (" + phase + ")");
  }
  return std::pair<int, std::string>{static_cast<int>(parser.get().result_int()), parser.get().body()};
}

}  // namespace

EtcdClient::EtcdClient(EtcdOptions o) : o_(std::move(o)) {}

Result<json::object> EtcdClient::call_one(std::size_t index, const std::string& path, const std::string& body,
                                          Millis timeout, bool auth_retry) {
  const std::string& endpoint = o_.endpoints[index];
  Endpoint ep = parse_endpoint(endpoint);
  std::string tok;
  if (!o_.username.empty() && path != "/v3/auth/authenticate") {
    auto t = token(index, timeout);
    if (!t) return t.error();
    tok = *t;
  }
  http::request<http::string_body> req{http::verb::post, path, 11};
  req.set(http::field::host, ep.host + ":" + ep.port);
  req.set(http::field::content_type, "application/json");
  req.set(http::field::connection, "close");
  if (!tok.empty()) req.set(http::field::authorization, tok);
  req.body() = body;
  req.prepare_payload();

  asio::io_context ioc;
  tcp::resolver resolver(ioc);
  Result<std::pair<int, std::string>> answer = make_error(Errc::internal, "not run");
  if (ep.tls) {
    asio::ssl::context ctx(asio::ssl::context::tls_client);
    beast::error_code ec;
    // Each file is named in the error: "No such file" alone does not say which of three.
    auto setup = [&](const char* key, const std::filesystem::path& f) {
      return make_error(Errc::invalid_argument, "etcd TLS setup: store.tls." + std::string(key) + " " + f.string() + ": " + ec.message(),
                        "check the file exists, is PEM and is readable by drd");
    };
    if (o_.ca_file) {
      ctx.load_verify_file(o_.ca_file->string(), ec);
      if (ec) return setup("ca_file", *o_.ca_file);
    } else {
      ctx.set_default_verify_paths(ec);
      if (ec) return make_error(Errc::invalid_argument, "etcd TLS setup: the system CA store: " + ec.message(),
                                "set store.tls.ca_file");
    }
    if (o_.cert_file) {
      ctx.use_certificate_chain_file(o_.cert_file->string(), ec);
      if (ec) return setup("cert_file", *o_.cert_file);
    }
    if (o_.key_file) {
      ctx.use_private_key_file(o_.key_file->string(), asio::ssl::context::pem, ec);
      if (ec) return setup("key_file", *o_.key_file);
    }
    ctx.set_verify_mode(asio::ssl::verify_peer);
    beast::ssl_stream<beast::tcp_stream> stream(ioc, ctx);
    beast::get_lowest_layer(stream).expires_after(timeout);
    SSL* ssl = stream.native_handle();
    // SNI carries host names only (RFC 6066): an IP literal there is a protocol error.
    boost::system::error_code ip_ec;
    asio::ip::make_address(ep.host, ip_ec);
    if (ip_ec) SSL_set_tlsext_host_name(ssl, ep.host.c_str());
    // OpenSSL checks the name itself (DNS or IP subjectAltName), so a mismatch comes back as
    // a verify result with a reason ("hostname mismatch", "IP address mismatch").
    SSL_set1_host(ssl, ep.host.c_str());
    answer = exchange(ioc, stream, resolver, ep, req, timeout, [&](std::function<void(beast::error_code)> next) {
      stream.async_handshake(asio::ssl::stream_base::client, [next](beast::error_code e) { next(e); });
    });
    // OpenSSL's handshake error says only "certificate verify failed"; the verify result
    // says why (unknown issuer = wrong CA, name mismatch, expired...).
    if (!answer && answer.error().message.find("certificate verify failed") != std::string::npos) {
      long v = SSL_get_verify_result(ssl);
      if (v != X509_V_OK) {
        Error e = answer.error();
        e.message += std::string(" (") + X509_verify_cert_error_string(v) + " for " + ep.host +
                     (o_.ca_file ? ", trusting " + o_.ca_file->string() : ", trusting the system CAs") + ")";
        e.hint = "check store.tls.ca_file and that the endpoint's name is in etcd's certificate";
        answer = e;
      }
    }
  } else {
    beast::tcp_stream stream(ioc);
    stream.expires_after(timeout);
    answer = exchange(ioc, stream, resolver, ep, req, timeout,
                      [](std::function<void(beast::error_code)> next) { next({}); });
  }
  if (!answer) {
    Error e = answer.error();
    e.message = endpoint + ": " + e.message;
    return e;
  }
  auto [status, text] = *answer;
  boost::system::error_code jec;
  json::value v = json::parse(text, jec);
  // Errors come back as {"error": "...", "code": N, "message": "..."}.
  std::string msg;
  if (!jec && v.is_object()) {
    auto& o = v.as_object();
    msg = str(o, "message");
    if (msg.empty()) msg = str(o, "error");
  }
  if (status != 200 || jec || !v.is_object() || !msg.empty()) {
    if (msg.empty() && jec) {
      // Not JSON: the gateway's own refusals are plain text (e.g. etcd 3.4 refuses a client
      // certificate with a CommonName under --client-cert-auth), so show that text.
      std::string plain = text.substr(0, 300);
      for (char& ch : plain)
        if (static_cast<unsigned char>(ch) < 0x20) ch = ' ';
      while (!plain.empty() && plain.back() == ' ') plain.pop_back();
      msg = "HTTP " + std::to_string(status) + (plain.empty() ? ", no answer text" : ": " + plain);
    }
    if (msg.empty()) msg = "HTTP " + std::to_string(status);
    if (!tok.empty() && auth_retry && msg.find("invalid auth token") != std::string::npos) {
      std::lock_guard lk(mu_);
      token_.clear();
      return call_one(index, path, body, timeout, false);
    }
    Errc code = retry_elsewhere(msg) ? Errc::unavailable : Errc::refused;
    if (msg.find("permission denied") != std::string::npos || msg.find("authentication failed") != std::string::npos)
      code = Errc::permission_denied;
    return make_error(code, endpoint + ": " + msg);
  }
  auto& o = v.as_object();
  // Streaming calls (lease keepalive) wrap their one answer in {"result": ...}.
  if (auto r = o.find("result"); r != o.end() && r->value().is_object()) return r->value().as_object();
  return o;
}

Result<std::string> EtcdClient::token(std::size_t index, Millis timeout) {
  {
    std::lock_guard lk(mu_);
    if (!token_.empty()) return token_;
  }
  json::object body{{"name", o_.username}, {"password", o_.password}};
  auto r = call_one(index, "/v3/auth/authenticate", json::serialize(body), timeout, false);
  if (!r) {
    Error e = r.error();
    e.message = "etcd authentication as '" + o_.username + "': " + e.message;
    return e;
  }
  std::string t = str(*r, "token");
  if (t.empty()) return make_error(Errc::permission_denied, "etcd authentication as '" + o_.username + "' gave no token");
  std::lock_guard lk(mu_);
  token_ = t;
  return t;
}

Result<json::object> EtcdClient::call(const std::string& path, const json::object& body) {
  if (o_.endpoints.empty()) return make_error(Errc::invalid_argument, "no etcd endpoints configured");
  const std::string text = json::serialize(body);
  const auto deadline = std::chrono::steady_clock::now() + o_.timeout;
  std::size_t start;
  {
    std::lock_guard lk(mu_);
    start = current_;
  }
  const std::size_t n = o_.endpoints.size();
  std::string errors;
  for (std::size_t i = 0; i < n; ++i) {
    auto left = std::chrono::duration_cast<Millis>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    // Leave time for the members not tried yet: a dead one should not eat the whole budget.
    Millis slice = i + 1 < n ? std::max<Millis>(left / static_cast<long>(n - i), Millis(100)) : left;
    std::size_t idx = (start + i) % n;
    auto r = call_one(idx, path, text, std::min(slice, left), true);
    if (r) {
      std::lock_guard lk(mu_);
      current_ = idx;
      return r;
    }
    if (r.error().code != Errc::unavailable && r.error().code != Errc::timeout) return r.error();
    errors += (errors.empty() ? "" : "; ") + r.error().message;
  }
  return make_error(Errc::unavailable, "etcd unreachable: " + (errors.empty() ? std::string("no time left") : errors));
}

Result<std::vector<KeyValue>> EtcdClient::range(const std::string& key, bool prefix) {
  json::object body{{"key", base64_encode(key)}};
  if (prefix) body["range_end"] = base64_encode(prefix_end(key));
  auto r = call("/v3/kv/range", body);
  if (!r) return r.error();
  return parse_kvs(*r);
}

Status EtcdClient::put(const std::string& key, const std::string& value, std::int64_t lease) {
  json::object body{{"key", base64_encode(key)}, {"value", base64_encode(value)}};
  if (lease) body["lease"] = std::to_string(lease);
  auto r = call("/v3/kv/put", body);
  if (!r) return r.error();
  return ok_status();
}

Result<TxnResult> EtcdClient::txn(const std::vector<Compare>& cmp, const std::vector<TxnOp>& success,
                                  const std::vector<TxnOp>& failure) {
  static const char* targets[] = {"VALUE", "VERSION", "CREATE", "MOD"};
  static const char* ops[] = {"EQUAL", "NOT_EQUAL", "GREATER", "LESS"};
  json::array c;
  for (auto& x : cmp) {
    json::object o{{"key", base64_encode(x.key)},
                   {"target", targets[static_cast<int>(x.target)]},
                   {"result", ops[static_cast<int>(x.op)]}};
    switch (x.target) {
      case Compare::Target::value: o["value"] = base64_encode(x.value); break;
      case Compare::Target::version: o["version"] = std::to_string(x.number); break;
      case Compare::Target::create: o["create_revision"] = std::to_string(x.number); break;
      case Compare::Target::mod: o["mod_revision"] = std::to_string(x.number); break;
    }
    c.push_back(std::move(o));
  }
  json::array s, f;
  for (auto& op : success) s.push_back(op_json(op));
  for (auto& op : failure) f.push_back(op_json(op));
  auto r = call("/v3/kv/txn", json::object{{"compare", std::move(c)}, {"success", std::move(s)}, {"failure", std::move(f)}});
  if (!r) return r.error();
  TxnResult out;
  if (auto it = r->find("succeeded"); it != r->end() && it->value().is_bool()) out.succeeded = it->value().as_bool();
  if (auto it = r->find("responses"); it != r->end() && it->value().is_array()) {
    for (auto& resp : it->value().as_array()) {
      if (!resp.is_object()) continue;
      auto rr = resp.as_object().find("response_range");
      if (rr == resp.as_object().end() || !rr->value().is_object()) continue;
      auto kvs = parse_kvs(rr->value().as_object());
      if (!kvs) return kvs.error();
      out.ranges.push_back(std::move(*kvs));
    }
  }
  return out;
}

Result<std::int64_t> EtcdClient::lease_grant(std::int64_t ttl_seconds) {
  auto r = call("/v3/lease/grant", json::object{{"TTL", std::to_string(ttl_seconds)}});
  if (!r) return r.error();
  if (auto e = str(*r, "error"); !e.empty()) return make_error(Errc::refused, "etcd lease grant: " + e);
  std::int64_t id = num(*r, "ID");
  if (!id) return make_error(Errc::internal, "etcd granted a lease without an ID");
  return id;
}

Result<std::int64_t> EtcdClient::lease_keepalive(std::int64_t id) {
  auto r = call("/v3/lease/keepalive", json::object{{"ID", std::to_string(id)}});
  if (!r) return r.error();
  return num(*r, "TTL");
}

Result<std::int64_t> EtcdClient::lease_time_to_live(std::int64_t id) {
  auto r = call("/v3/lease/timetolive", json::object{{"ID", std::to_string(id)}});
  if (!r) return r.error();
  return num(*r, "TTL");
}

Status EtcdClient::lease_revoke(std::int64_t id) {
  auto r = call("/v3/lease/revoke", json::object{{"ID", std::to_string(id)}});
  if (!r) return r.error();
  return ok_status();
}

// etcd ids are unsigned 64-bit (the gateway sends them as decimal strings); "" for 0/absent.
namespace {
std::string hex_id(const json::object& o, const char* key) {
  auto it = o.find(key);
  if (it == o.end()) return "";
  std::uint64_t v = 0;
  if (it->value().is_string()) {
    try {
      v = std::stoull(std::string(it->value().as_string()));
    } catch (...) {
      return "";
    }
  } else if (it->value().is_uint64()) {
    v = it->value().as_uint64();
  } else if (it->value().is_int64()) {
    v = static_cast<std::uint64_t>(it->value().as_int64());
  }
  if (v == 0) return "";
  char buf[24];
  std::snprintf(buf, sizeof buf, "%llx", static_cast<unsigned long long>(v));
  return buf;
}
}  // namespace

std::vector<EndpointHealth> EtcdClient::health(Millis per_endpoint) {
  std::vector<EndpointHealth> out;
  for (std::size_t i = 0; i < o_.endpoints.size(); ++i) {
    EndpointHealth h;
    h.endpoint = o_.endpoints[i];
    const auto t0 = std::chrono::steady_clock::now();
    auto r = call_one(i, "/v3/maintenance/status", "{}", per_endpoint, true);
    h.round_trip_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    if (!r) {
      h.error = r.error().message;
    } else {
      h.reachable = true;
      h.version = str(*r, "version");
      if (auto* hd = r->if_contains("header"); hd && hd->is_object()) h.member_id = hex_id(hd->as_object(), "member_id");
      h.leader_id = hex_id(*r, "leader");
      h.has_leader = !h.leader_id.empty();
      h.ok = h.has_leader;
      if (!h.ok) h.error = "member has no leader (no quorum)";
    }
    out.push_back(std::move(h));
  }
  return out;
}

}  // namespace drd::coord
