// Value-level helpers of the config loader: database URLs, redaction, typo suggestions,
// schedules and listen addresses. Pure string work; see common/config_detail.hpp.
#include <algorithm>
#include <cctype>
#include <charconv>
#include <sstream>

#include "common/config.hpp"
#include "common/config_detail.hpp"

namespace drd {

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// Where the userinfo of "scheme://userinfo@host..." ends, or npos. The '@' searched for is
// the last one before the query: a password may hold '/' or '@' unencoded, a query rarely
// holds '@'. If the only '@' is past a '?', that one is used: redacting too much is safe,
// too little is not.
std::size_t userinfo_end(const std::string& url, std::size_t authority_begin) {
  std::size_t q = url.find('?', authority_begin);
  std::size_t at = url.rfind('@', q == std::string::npos ? std::string::npos : q);
  if (at != std::string::npos && at >= authority_begin) return at;
  at = url.rfind('@');
  if (at != std::string::npos && at >= authority_begin) return at;
  return std::string::npos;
}

std::string percent_decode(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out.push_back(static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16)));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

bool parse_port(std::string_view s, int& port) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), port);
  return ec == std::errc() && p == s.data() + s.size() && port >= 1 && port <= 65535;
}

// Splits "host:port" / "[v6]:port" / "host". Returns false on a malformed port.
bool split_host_port(std::string_view hp, std::string& host, std::string& port) {
  port.clear();
  if (!hp.empty() && hp.front() == '[') {
    auto close = hp.find(']');
    if (close == std::string_view::npos) return false;
    host = std::string(hp.substr(1, close - 1));
    auto rest = hp.substr(close + 1);
    if (rest.empty()) return true;
    if (rest.front() != ':') return false;
    port = std::string(rest.substr(1));
    return true;
  }
  auto colon = hp.rfind(':');
  if (colon == std::string_view::npos) {
    host = std::string(hp);
    return true;
  }
  host = std::string(hp.substr(0, colon));
  port = std::string(hp.substr(colon + 1));
  return true;
}

}  // namespace

std::string redact_url(const std::string& url) {
  std::string out = url;
  // 1. scheme://user:password@host — also when the "scheme:" part is mangled or missing
  // ("postgresql//u:pw@h", "u:pw@h"): a message may quote such a string back.
  {
    std::size_t begin = 0;
    if (auto sep = out.find("://"); sep != std::string::npos) begin = sep + 3;
    else if (auto sl = out.find("//"); sl != std::string::npos) begin = sl + 2;
    std::size_t at = userinfo_end(out, begin);
    if (at != std::string::npos) {
      std::size_t colon = out.find(':', begin);
      if (colon != std::string::npos && colon < at) out.replace(colon + 1, at - colon - 1, "***");
    }
  }
  // 2. password=... in a query string ("?password=x&...") or a conninfo ("password='x y' ...").
  for (std::size_t pos = 0; (pos = lower(out).find("password=", pos)) != std::string::npos;) {
    std::size_t v = pos + 9;
    std::size_t end;
    if (v < out.size() && out[v] == '\'') {
      end = v + 1;
      while (end < out.size() && out[end] != '\'') end += (out[end] == '\\') ? 2 : 1;
      end = std::min(out.size(), end + 1);
    } else {
      end = v;
      while (end < out.size() && out[end] != '&' && out[end] != '#' &&
             !std::isspace(static_cast<unsigned char>(out[end])))
        ++end;
    }
    out.replace(v, end - v, "***");
    pos = v + 3;
  }
  return out;
}

std::optional<std::string> nearest_key(const std::string& key, const std::vector<std::string>& known) {
  std::optional<std::string> best;
  std::size_t best_d = 0;
  const std::size_t limit = std::max<std::size_t>(2, key.size() / 3);
  for (const auto& k : known) {
    std::size_t d = config_detail::edit_distance(key, k);
    // A candidate that shares nothing with the key ("ab" vs "to") is no suggestion.
    if (d > limit || d >= std::max(key.size(), k.size())) continue;
    if (!best || d < best_d) {
      best = k;
      best_d = d;
    }
  }
  return best;
}

