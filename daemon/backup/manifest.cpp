#include "daemon/backup/manifest.hpp"

#include <cstdio>
#include <fstream>
#include <iterator>

#include <boost/json.hpp>
#include <openssl/rand.h>

#include "daemon/backup/container.hpp"
#include "daemon/backup/util.hpp"

namespace drd::backup {

namespace fs = std::filesystem;
namespace json = boost::json;

std::string format_time_utc(SysTime t) {
  auto ms = to_unix_ms(t);
  std::time_t secs = static_cast<std::time_t>(ms / 1000 - (ms % 1000 < 0 ? 1 : 0));
  int frac = static_cast<int>(((ms % 1000) + 1000) % 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
  return buf;
}

Result<SysTime> parse_time_utc(std::string_view s) {
  int y, mo, d, h, mi, sec, n = 0;
  std::string str(s);
  if (std::sscanf(str.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6 || mo < 1 ||
      mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
    return make_error(Errc::invalid_argument, "bad time '" + str + "' (expected 2026-11-24T05:29:20Z, UTC)");
  std::string rest = str.substr(static_cast<std::size_t>(n));
  int ms = 0;
  if (!rest.empty() && rest[0] == '.') {
    std::size_t i = 1;
    int digits = 0;
    while (i < rest.size() && std::isdigit(static_cast<unsigned char>(rest[i]))) {
      if (digits < 3) ms = ms * 10 + (rest[i] - '0'), ++digits;
      ++i;
    }
    while (digits < 3) ms *= 10, ++digits;
    rest = rest.substr(i);
  }
  if (rest != "Z" && rest != "+00:00" && rest != "")
    return make_error(Errc::invalid_argument, "bad time '" + str + "': only UTC (Z) times are accepted");
  using namespace std::chrono;
  auto days = sys_days(year{y} / month{static_cast<unsigned>(mo)} / day{static_cast<unsigned>(d)});
  return SysTime(days) + hours(h) + minutes(mi) + seconds(sec) + milliseconds(ms);
}

std::string new_backup_id(SysTime now, const std::string& node) {
  std::string t = format_time_utc(now);  // 2026-11-24T05:29:20.123Z
  std::string compact;
  for (char c : t.substr(0, 19))
    if (c != '-' && c != ':') compact.push_back(c);
  std::string safe;
  for (char c : node) safe.push_back(std::isalnum(static_cast<unsigned char>(c)) || c == '_' ? c : '_');
  std::uint8_t r[2];
  RAND_bytes(r, 2);
  return compact + "Z-" + (safe.empty() ? "node" : safe) + "-" + to_hex(r, 2);
}

std::string manifest_to_json(const Manifest& m) {
  json::object o;
  o["format_version"] = m.format_version;
  o["id"] = m.id;
  o["name"] = m.name;
  o["node"] = m.node;
  o["engine"] = m.engine;
  o["kind"] = m.kind;
  o["parent"] = m.parent.empty() ? json::value(nullptr) : json::value(m.parent);
  o["created_at"] = format_time_utc(m.created_at);
  o["source_position"] = m.source_position;
  o["source_bytes"] = m.source_bytes;
  o["size_bytes"] = m.size_bytes;
  o["plaintext_sha256"] = m.plaintext_sha256;
  o["file_sha256"] = m.file_sha256;
  o["compression"] = json::object{{"algorithm", m.compression_algorithm}, {"level", m.compression_level}};
  o["encrypted"] = m.encrypted;
  o["key_id"] = m.key_id.empty() ? json::value(nullptr) : json::value(m.key_id);
  o["data_file"] = m.data_file;
  o["content"] = m.content;
  if (m.engine == "postgresql") {
    json::object pg;
    auto opt = [](const std::string& v) { return v.empty() ? json::value(nullptr) : json::value(v); };
    pg["start_lsn"] = opt(m.pg_start_lsn);
    pg["stop_lsn"] = opt(m.pg_stop_lsn);
    pg["timeline"] = m.pg_timeline ? json::value(m.pg_timeline) : json::value(nullptr);
    pg["database"] = opt(m.pg_database);
    if (m.pg_stop_time) pg["stop_time"] = format_time_utc(*m.pg_stop_time);
    o["postgresql"] = std::move(pg);
  }
  return json::serialize(o) + "\n";
}

Result<Manifest> manifest_from_json(std::string_view text, const std::string& origin) {
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  if (ec || !v.is_object()) return make_error(Errc::corrupt, "manifest " + origin + " is not a JSON object");
  const auto& o = v.as_object();
  Manifest m;
  std::string missing;
  auto str = [&](const char* k, std::string& out, bool required = true) {
    auto* p = o.if_contains(k);
    if (p && p->is_string()) out = std::string(p->as_string());
    else if (required && !(p && p->is_null())) missing += std::string(missing.empty() ? "" : ", ") + k;
  };
  auto num = [&](const char* k, std::uint64_t& out) {
    auto* p = o.if_contains(k);
    if (p && p->is_int64() && p->as_int64() >= 0) out = static_cast<std::uint64_t>(p->as_int64());
    else if (p && p->is_uint64()) out = p->as_uint64();
    else missing += std::string(missing.empty() ? "" : ", ") + k;
  };
  std::uint64_t ver = 0;
  num("format_version", ver);
  m.format_version = static_cast<int>(ver);
  str("id", m.id);
  str("name", m.name, false);
  str("node", m.node);
  str("engine", m.engine);
  str("kind", m.kind);
  str("parent", m.parent, false);
  std::string created;
  str("created_at", created);
  str("source_position", m.source_position, false);
  num("source_bytes", m.source_bytes);
  num("size_bytes", m.size_bytes);
  str("plaintext_sha256", m.plaintext_sha256);
  str("file_sha256", m.file_sha256);
  str("key_id", m.key_id, false);
  str("data_file", m.data_file);
  str("content", m.content, false);
  if (auto* e = o.if_contains("encrypted"); e && e->is_bool()) m.encrypted = e->as_bool();
  else missing += std::string(missing.empty() ? "" : ", ") + "encrypted";
  if (auto* c = o.if_contains("compression"); c && c->is_object()) {
    if (auto* a = c->as_object().if_contains("algorithm"); a && a->is_string()) m.compression_algorithm = std::string(a->as_string());
    if (auto* l = c->as_object().if_contains("level"); l && l->is_int64()) m.compression_level = static_cast<int>(l->as_int64());
  }
  if (auto* pg = o.if_contains("postgresql"); pg && pg->is_object()) {
    const auto& po = pg->as_object();
    auto s = [&](const char* k, std::string& out) {
      if (auto* v = po.if_contains(k); v && v->is_string()) out = std::string(v->as_string());
    };
    s("start_lsn", m.pg_start_lsn);
    s("stop_lsn", m.pg_stop_lsn);
    s("database", m.pg_database);
    if (auto* st = po.if_contains("stop_time"); st && st->is_string())
      if (auto t = parse_time_utc(std::string(st->as_string()))) m.pg_stop_time = t.value();
    if (auto* t = po.if_contains("timeline"); t && t->is_int64() && t->as_int64() > 0)
      m.pg_timeline = static_cast<std::uint32_t>(t->as_int64());
  }
  if (!missing.empty()) return make_error(Errc::corrupt, "manifest " + origin + " lacks or mistypes: " + missing);
  if (m.format_version != kManifestVersion)
    return make_error(Errc::unsupported, "manifest " + origin + " has format version " + std::to_string(m.format_version) +
                                             "; this drd reads version " + std::to_string(kManifestVersion));
  auto t = parse_time_utc(created);
  if (!t) return make_error(Errc::corrupt, "manifest " + origin + ": " + t.error().message);
  m.created_at = t.value();
  if (m.data_file.find('/') != std::string::npos || m.data_file.empty() || m.data_file == "..")
    return make_error(Errc::corrupt, "manifest " + origin + ": data_file must be a plain file name");
  return m;
}

fs::path manifest_path(const fs::path& dir, const std::string& id) { return dir / (id + ".manifest.json"); }

Status write_manifest(const fs::path& dir, const Manifest& m) {
  fs::path final = manifest_path(dir, m.id), partial = final;
  partial += ".partial";
  std::string text = manifest_to_json(m);
  auto f = open_output_file(partial);
  if (!f) return f.error();
  auto fail = [&](const Error& e) -> Status {
    (void)f.value()->close();
    std::error_code ec;
    fs::remove(partial, ec);
    return e;
  };
  if (auto s = f.value()->write(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()); !s) return fail(s.error());
  if (auto s = f.value()->sync(); !s) return fail(s.error());
  if (auto s = f.value()->close(); !s) return fail(s.error());
  std::error_code ec;
  fs::rename(partial, final, ec);
  if (ec) return fail(make_error(Errc::io, "cannot rename " + partial.string() + ": " + ec.message()));
  (void)fsync_path(dir);
  return ok_status();
}

Result<Manifest> read_manifest(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return errno_error(errno == ENOENT ? Errc::not_found : Errc::io, "cannot read manifest", file, errno);
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return manifest_from_json(text, file.string());
}

}  // namespace drd::backup
