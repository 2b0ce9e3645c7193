// The databases: section — one NodeConfig per entry — and the checks across entries
// (one engine, one primary, unique names, no two nodes on the same database).
#include <algorithm>
#include <map>

#include "common/config_detail.hpp"
#include "common/config_loader.hpp"
#include "common/config_paths.hpp"

namespace drd::config_detail {

namespace {

// Positions kept per node for the cross-entry messages.
struct Marks {
  Where name, type, url;
  bool typed_primary = false;
  bool url_ok = false;
  std::string identity;  // sqlite file or pg host:port/db
};

std::string at_line(int line) { return "line " + std::to_string(line); }

}  // namespace

void Loader::load_databases(const YAML::Node& n, Config& cfg, Where section_key) {
  if (!present(n)) {
    add(n.IsDefined() ? where(n) : section_key,
        "databases: none configured (add at least one entry with a url:, e.g. "
        "primary: { url: \"sqlite:///data/primary.db\" })");
    return;
  }
  if (!n.IsMap()) {
    add(where(n), "databases: expected a mapping of NAME: { url: ... }, got " + describe(n));
    return;
  }
  static const std::vector<std::string> keys = {"name",    "type",     "priority", "url",        "password_file",
                                                "data_dir", "bin_dir", "os_user",  "no_failover"};
  std::vector<Marks> marks;
  std::vector<std::string> seen_keys;
  for (auto it = n.begin(); it != n.end(); ++it) {
    if (!it->first.IsScalar()) {
      add(where(it->first), "databases: keys must be plain names, got " + describe(it->first));
      continue;
    }
    NodeConfig nc;
    nc.key = it->first.Scalar();
    nc.name = nc.key;
    const Where key_at = where(it->first);
    nc.line = key_at.line;
    nc.column = key_at.column;
    if (std::find(seen_keys.begin(), seen_keys.end(), nc.key) != seen_keys.end()) {
      add(key_at, "duplicate key '" + nc.key + "' in databases");
      continue;
    }
    seen_keys.push_back(nc.key);
    const std::string p = "databases." + nc.key;
    const YAML::Node e = it->second;
    Marks m;
    m.name = m.type = m.url = key_at;
    if (!present(e)) {
      add(key_at, p + ": missing url (e.g. url: \"sqlite:///data/" + nc.key + ".db\")");
      continue;
    }
    if (!section(e, p, keys)) continue;

    if (auto s = str(child(e, "name"), p + ".name")) {
      m.name = where(child(e, "name"));
      if (s->empty()) add(m.name, p + ".name: must not be empty");
      else nc.name = *s;
    }
    if (auto t = one_of(child(e, "type"), p + ".type", {"primary", "secondary", "standby"})) {
      m.type = where(child(e, "type"));
      nc.type = *t == "primary" ? NodeType::primary : NodeType::secondary;
      m.typed_primary = nc.type == NodeType::primary;
    }
    if (auto v = integer(child(e, "priority"), p + ".priority", 0, 1000)) nc.priority = static_cast<int>(*v);
    if (auto b = boolean(child(e, "no_failover"), p + ".no_failover")) nc.no_failover = *b;

    YAML::Node url = child(e, "url");
    if (auto u = str(url, p + ".url")) {
      m.url = where(url);
      nc.url = *u;
      nc.safe_url = redact_url(*u);
      auto parsed = parse_database_url(*u);
      if (auto* err = std::get_if<std::string>(&parsed)) {
        add(m.url, p + ".url: " + *err);
      } else {
        auto& pu = std::get<ParsedUrl>(parsed);
        nc.engine = pu.engine;
        m.url_ok = true;
        if (pu.engine == Engine::sqlite) {
          if (auto why = tilde_problem(pu.sqlite_file.string())) add(m.url, p + ".url: " + *why);
          nc.sqlite_path = resolve(pu.sqlite_file);
          nc.safe_url = redact_url(*u);  // a path may look like user:pass@ too: shown the same way everywhere
          m.identity = nc.sqlite_path.string();
        } else {
          nc.pg_conninfo = pu.pg_conninfo;
          m.identity = pu.pg_identity;
        }
      }
    } else if (!url.IsDefined() || url.IsNull()) {
      add(url.IsDefined() ? where(url) : key_at, p + ": missing url (e.g. url: \"sqlite:///data/" + nc.key +
                                                     ".db\" or \"postgresql://USER@HOST:5432/DB\")");
    }

    // Server-side facts only PostgreSQL nodes use; on SQLite they would be silently ignored.
    for (const char* k : {"password_file", "data_dir", "bin_dir", "os_user"}) {
      YAML::Node v = child(e, k);
      if (!present(v)) continue;
      if (m.url_ok && nc.engine == Engine::sqlite) {
        add(where(v), p + "." + k + ": only PostgreSQL databases use " + k);
        continue;
      }
      if (std::string(k) == "os_user") {
        if (auto s = str(v, p + ".os_user")) nc.os_user = *s;
      } else if (auto path_v = path(v, p + "." + k)) {
        if (std::string(k) == "password_file") nc.password_file = *path_v;
        else if (std::string(k) == "data_dir") nc.data_dir = *path_v;
        else nc.bin_dir = *path_v;
      }
    }
    cfg.nodes.push_back(std::move(nc));
    marks.push_back(m);
  }
  if (cfg.nodes.empty() && marks.empty() && n.size() == 0) {
    add(where(n), "databases: none configured");
  }

  // ---- across entries ----
  const NodeConfig* first_ok = nullptr;
  int first_primary = -1;
  for (std::size_t i = 0; i < cfg.nodes.size(); ++i) {
    const NodeConfig& a = cfg.nodes[i];
    const std::string p = "databases." + a.key;
    for (std::size_t j = 0; j < i; ++j) {
      const NodeConfig& b = cfg.nodes[j];
      if (a.name == b.name) {
        add(marks[i].name, p + ": duplicate database name '" + a.name + "' (also used by '" + b.key + "' at " +
                               at_line(b.line) + ")");
      }
      if (marks[i].url_ok && marks[j].url_ok && a.engine == b.engine && marks[i].identity == marks[j].identity) {
        add(marks[i].url, a.engine == Engine::sqlite
                              ? p + ".url: same SQLite file as '" + b.name + "' (" + at_line(b.line) +
                                    "): " + marks[i].identity
                              : p + ".url: same PostgreSQL server and database as '" + b.name + "' (" +
                                    at_line(b.line) + "): " + marks[i].identity);
      }
    }
    if (marks[i].url_ok) {
      if (!first_ok) {
        first_ok = &a;
      } else if (a.engine != first_ok->engine) {
        add(marks[i].url, p + ".url: all databases must use one engine: '" + a.name + "' is " +
                              engine_name(a.engine) + " but '" + first_ok->name + "' (" +
                              at_line(first_ok->line) + ") is " + engine_name(first_ok->engine));
      }
    }
    if (marks[i].typed_primary) {
      if (first_primary < 0) {
        first_primary = static_cast<int>(i);
      } else {
        const NodeConfig& f = cfg.nodes[static_cast<std::size_t>(first_primary)];
        add(marks[i].type, p + ".type: only one database may have type: primary ('" + f.name + "' at " +
                               at_line(f.line) + " already has it; make this one secondary)");
      }
    }
  }
}

}  // namespace drd::config_detail
