// The store: section and local: (docs/multi-host.md, docs/configuration.md).
#include <algorithm>

#include "common/config_detail.hpp"
#include "common/config_loader.hpp"

namespace drd::config_detail {

namespace {

// "http://HOST:PORT" or "https://HOST:PORT" (no path, no credentials: those go in
// username/password_file so they never show up where endpoints are printed).
std::optional<std::string> check_endpoint(const std::string& e) {
  std::string rest;
  if (e.rfind("http://", 0) == 0) rest = e.substr(7);
  else if (e.rfind("https://", 0) == 0) rest = e.substr(8);
  else return "expected http://HOST:PORT or https://HOST:PORT, got '" + e.substr(0, 40) + "'";
  if (rest.find('@') != std::string::npos) return "credentials do not belong in an endpoint; use store.username and store.password_file";
  if (!rest.empty() && rest.back() == '/') rest.pop_back();
  if (rest.find('/') != std::string::npos) return "an endpoint has no path, got '" + e + "'";
  if (auto err = check_listen(rest)) return *err;
  return std::nullopt;
}

}  // namespace

void Loader::load_store(const YAML::Node& n, const YAML::Node& local, Config& cfg) {
  const std::string p = "store";
  StoreConfig& s = cfg.store;
  if (auto v = str(local, "local")) cfg.local = *v;
  if (!present(n)) {
    if (!cfg.local.empty() && !cfg.find_node(cfg.local))
      add(where(local), "local: no database named '" + cfg.local + "'");
    return;
  }
  const Where w = where(n);
  s.line = w.line;
  s.column = w.column;
  if (!section(n, p, {"type", "endpoints", "prefix", "ttl", "tls", "username", "password_file", "peer_listen",
                      "peer_token_file", "failsafe"}))
    return;
  if (auto t = one_of(child(n, "type"), p + ".type", {"local", "etcd"})) s.type = *t;
  const YAML::Node eps = child(n, "endpoints");
  if (auto list = str_list(eps, p + ".endpoints")) {
    std::size_t i = 0;
    for (const auto& e : *list) {
      const Where ew = eps.IsSequence() ? where(eps[i]) : where(eps);
      ++i;
      if (auto err = check_endpoint(e)) add(ew, p + ".endpoints: " + *err);
      else s.endpoints.push_back(e.back() == '/' ? e.substr(0, e.size() - 1) : e);
    }
  }
  const YAML::Node pre = child(n, "prefix");
  if (auto v = str(pre, p + ".prefix")) {
    if (v->empty() || v->front() != '/') add(where(pre), p + ".prefix: must start with '/', got '" + *v + "'");
    else s.prefix = v->size() > 1 && v->back() == '/' ? v->substr(0, v->size() - 1) : *v;
  }
  // etcd's leases are whole seconds; below 2 s a GC pause or a slow disk costs the lease.
  if (auto d = duration(child(n, "ttl"), p + ".ttl", Millis(2000), "must be at least 2s")) {
    if (d->count() % 1000 != 0) add(where(child(n, "ttl")), p + ".ttl: etcd leases are whole seconds, got " + format_duration(*d));
    else s.ttl = *d;
  }
  const YAML::Node tls = child(n, "tls");
  if (section(tls, p + ".tls", {"ca_file", "cert_file", "key_file"})) {
    if (auto v = path(child(tls, "ca_file"), p + ".tls.ca_file")) s.ca_file = *v;
    if (auto v = path(child(tls, "cert_file"), p + ".tls.cert_file")) s.cert_file = *v;
    if (auto v = path(child(tls, "key_file"), p + ".tls.key_file")) s.key_file = *v;
    if (s.cert_file.has_value() != s.key_file.has_value())
      add(where(tls), p + ".tls: cert_file and key_file go together (a client certificate needs its key)");
  }
  if (auto v = str(child(n, "username"), p + ".username")) s.username = *v;
  if (auto v = path(child(n, "password_file"), p + ".password_file")) s.password_file = *v;
  if (s.username.empty() != !s.password_file.has_value())
    add(w, p + ": username and password_file go together");
  const YAML::Node pl = child(n, "peer_listen");
  if (auto v = str(pl, p + ".peer_listen"); v && !v->empty()) {
    if (auto err = check_listen(*v)) add(where(pl), p + ".peer_listen: " + *err);
    else s.peer_listen = *v;
  }
  if (auto v = path(child(n, "peer_token_file"), p + ".peer_token_file")) s.peer_token_file = *v;
  if (auto b = boolean(child(n, "failsafe"), p + ".failsafe")) s.failsafe = *b;

  if (s.type == "etcd") {
    if (s.endpoints.empty() && !present(eps)) add(w, p + ": type etcd needs endpoints: [http://HOST:2379, ...]");
    bool https = std::any_of(s.endpoints.begin(), s.endpoints.end(), [](auto& e) { return e.rfind("https://", 0) == 0; });
    bool http = std::any_of(s.endpoints.begin(), s.endpoints.end(), [](auto& e) { return e.rfind("http://", 0) == 0; });
    if (https && http) add(where(eps), p + ".endpoints: mix of http:// and https://; use one scheme");
    if (!https && (s.ca_file || s.cert_file)) add(where(tls), p + ".tls: set, but the endpoints are http://");
    if (cfg.local.empty())
      add(present(local) ? where(local) : w,
          "local: required with store.type etcd (the database on this drd's host, one of databases:)");
    else if (!cfg.find_node(cfg.local))
      add(where(local), "local: no database named '" + cfg.local + "'");
  } else if (!cfg.local.empty() && !cfg.find_node(cfg.local)) {
    add(where(local), "local: no database named '" + cfg.local + "'");
  }
}

}  // namespace drd::config_detail
