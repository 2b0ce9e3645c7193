#include "daemon/engines/postgres/postgres_util.hpp"

#include <libpq-fe.h>

#include <cstdio>

namespace drd::pg {

std::optional<std::uint64_t> parse_lsn(const std::string& text) {
  auto slash = text.find('/');
  if (slash == std::string::npos || slash == 0 || slash + 1 >= text.size()) return std::nullopt;
  auto hex = [](const std::string& s, std::uint64_t& out) {
    if (s.empty() || s.size() > 8) return false;
    out = 0;
    for (char c : s) {
      int d;
      if (c >= '0' && c <= '9') d = c - '0';
      else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
      else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
      else return false;
      out = out * 16 + static_cast<std::uint64_t>(d);
    }
    return true;
  };
  std::uint64_t hi, lo;
  if (!hex(text.substr(0, slash), hi) || !hex(text.substr(slash + 1), lo)) return std::nullopt;
  return (hi << 32) | lo;
}

std::string format_lsn(std::uint64_t lsn) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%X/%X", static_cast<unsigned>(lsn >> 32),
                static_cast<unsigned>(lsn & 0xffffffffu));
  return buf;
}

namespace {
std::string scrub_conninfo_error(const std::string& msg, const std::string& conninfo) {
  NodeConfig c;
  c.pg_conninfo = conninfo;
  return scrub(msg, {url_password(c).value_or("")});
}
}  // namespace

Result<ConnParams> parse_conninfo(const std::string& conninfo) {
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(conninfo.c_str(), &err);
  if (!opts) {
    std::string msg = err ? err : "out of memory";
    if (err) PQfreemem(err);
    while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
    return make_error(Errc::invalid_argument,
                      "invalid PostgreSQL connection string " + redact_url(conninfo) + ": " +
                          scrub_conninfo_error(msg, conninfo));
  }
  ConnParams out;
  for (auto* o = opts; o->keyword; ++o)
    if (o->val && *o->val) out.emplace_back(o->keyword, o->val);
  PQconninfoFree(opts);
  return out;
}

std::optional<std::string> param(const ConnParams& p, const std::string& key) {
  for (const auto& [k, v] : p)
    if (k == key) return v;
  return std::nullopt;
}

std::string quote_conninfo_value(const std::string& v) {
  std::string out = "'";
  for (char c : v) {
    if (c == '\'' || c == '\\') out += '\\';
    out += c;
  }
  return out + "'";
}

std::string to_conninfo(const ConnParams& p) {
  std::string out;
  for (const auto& [k, v] : p) {
    if (!out.empty()) out += ' ';
    out += k + "=" + quote_conninfo_value(v);
  }
  return out;
}

std::string sql_literal(const std::string& v) {
  std::string out = "'";
  for (char c : v) {
    if (c == '\'') out += '\'';
    out += c;
  }
  return out + "'";
}

namespace {
Result<ConnParams> stream_params(const NodeConfig& primary, const std::string& app, bool keep_password) {
  auto parsed = parse_conninfo(primary.pg_conninfo);
  if (!parsed) return parsed.error();
  ConnParams out;
  for (auto& [k, v] : parsed.value()) {
    if (k == "dbname" || k == "application_name" || k == "fallback_application_name" ||
        k == "replication" || k == "target_session_attrs")
      continue;
    if (k == "password" && !keep_password) continue;
    out.emplace_back(k, v);
  }
  if (!app.empty()) out.emplace_back("application_name", app);
  return out;
}
}  // namespace

Result<std::string> primary_conninfo_for(const NodeConfig& primary, const std::string& standby_name) {
  auto p = stream_params(primary, standby_name, true);
  if (!p) return p.error();
  return to_conninfo(p.value());
}

Result<std::string> tool_conninfo_for(const NodeConfig& primary, const std::string& application_name) {
  auto p = stream_params(primary, application_name, false);
  if (!p) return p.error();
  // pg_rewind needs a database connection; dbname was dropped above.
  auto parsed = parse_conninfo(primary.pg_conninfo);
  p->emplace_back("dbname", parsed ? param(parsed.value(), "dbname").value_or("postgres") : "postgres");
  return to_conninfo(p.value());
}

