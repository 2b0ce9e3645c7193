// load_config(): file reading, YAML parsing, the top-level walk and the value readers.
// The sections live in config_databases.cpp and config_sections.cpp; URL and string helpers
// in config_values.cpp.
#include "common/config.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include "common/config_detail.hpp"
#include "common/config_paths.hpp"
#include "common/config_loader.hpp"

namespace drd {

namespace fs = std::filesystem;
using config_detail::Loader;
using config_detail::Where;

const char* engine_name(Engine e) {
  switch (e) {
    case Engine::sqlite: return "sqlite";
    case Engine::postgresql: return "postgresql";
  }
  return "unknown";
}

const NodeConfig* Config::find_node(std::string_view name) const {
  for (const auto& n : nodes)
    if (n.name == name) return &n;
  for (const auto& n : nodes)
    if (n.key == name) return &n;
  return nullptr;
}

const NodeConfig* Config::configured_primary() const {
  for (const auto& n : nodes)
    if (n.type == NodeType::primary) return &n;
  // None typed primary (the seed's url-only examples): the lowest priority number, then
  // declaration order, starts as primary.
  const NodeConfig* best = nullptr;
  for (const auto& n : nodes)
    if (!best || n.priority < best->priority) best = &n;
  return best;
}

std::string ConfigProblem::to_string() const {
  if (line <= 0) return file + ": " + message;
  return file + ":" + std::to_string(line) + ":" + std::to_string(column) + ": " + message;
}

namespace config_detail {

Where where(const YAML::Node& n) {
  if (!n.IsDefined()) return {};
  auto m = n.Mark();
  if (m.line < 0) return {};
  return {m.line + 1, m.column + 1};
}

YAML::Node child(const YAML::Node& m, const std::string& key) {
  if (m.IsMap()) {
    for (auto it = m.begin(); it != m.end(); ++it) {
      if (it->first.IsScalar() && it->first.Scalar() == key) return it->second;
    }
  }
  return YAML::Node(YAML::NodeType::Undefined);
}

bool present(const YAML::Node& n) { return n.IsDefined() && !n.IsNull(); }

std::string describe(const YAML::Node& n) {
  if (n.IsSequence()) return "a list";
  if (n.IsMap()) return "a mapping";
  if (!present(n)) return "nothing";
  // Redact before truncating: a cut URL may no longer show where its password ends.
  std::string s = redact_url(n.Scalar());
  if (s.size() > 60) s = s.substr(0, 57) + "...";
  return "'" + s + "'";
}

std::string join(const std::string& path, const std::string& key) {
  return path.empty() ? key : path + "." + key;
}

fs::path normal(const fs::path& p) {
  fs::path n = p.lexically_normal();
  std::string s = n.string();
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  return s;
}

Loader::Loader(std::string file_name, fs::path base_dir)
    : file_(std::move(file_name)), base_(std::move(base_dir)) {}

// Defence in depth: whatever a message quotes, a URL or password= in it is redacted.
// Tokens end at whitespace or quotes, so a message's own words are never touched.
static std::string scrub_secrets(const std::string& message) {
  std::string out;
  std::size_t i = 0;
  while (i < message.size()) {
    std::size_t end = message.find_first_of(" \t\n'\"", i);
    if (end == i) {
      out.push_back(message[i++]);
      continue;
    }
    std::string token = message.substr(i, end == std::string::npos ? std::string::npos : end - i);
    std::string lowered = token;
    for (auto& c : lowered) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (token.find("://") != std::string::npos || lowered.find("password=") != std::string::npos)
      token = redact_url(token);
    out += token;
    i = end == std::string::npos ? message.size() : end;
  }
  return out;
}

void Loader::add(Where w, std::string message) {
  problems_.push_back(ConfigProblem{file_, w.line, w.column, scrub_secrets(message)});
}

fs::path Loader::resolve(const fs::path& p) const { return resolve_config_path(base_, p); }

bool Loader::section(const YAML::Node& n, const std::string& path, const std::vector<std::string>& known) {
  if (!n.IsDefined() || n.IsNull()) return true;
  const std::string shown = path.empty() ? "disaster_recovery" : path;
  if (!n.IsMap()) {
    add(where(n), shown + ": expected a mapping of keys, got " + describe(n));
    return false;
  }
  std::vector<std::pair<std::string, Where>> seen;
  for (auto it = n.begin(); it != n.end(); ++it) {
    const YAML::Node k = it->first;
    if (!k.IsScalar()) {
      add(where(k), shown + ": keys must be plain names, got " + describe(k));
      continue;
    }
    const std::string key = k.Scalar();
    auto dup = std::find_if(seen.begin(), seen.end(), [&](const auto& s) { return s.first == key; });
    if (dup != seen.end()) {
      add(where(k), "duplicate key '" + key + "' in " + shown + " (first at line " +
                        std::to_string(dup->second.line) + ")");
      continue;
    }
    seen.emplace_back(key, where(k));
    if (known.empty() || std::find(known.begin(), known.end(), key) != known.end()) continue;
    std::string msg = "unknown key '" + key + "' in " + shown;
    if (auto near = nearest_key(key, known)) {
      msg += " (did you mean '" + *near + "'?)";
    } else if (key == "password" || key == "pass" || key == "passwd") {
      msg += " (put the password in the URL, in password_file:, or in PGPASSFILE)";
    } else {
      std::string list;
      for (const auto& c : known) list += (list.empty() ? "" : ", ") + c;
      msg += " (known keys: " + list + ")";
    }
    add(where(k), msg);
  }
  return true;
}

std::optional<std::string> Loader::str(const YAML::Node& v, const std::string& path) {
  if (!present(v)) return std::nullopt;
  if (!v.IsScalar()) {
    add(where(v), path + ": expected a string, got " + describe(v));
    return std::nullopt;
  }
  return v.Scalar();
}

std::optional<bool> Loader::boolean(const YAML::Node& v, const std::string& path) {
  auto s = str(v, path);
  if (!s) return std::nullopt;
  std::string l = *s;
  for (auto& c : l) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (l == "true" || l == "yes" || l == "on") return true;
  if (l == "false" || l == "no" || l == "off") return false;
  add(where(v), path + ": expected true or false, got " + describe(v));
  return std::nullopt;
}

std::optional<long long> Loader::integer(const YAML::Node& v, const std::string& path, long long lo,
                                         long long hi) {
  auto s = str(v, path);
  if (!s) return std::nullopt;
  long long x = 0;
  auto [p, ec] = std::from_chars(s->data(), s->data() + s->size(), x);
  if (ec != std::errc() || p != s->data() + s->size() || x < lo || x > hi) {
    add(where(v), path + ": must be an integer " + std::to_string(lo) + ".." + std::to_string(hi) +
                      ", got " + describe(v));
    return std::nullopt;
  }
  return x;
}

std::optional<double> Loader::number(const YAML::Node& v, const std::string& path) {
  auto s = str(v, path);
  if (!s) return std::nullopt;
  const char* b = s->c_str();
  char* e = nullptr;
  errno = 0;
  double x = std::strtod(b, &e);
  if (s->empty() || e != b + s->size() || errno == ERANGE || x != x) {
    add(where(v), path + ": expected a number, got " + describe(v));
    return std::nullopt;
  }
  return x;
}

std::optional<Millis> Loader::duration(const YAML::Node& v, const std::string& path, Millis min,
                                       const char* min_text) {
  auto s = str(v, path);
  if (!s) return std::nullopt;
  auto d = parse_duration(*s);
  if (!d) {
    add(where(v), path + ": expected a duration like 1s or 200ms, got " + describe(v));
    return std::nullopt;
  }
  if (*d < min) {
    add(where(v), path + ": " + (min_text ? std::string(min_text) : "must be at least " + format_duration(min)) +
                      ", got " + describe(v));
    return std::nullopt;
  }
  return d;
}

std::optional<std::uint64_t> Loader::size(const YAML::Node& v, const std::string& path) {
  auto s = str(v, path);
  if (!s) return std::nullopt;
  auto n = parse_size(*s);
  if (!n) add(where(v), path + ": expected a size like 16MB or 512KiB, got " + describe(v));
  return n;
}

std::optional<fs::path> Loader::path(const YAML::Node& v, const std::string& key_path) {
  auto s = str(v, key_path);
  if (!s) return std::nullopt;
  if (s->empty()) {
    add(where(v), key_path + ": expected a path, got an empty string");
    return std::nullopt;
  }
  if (auto why = tilde_problem(*s)) {
    add(where(v), key_path + ": " + *why);
    return std::nullopt;
  }
  return resolve(*s);
}

std::optional<std::vector<std::string>> Loader::str_list(const YAML::Node& v, const std::string& path) {
  if (!present(v)) return std::nullopt;
  std::vector<std::string> out;
  if (v.IsScalar()) {
    out.push_back(v.Scalar());
    return out;
  }
  if (!v.IsSequence()) {
    add(where(v), path + ": expected a list of names, got " + describe(v));
    return std::nullopt;
  }
  bool ok = true;
  for (const auto& item : v) {
    if (!item.IsScalar()) {
      add(where(item), path + ": expected a name, got " + describe(item));
      ok = false;
    } else {
      out.push_back(item.Scalar());
    }
  }
  if (!ok) return std::nullopt;
  return out;
}

std::optional<std::string> Loader::one_of(const YAML::Node& v, const std::string& path,
                                          const std::vector<std::string>& allowed) {
  auto s = str(v, path);
  if (!s) return std::nullopt;
  if (std::find(allowed.begin(), allowed.end(), *s) != allowed.end()) return s;
  std::string list;
  for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
  std::string msg = path + ": must be one of " + list + ", got " + describe(v);
  if (auto near = nearest_key(*s, allowed)) msg += " (did you mean '" + *near + "'?)";
  add(where(v), msg);
  return std::nullopt;
}

void Loader::load(const YAML::Node& doc, Config& cfg) {
  if (!present(doc)) {
    add({}, "the file is empty: expected a 'disaster_recovery:' section");
    return;
  }
  if (!doc.IsMap()) {
    add(where(doc), "expected a mapping with a 'disaster_recovery:' section, got " + describe(doc));
    return;
  }
  // Other top-level sections belong to the application sharing this file (the seed keeps
  // disaster_recovery: inside the crawler's config.yaml), so they are left alone.
  YAML::Node dr = child(doc, "disaster_recovery");
  if (!dr.IsDefined()) {
    for (auto it = doc.begin(); it != doc.end(); ++it) {
      if (!it->first.IsScalar()) continue;
      if (auto near = nearest_key(it->first.Scalar(), {"disaster_recovery"})) {
        add(where(it->first), "unknown section '" + it->first.Scalar() + "' (did you mean '" + *near + "'?)");
        return;
      }
    }
    add({}, "no 'disaster_recovery:' section found");
    return;
  }
  Where dr_key;
  for (auto it = doc.begin(); it != doc.end(); ++it)
    if (it->first.IsScalar() && it->first.Scalar() == "disaster_recovery") dr_key = where(it->first);

  static const std::vector<std::string> keys = {"enabled",    "base_dir",   "state_dir", "control",
                                                "current_link", "databases", "monitoring", "failover",
                                                "backup",     "alerts",     "http",      "store",   "local"};
  if (!section(dr, "", keys)) return;

  // base_dir first: every other relative path (defaults included) resolves against it.
  // base_ is the config file's folder until then, so a relative base_dir is relative to it.
  if (auto p = path(child(dr, "base_dir"), "base_dir")) base_ = *p;
  cfg.base_dir = base_;

  if (auto b = boolean(child(dr, "enabled"), "enabled")) cfg.enabled = *b;
  cfg.state_dir = resolve("var/drd");
  if (auto p = path(child(dr, "state_dir"), "state_dir")) cfg.state_dir = *p;

  YAML::Node control = child(dr, "control");
  cfg.control.socket = normal(cfg.state_dir / "drd.sock");
  if (section(control, "control", {"socket", "admin_group", "socket_group"})) {
    if (auto p = path(child(control, "socket"), "control.socket")) cfg.control.socket = *p;
    if (auto s = str(child(control, "admin_group"), "control.admin_group")) cfg.control.admin_group = *s;
    if (auto s = str(child(control, "socket_group"), "control.socket_group")) cfg.control.socket_group = *s;
  }
  YAML::Node link = child(dr, "current_link");
  if (auto p = path(link, "current_link")) cfg.current_link = *p;

  load_databases(child(dr, "databases"), cfg, dr_key);
  if (cfg.current_link) {
    for (const auto& n : cfg.nodes) {
      if (n.engine == Engine::postgresql) {
        add(where(link), "current_link: only SQLite clusters have a current link (the databases are PostgreSQL)");
        break;
      }
      if (n.sqlite_path == *cfg.current_link) {
        add(where(link), "current_link: is the database file of '" + n.name +
                             "' (line " + std::to_string(n.line) + "); it must be a separate symlink path");
      }
    }
  }
  load_monitoring(child(dr, "monitoring"), cfg.monitoring);
  load_failover(child(dr, "failover"), cfg.failover);
  cfg.backup.directory = normal(cfg.state_dir.parent_path() / "backups");
  load_backup(child(dr, "backup"), cfg.backup);
  load_alerts(child(dr, "alerts"), cfg);
  load_http(child(dr, "http"), cfg.http);
  load_store(child(dr, "store"), child(dr, "local"), cfg);
}

}  // namespace config_detail

namespace {

ConfigLoadResult finish(Loader& loader, std::optional<Config> cfg) {
  ConfigLoadResult r;
  r.problems = std::move(loader.problems());
  std::stable_sort(r.problems.begin(), r.problems.end(), [](const ConfigProblem& a, const ConfigProblem& b) {
    return std::pair(a.line, a.column) < std::pair(b.line, b.column);
  });
  if (r.problems.empty()) r.config = std::move(cfg);
  return r;
}

}  // namespace

ConfigLoadResult load_config_text(const std::string& text, const std::string& name, const fs::path& base_dir) {
  std::error_code ec;
  fs::path abs_base = fs::absolute(base_dir, ec);
  if (ec) abs_base = base_dir;
  const fs::path base = config_detail::normal(abs_base);
  Loader loader(name, base);
  Config cfg;
  cfg.file = config_detail::normal(fs::path(name).is_absolute() ? fs::path(name) : base / name);
  YAML::Node doc;
  try {
    doc = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    Where w;
    if (e.mark.line >= 0) w = Where{e.mark.line + 1, e.mark.column + 1};
    loader.add(w, "YAML syntax error: " + e.msg);
    return finish(loader, std::nullopt);
  }
  loader.load(doc, cfg);
  return finish(loader, std::move(cfg));
}

ConfigLoadResult load_config(const fs::path& file) {
  std::error_code ec;
  const std::string name = file.string();
  if (fs::is_directory(file, ec)) {
    return ConfigLoadResult{std::nullopt, {ConfigProblem{name, 0, 0, "cannot read " + name + ": Is a directory"}}};
  }
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    int err = errno;
    return ConfigLoadResult{std::nullopt,
                            {ConfigProblem{name, 0, 0, "cannot read " + name + ": " + std::strerror(err)}}};
  }
  std::stringstream ss;
  ss << in.rdbuf();
  if (in.bad()) {
    return ConfigLoadResult{std::nullopt, {ConfigProblem{name, 0, 0, "cannot read " + name + ": I/O error"}}};
  }
  const fs::path abs = config_detail::normal(fs::absolute(file, ec));
  ConfigLoadResult r = load_config_text(ss.str(), name, abs.parent_path());
  if (r.config) r.config->file = abs;
  return r;
}

}  // namespace drd