namespace config_detail {

std::size_t edit_distance(const std::string& a0, const std::string& b0) {
  const std::string a = lower(a0), b = lower(b0);
  std::vector<std::size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      std::size_t sub = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::variant<ParsedUrl, std::string> parse_database_url(const std::string& url) {
  const std::string shown = "'" + redact_url(url) + "'";
  auto sep = url.find("://");
  if (sep == std::string::npos || sep == 0) {
    return "not a database URL: " + shown +
           " (expected sqlite:///FILE or postgresql://USER@HOST:PORT/DB)";
  }
  const std::string scheme = lower(url.substr(0, sep));
  const std::string base_scheme = scheme.substr(0, scheme.find('+'));  // SQLAlchemy "+driver"
  const std::string rest = url.substr(sep + 3);
  ParsedUrl out;

  if (base_scheme == "sqlite") {
    out.engine = Engine::sqlite;
    if (rest.empty()) return "SQLite URL " + shown + " names no file (write sqlite:///relative.db)";
    if (rest.front() != '/') {
      return "SQLite URLs have no host part: write sqlite:///relative.db or "
             "sqlite:////absolute/path.db, got " + shown;
    }
    std::string file = rest.substr(1);
    file = file.substr(0, file.find('?'));  // SQLAlchemy sqlite query options do not apply
    if (file.empty()) return "SQLite URL " + shown + " names no file (write sqlite:///relative.db)";
    if (file == ":memory:") return "an in-memory SQLite database cannot be replicated: " + shown;
    out.sqlite_file = file;
    return out;
  }

  if (base_scheme == "postgresql" || base_scheme == "postgres") {
    out.engine = Engine::postgresql;
    out.pg_conninfo = base_scheme + "://" + rest;
    // [userinfo@]hostspec[/dbname][?params]
    std::string user;
    std::size_t at = userinfo_end(url, sep + 3);
    std::size_t host_begin = 0;
    if (at != std::string::npos) {
      std::size_t ui_end = at - (sep + 3);
      std::string userinfo = rest.substr(0, ui_end);
      user = percent_decode(userinfo.substr(0, userinfo.find(':')));
      host_begin = ui_end + 1;
    }
    std::size_t host_end = rest.find_first_of("/?", host_begin);
    std::string hostspec = rest.substr(host_begin, host_end == std::string::npos ? std::string::npos
                                                                                  : host_end - host_begin);
    std::string dbname, query;
    if (host_end != std::string::npos && rest[host_end] == '/') {
      std::size_t q = rest.find('?', host_end);
      dbname = percent_decode(rest.substr(host_end + 1, q == std::string::npos ? std::string::npos
                                                                                : q - host_end - 1));
      if (q != std::string::npos) query = rest.substr(q + 1);
    } else if (host_end != std::string::npos) {
      query = rest.substr(host_end + 1);
    }
    // Query parameters may name the server instead of the authority part.
    std::string q_host, q_port;
    std::stringstream qs(query);
    for (std::string kv; std::getline(qs, kv, '&');) {
      auto eq = kv.find('=');
      if (eq == std::string::npos) continue;
      std::string k = lower(kv.substr(0, eq)), v = percent_decode(kv.substr(eq + 1));
      if (k == "host") q_host = v;
      else if (k == "port") q_port = v;
      else if (k == "dbname") dbname = v;
      else if (k == "user" && user.empty()) user = v;
    }
    std::string identity_hosts;
    std::stringstream hs(hostspec);
    for (std::string one; std::getline(hs, one, ',');) {
      std::string host, port;
      if (!split_host_port(one, host, port)) return "malformed host in PostgreSQL URL " + shown;
      if (host.empty()) host = q_host.empty() ? "localhost" : q_host;
      if (port.empty()) port = q_port.empty() ? "5432" : q_port;
      int p = 0;
      if (!parse_port(port, p)) {
        return "bad port '" + port + "' in PostgreSQL URL " + shown + " (expected 1..65535)";
      }
      if (!identity_hosts.empty()) identity_hosts += ",";
      identity_hosts += lower(host) + ":" + std::to_string(p);
    }
    if (identity_hosts.empty()) {
      int p = 0;
      std::string port = q_port.empty() ? "5432" : q_port;
      if (!parse_port(port, p)) {
        return "bad port '" + port + "' in PostgreSQL URL " + shown + " (expected 1..65535)";
      }
      identity_hosts = (q_host.empty() ? std::string("localhost") : lower(q_host)) + ":" + std::to_string(p);
    }
    if (dbname.empty()) dbname = user;  // libpq's default database is the user's name
    out.pg_identity = identity_hosts + "/" + dbname;
    return out;
  }

  std::string msg = "unknown URL scheme '" + scheme + "' in " + shown +
                    ": drd speaks sqlite:///FILE and postgresql://USER@HOST:PORT/DB";
  if (auto near = nearest_key(base_scheme, {"sqlite", "postgresql", "postgres"})) {
    msg += " (did you mean '" + *near + "'?)";
  }
  return msg;
}

std::optional<std::string> check_schedule(const std::string& expr) {
  const std::string hint = "expected 'every DURATION' (like 'every 6h') or a 5-field cron expression "
                           "(like '0 3 * * *'), got '" + expr + "'";
  std::vector<std::string> fields;
  std::stringstream ss(expr);
  for (std::string f; ss >> f;) fields.push_back(f);
  if (fields.empty()) return hint;
  if (lower(fields[0]) == "every") {
    std::string rest;
    for (std::size_t i = 1; i < fields.size(); ++i) rest += fields[i];
    auto d = parse_duration(rest);
    if (!d) return hint;
    // Backups are planned on whole minutes (like cron); a shorter interval would be refused at run time.
    if (*d < std::chrono::minutes(1)) return "a schedule must be at least 'every 1m', got '" + expr + "'";
    return std::nullopt;
  }
  if (fields.size() != 5) return hint;
  for (const auto& f : fields) {
    for (char c : f) {
      bool ok = std::isdigit(static_cast<unsigned char>(c)) || std::isalpha(static_cast<unsigned char>(c)) ||
                c == '*' || c == ',' || c == '-' || c == '/';
      if (!ok) return hint;
    }
  }
  return std::nullopt;
}

std::optional<std::string> check_listen(const std::string& listen) {
  const std::string hint = "expected HOST:PORT like 127.0.0.1:8008 or [::1]:8008, got '" + listen + "'";
  std::string host, port;
  if (!split_host_port(listen, host, port) || host.empty() || port.empty()) return hint;
  int p = 0;
  if (!parse_port(port, p)) return "bad port '" + port + "' in '" + listen + "' (expected 1..65535)";
  return std::nullopt;
}

}  // namespace config_detail
}  // namespace drd