std::optional<std::string> url_password(const NodeConfig& node) {
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(node.pg_conninfo.c_str(), &err);
  if (!opts) {
    if (err) PQfreemem(err);
    // Unparseable: fall back to the URL shape user:pass@ so it can still be scrubbed.
    auto scheme = node.pg_conninfo.find("://");
    auto at = node.pg_conninfo.find('@');
    if (scheme == std::string::npos || at == std::string::npos || at < scheme) return std::nullopt;
    auto colon = node.pg_conninfo.find(':', scheme + 3);
    if (colon == std::string::npos || colon > at) return std::nullopt;
    return node.pg_conninfo.substr(colon + 1, at - colon - 1);
  }
  std::optional<std::string> out;
  for (auto* o = opts; o->keyword; ++o)
    if (std::string(o->keyword) == "password" && o->val && *o->val) out = o->val;
  PQconninfoFree(opts);
  return out;
}

std::string set_auto_conf(const std::string& text, const std::string& key,
                          const std::optional<std::string>& value) {
  std::string out;
  std::size_t pos = 0;
  while (pos < text.size()) {
    auto nl = text.find('\n', pos);
    std::string line = text.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
    pos = nl == std::string::npos ? text.size() : nl + 1;
    // "key = ..." or "key=..." (leading spaces allowed), case-insensitive like the server.
    std::size_t i = line.find_first_not_of(" \t");
    bool match = false;
    if (i != std::string::npos && line.size() >= i + key.size()) {
      std::string head = line.substr(i, key.size());
      bool same = true;
      for (std::size_t k = 0; k < key.size(); ++k)
        if (std::tolower(static_cast<unsigned char>(head[k])) != std::tolower(static_cast<unsigned char>(key[k])))
          same = false;
      if (same) {
        std::size_t j = line.find_first_not_of(" \t", i + key.size());
        match = j != std::string::npos && line[j] == '=';
      }
    }
    if (!match) out += line + "\n";
  }
  if (value) out += key + " = " + sql_literal(*value) + "\n";
  return out;
}

std::string scrub(std::string text, const std::vector<std::string>& secrets) {
  for (const auto& s : secrets) {
    if (s.empty()) continue;
    std::size_t pos = 0;
    while ((pos = text.find(s, pos)) != std::string::npos) {
      text.replace(pos, s.size(), "***");
      pos += 3;
    }
  }
  return redact_url(text);
}

std::optional<std::string> config_refusal(const std::string& msg) {
  // libpq 15 / server 15 texts (fe-secure-openssl.c, fe-connect.c, auth.c).
  static const std::pair<const char*, const char*> kinds[] = {
      {"certificate verify failed", "the server's certificate did not verify (sslrootcert / sslmode)"},
      {"does not match host name", "the server's certificate does not name this host (sslmode=verify-full)"},
      {"root certificate file", "the sslrootcert file cannot be read"},
      {"could not read certificate file", "the sslcert file cannot be read"},
      {"could not load private key file", "the sslkey file cannot be read"},
      {"server does not support SSL", "the server does not offer TLS but sslmode requires it"},
      {"alert unknown ca", "the server does not trust drd's client certificate"},
      {"alert bad certificate", "the server refused drd's client certificate"},
      {"alert certificate required", "the server requires a client certificate"},
      {"password authentication failed", "the server refused drd's password"},
      {"no password supplied", "the server asks for a password and drd has none"},
      {"no pg_hba.conf entry", "pg_hba.conf has no line for drd's connection"},
      {"certificate authentication failed", "the server refused drd's client certificate"},
  };
  for (const auto& [needle, why] : kinds)
    if (msg.find(needle) != std::string::npos) return std::string(why);
  if (msg.find("FATAL:  role \"") != std::string::npos && msg.find("does not exist") != std::string::npos)
    return std::string("the server has no such role");
  return std::nullopt;
}

ServerError split_verbose_error(const std::string& verbose) {
  ServerError out;
  std::string text;
  std::size_t start = 0;
  while (start <= verbose.size()) {
    std::size_t nl = verbose.find('\n', start);
    std::string line = verbose.substr(start, nl == std::string::npos ? std::string::npos : nl - start);
    start = nl == std::string::npos ? verbose.size() + 1 : nl + 1;
    if (line.rfind("LOCATION:", 0) == 0) continue;
    // "<SEVERITY>:  XXXXX: message" with a five-character SQLSTATE.
    for (const char* sev : {"FATAL:  ", "ERROR:  ", "PANIC:  ", "WARNING:  "}) {
      std::size_t at = line.find(sev);
      if (at == std::string::npos) continue;
      std::size_t code = at + std::string(sev).size();
      if (code + 7 <= line.size() && line[code + 5] == ':' && line[code + 6] == ' ') {
        bool ok = true;
        for (std::size_t i = code; i < code + 5; ++i)
          ok = ok && ((line[i] >= '0' && line[i] <= '9') || (line[i] >= 'A' && line[i] <= 'Z'));
        if (ok) {
          out.sqlstate = line.substr(code, 5);
          line.erase(code, 7);
        }
      }
      break;
    }
    if (!text.empty()) text += '\n';
    text += line;
  }
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  out.message = text;
  return out;
}

namespace {
ServerState from_code(const std::string& code, const std::string& message) {
  if (code.size() != 5) return ServerState::no_answer;
  if (code.compare(0, 2, "53") == 0) return ServerState::saturated;
  if (code == "57P03")
    return message.find("shutting down") != std::string::npos ? ServerState::shutting_down : ServerState::starting_up;
  if (code.compare(0, 2, "28") == 0 || code == "3D000") return ServerState::refuses_drd;
  return ServerState::no_answer;
}
}  // namespace

ServerState server_state(const ServerEvidence& e) {
  if (e.query_ok) {
    auto a = from_code(e.admission_sqlstate, e.admission_message);
    if (a == ServerState::saturated || a == ServerState::shutting_down || a == ServerState::starting_up) return a;
    return ServerState::answering;
  }
  if (e.refused && e.postmaster == PostmasterState::gone) return ServerState::crashed;
  if (auto s = from_code(e.sqlstate, e.message); s != ServerState::no_answer) return s;
  if (e.config_problem) return ServerState::refuses_drd;
  if (e.refused && e.postmaster == PostmasterState::running)
    return e.pm_status == "stopping" ? ServerState::shutting_down : ServerState::starting_up;
  if (e.refused && e.session_ended_sqlstate == "57P01") return ServerState::shutting_down;
  return ServerState::no_answer;
}

bool rewind_impossible(const std::string& out) {
  return out.find("wal_log_hints") != std::string::npos ||
         out.find("data checksums") != std::string::npos;
}

RewindFailure classify_rewind_failure(const std::string& out) {
  if (rewind_impossible(out)) return RewindFailure::no_hints;
  // pg_rewind reads the target's own WAL backwards from the fork point to the
  // last common checkpoint; when those segments were recycled it stops with one
  // of these (PostgreSQL 15 parsexlog.c), before changing anything.
  if (out.find("could not find previous WAL record") != std::string::npos ||
      out.find("could not read WAL record") != std::string::npos ||
      out.find("could not find WAL record") != std::string::npos ||
      (out.find("could not open file") != std::string::npos && out.find("pg_wal/") != std::string::npos))
    return RewindFailure::wal_missing;
  return RewindFailure::other;
}

ControlData parse_controldata(const std::string& text) {
  ControlData c;
  std::size_t pos = 0;
  while (pos < text.size()) {
    auto nl = text.find('\n', pos);
    std::string line = text.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
    pos = nl == std::string::npos ? text.size() : nl + 1;
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string key = line.substr(0, colon);
    auto b = line.find_first_not_of(" \t", colon + 1);
    std::string value = b == std::string::npos ? std::string() : line.substr(b);
    while (!value.empty() && (value.back() == ' ' || value.back() == '\r')) value.pop_back();
    if (key == "Data page checksum version") {
      if (!value.empty() && value.find_first_not_of("0123456789") == std::string::npos && value.size() < 6)
        c.checksum_version = std::stoi(value);
    } else if (key == "wal_log_hints setting") {
      if (value == "on") c.wal_log_hints = true;
      else if (value == "off") c.wal_log_hints = false;
    } else if (key == "Database cluster state") {
      c.state = value;
    } else if (key == "Database system identifier") {
      if (!value.empty() && value.find_first_not_of("0123456789") == std::string::npos) c.system_identifier = value;
    } else if (key == "Latest checkpoint's TimeLineID") {
      if (!value.empty() && value.size() < 10 && value.find_first_not_of("0123456789") == std::string::npos)
        c.timeline = static_cast<std::uint32_t>(std::stoul(value));
    }
  }
  return c;
}

std::optional<std::string> rewind_blocker(const ControlData& c) {
  if (c.checksum_version && *c.checksum_version == 0 && c.wal_log_hints && !*c.wal_log_hints)
    return "its cluster was created without data checksums and runs with wal_log_hints=off, and "
           "pg_rewind needs one of them to know which pages changed after the fork";
  return std::nullopt;
}

FenceMethod fence_method(bool local, std::optional<bool> sync_names_set) {
  if (!local) return FenceMethod::sql;
  return sync_names_set == std::optional<bool>(false) ? FenceMethod::sql : FenceMethod::stop_immediate;
}

int whole_seconds(long long ms) {
  long long s = (ms + 999) / 1000;
  return s < 1 ? 1 : static_cast<int>(s);
}

}  // namespace drd::pg
