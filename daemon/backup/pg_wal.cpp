#include "daemon/backup/pg_wal.hpp"

#include <algorithm>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <map>

#include <boost/json.hpp>

#include "daemon/backup/catalog.hpp"
#include "daemon/backup/stream.hpp"
#include "daemon/backup/util.hpp"

namespace drd::backup {

namespace fs = std::filesystem;
namespace json = boost::json;

bool is_pg_wal(const Manifest& m) { return m.content == kPgWalContent || m.content == kPgHistoryContent; }
std::string pg_wal_id(const std::string& wal_file) { return "pg-wal-" + wal_file; }

std::optional<std::uint64_t> parse_lsn(const std::string& text) {
  auto slash = text.find('/');
  if (slash == std::string::npos || slash == 0 || slash + 1 >= text.size() || slash > 8 || text.size() - slash - 1 > 8)
    return std::nullopt;
  std::uint64_t hi = 0, lo = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (i == slash) continue;
    char c = text[i];
    int v = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (v < 0) return std::nullopt;
    (i < slash ? hi : lo) = ((i < slash ? hi : lo) << 4) | static_cast<std::uint64_t>(v);
  }
  return (hi << 32) | lo;
}

std::string format_lsn(std::uint64_t lsn) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%X/%X", static_cast<unsigned>(lsn >> 32), static_cast<unsigned>(lsn & 0xffffffffu));
  return buf;
}

namespace {
std::optional<std::uint64_t> hex(const std::string& s) {
  if (s.empty() || s.size() > 16) return std::nullopt;
  std::uint64_t v = 0;
  for (char c : s) {
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;  // PostgreSQL writes upper case
    if (d < 0) return std::nullopt;
    v = (v << 4) | static_cast<std::uint64_t>(d);
  }
  return v;
}
}  // namespace

std::optional<WalName> parse_wal_name(const std::string& name, std::uint64_t seg_size) {
  WalName w;
  if (name.size() == 16 && name.substr(8) == ".history") {
    auto tl = hex(name.substr(0, 8));
    if (!tl || *tl == 0) return std::nullopt;
    w.timeline = static_cast<std::uint32_t>(*tl);
    w.history = true;
    return w;
  }
  if (name.size() != 24 || seg_size == 0) return std::nullopt;
  auto tl = hex(name.substr(0, 8)), log = hex(name.substr(8, 8)), seg = hex(name.substr(16, 8));
  const std::uint64_t per_log = 0x100000000ull / seg_size;
  if (!tl || !log || !seg || *tl == 0 || *seg >= per_log) return std::nullopt;
  w.timeline = static_cast<std::uint32_t>(*tl);
  w.segno = *log * per_log + *seg;
  return w;
}

std::string wal_file_name(std::uint32_t timeline, std::uint64_t segno, std::uint64_t seg_size) {
  const std::uint64_t per_log = 0x100000000ull / seg_size;
  char buf[32];
  std::snprintf(buf, sizeof buf, "%08X%08X%08X", timeline, static_cast<unsigned>(segno / per_log),
                static_cast<unsigned>(segno % per_log));
  return buf;
}

std::vector<SysTime> parse_waldump_commits(const std::string& output) {
  std::vector<SysTime> out;
  std::size_t pos = 0;
  while ((pos = output.find("desc: COMMIT", pos)) != std::string::npos) {
    pos += 12;
    if (output.compare(pos, 9, "_PREPARED") == 0) pos += 9;  // "COMMIT_PREPARED 3: 2026-..."
    // The timestamp is the first "YYYY-MM-DD HH:MM:SS" on the rest of the line.
    std::size_t eol = output.find('\n', pos);
    std::string line = output.substr(pos, eol == std::string::npos ? std::string::npos : eol - pos);
    for (std::size_t i = 0; i + 19 <= line.size(); ++i) {
      int Y, M, D, h, m, s;
      if (line[i] < '0' || line[i] > '9' || line[i + 4] != '-' || line[i + 10] != ' ') continue;
      if (std::sscanf(line.c_str() + i, "%4d-%2d-%2d %2d:%2d:%2d", &Y, &M, &D, &h, &m, &s) != 6) continue;
      std::tm tm{};
      tm.tm_year = Y - 1900;
      tm.tm_mon = M - 1;
      tm.tm_mday = D;
      tm.tm_hour = h;
      tm.tm_min = m;
      tm.tm_sec = s;
      long long micros = 0;
      std::size_t j = i + 19;
      if (j < line.size() && line[j] == '.') {
        int digits = 0;
        for (++j; j < line.size() && line[j] >= '0' && line[j] <= '9'; ++j, ++digits)
          if (digits < 6) micros = micros * 10 + (line[j] - '0');
        for (; digits < 6; ++digits) micros *= 10;
      }
      out.push_back(std::chrono::system_clock::from_time_t(::timegm(&tm)) + std::chrono::microseconds(micros));
      break;
    }
  }
  return out;
}

std::optional<PgWalSeg> pg_wal_seg(const Manifest& m) {
  if (m.content != kPgWalContent) return std::nullopt;
  PgWalSeg s;
  s.id = m.id;
  s.timeline = m.pg_timeline;
  auto a = parse_lsn(m.pg_start_lsn), b = parse_lsn(m.pg_stop_lsn);
  if (!a || !b || *b <= *a || s.timeline == 0) return std::nullopt;
  s.start = *a;
  s.end = *b;
  boost::system::error_code ec;
  auto v = json::parse(m.source_position, ec);
  if (!ec && v.is_object()) {
    const auto& o = v.as_object();
    if (auto* f = o.if_contains("wal_file"); f && f->is_string()) s.wal_file = std::string(f->as_string());
    auto t = [&](const char* k) -> std::optional<SysTime> {
      if (auto* x = o.if_contains(k); x && x->is_string())
        if (auto p = parse_time_utc(std::string(x->as_string()))) return p.value();
      return std::nullopt;
    };
    s.first_commit = t("first_commit_at");
    s.last_commit = t("last_commit_at");
  }
  if (s.wal_file.empty()) s.wal_file = m.id.rfind("pg-wal-", 0) == 0 ? m.id.substr(7) : m.id;
  return s;
}

std::optional<PgBase> pg_base_of(const Manifest& full) {
  if (full.engine != "postgresql" || full.kind != "full" || full.content != "pg-tar") return std::nullopt;
  auto stop = parse_lsn(full.pg_stop_lsn);
  if (!stop) return std::nullopt;
  PgBase b;
  b.stop_lsn = *stop;
  b.timeline = full.pg_timeline;
  b.stop_time = full.pg_stop_time.value_or(full.created_at);
  return b;
}

namespace {
std::uint64_t seg_size_of(const std::vector<PgWalSeg>& segs, std::uint64_t given) {
  if (given) return given;
  return segs.empty() ? kDefaultWalSegSize : segs.front().end - segs.front().start;
}
}  // namespace

PgChain pg_chain(const PgBase& base, std::vector<PgWalSeg> all, std::uint64_t seg_size) {
  seg_size = seg_size_of(all, seg_size);
  PgChain c;
  // For each start LSN the highest timeline (a promoted standby's copy of the switch segment
  // supersedes the old primary's; older timelines past the switch are another history).
  std::map<std::uint64_t, PgWalSeg> by_start;
  for (auto& s : all) {
    if (s.timeline < base.timeline) continue;
    auto it = by_start.find(s.start);
    if (it == by_start.end() || it->second.timeline < s.timeline) by_start[s.start] = s;
  }
  const std::uint64_t first = base.stop_lsn - base.stop_lsn % seg_size;
  std::uint64_t at = first;
  std::uint32_t tl = base.timeline;
  if (!by_start.count(at)) at += seg_size;  // the base backup's tar holds the segment of stop_lsn
  for (;;) {
    auto it = by_start.find(at);
    if (it == by_start.end() || it->second.timeline < tl) break;
    tl = it->second.timeline;
    c.segments.push_back(it->second);
    at = it->second.end;
  }
  for (auto& [start, s] : by_start)
    if (start > at) {
      c.gap = "WAL segment " + wal_file_name(tl, at / seg_size, seg_size) + " (" + format_lsn(at) + ".." +
              format_lsn(at + seg_size) + ") is missing from the archive; archived WAL resumes at " + s.wal_file;
      break;
    }
  return c;
}

std::optional<PgWindow> pg_window(const PgBase& base, const PgChain& chain) {
  std::optional<SysTime> last;
  for (auto& s : chain.segments)
    if (s.last_commit && (!last || *s.last_commit > *last)) last = s.last_commit;
  if (!last || *last <= base.stop_time) return std::nullopt;
  return PgWindow{base.stop_time, *last, chain.segments.size()};
}

Result<std::vector<PgWalSeg>> pg_plan(const std::string& backup_id, const PgBase& base, const PgChain& chain, SysTime t) {
  auto w = pg_window(base, chain);
  const std::string gap = chain.gap.empty() ? "" : " (" + chain.gap + ")";
  if (!w)
    return make_error(Errc::refused, "no WAL with commits after backup " + backup_id + " is archived, so it restores only to its end (" +
                                         format_time_utc(base.stop_time) + ")" + gap,
                      "restore without --to-time, or wait until WAL is archived (SELECT pg_switch_wal() completes a segment)");
  const std::string window = format_time_utc(w->from) + " .. " + format_time_utc(w->to);
  if (t < w->from)
    return make_error(Errc::refused, "to_time " + format_time_utc(t) + " is before the end of backup " + backup_id +
                                         "; its restorable window is " + window,
                      "pick an earlier backup for that time");
  if (t >= w->to)
    return make_error(Errc::refused, "the WAL for " + format_time_utc(t) + " is missing from the archive of backup " + backup_id +
                                         ": the last archived commit is at " + format_time_utc(w->to) +
                                         " (recovery needs a commit after the target); restorable window " + window + gap,
                      "choose an earlier time, or wait for the next WAL segment to be archived");
  std::vector<PgWalSeg> out;
  for (auto& s : chain.segments) {
    out.push_back(s);
    if (s.last_commit && *s.last_commit > t) break;
  }
  return out;
}

std::vector<std::string> pg_wal_unneeded(const std::vector<PgBase>& kept, const std::vector<PgWalSeg>& segs,
                                         std::uint64_t seg_size) {
  std::vector<std::string> out;
  if (kept.empty()) return out;
  seg_size = seg_size_of(segs, seg_size);
  std::uint64_t keep_from = UINT64_MAX;
  for (auto& b : kept) keep_from = std::min(keep_from, b.stop_lsn - b.stop_lsn % seg_size);
  for (auto& s : segs)
    if (s.end <= keep_from) out.push_back(s.id);
  return out;
}

// ---- I/O ----------------------------------------------------------------------

Result<Manifest> archive_pg_wal_file(const BackupSettings& s, ProcessRunner& runner, const fs::path& file,
                                     const std::string& waldump, const std::string& node, const std::string& parent,
                                     SysTime now, bool* already) {
  if (already) *already = false;
  const std::string name = file.filename().string();
  auto wn = parse_wal_name(name);
  std::error_code ec;
  const std::uint64_t size = fs::file_size(file, ec);
  if (ec) return make_error(Errc::io, "cannot read " + file.string() + ": " + ec.message());
  if (wn && !wn->history) wn = parse_wal_name(name, size);  // the cluster's segment size is the file's
  if (!wn) return make_error(Errc::invalid_argument, file.string() + " is not a WAL segment or timeline history file");
  const std::string id = pg_wal_id(name);
  if (fs::exists(manifest_path(s.directory, id), ec)) {
    if (already) *already = true;
    return read_manifest(manifest_path(s.directory, id));
  }
  json::object pos{{"wal_file", name}};
  if (!wn->history) {
    ProcessSpec spec;
    spec.argv = {waldump, "-r", "Transaction", file.string()};
    spec.env["TZ"] = "UTC";
    spec.timeout = Millis{120'000};
    spec.max_output = 16 << 20;
    auto o = runner.run(spec);
    // pg_waldump exits non-zero at the end of the last record of a segment; the commits it
    // printed before that are what we want. Not starting at all is an error.
    if (!o) return make_error(o.error().code, "cannot run pg_waldump on " + file.string() + ": " + o.error().message);
    auto commits = parse_waldump_commits(o->output);
    pos["commits"] = commits.size();
    if (!commits.empty()) {
      pos["first_commit_at"] = format_time_utc(*std::min_element(commits.begin(), commits.end()));
      pos["last_commit_at"] = format_time_utc(*std::max_element(commits.begin(), commits.end()));
    }
  }
  NewBackup info;
  info.id = id;
  info.name = "wal";
  info.node = node;
  info.engine = "postgresql";
  info.kind = "incremental";
  info.parent = parent;
  info.content = wn->history ? kPgHistoryContent : kPgWalContent;
  info.now = now;
  auto session = BackupSession::begin(s, info);
  if (!session) return session.error();
  std::ifstream in(file, std::ios::binary);
  if (!in) return make_error(Errc::io, "cannot open " + file.string());
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    if (auto n = in.gcount(); n > 0)
      if (auto st = session.value()->write(buf.data(), static_cast<std::size_t>(n)); !st) return st.error();
  }
  if (in.bad()) return make_error(Errc::io, "cannot read " + file.string());
  Manifest& m = session.value()->manifest_for_update();
  m.pg_timeline = wn->timeline;
  if (!wn->history) {
    m.pg_start_lsn = format_lsn(wn->segno * size);
    m.pg_stop_lsn = format_lsn((wn->segno + 1) * size);
  }
  return session.value()->finish(json::serialize(pos));
}

std::vector<Manifest> scan_pg_wal(const fs::path& folder) {
  std::vector<Manifest> out;
  for (auto& e : scan_directory(folder))
    if (is_pg_wal(e.manifest)) out.push_back(e.manifest);
  return out;
}

Status stage_pg_wal(const fs::path& folder, const std::vector<Manifest>& files, const MasterKey* key, const fs::path& dest) {
  for (auto& m : files) {
    const fs::path data = folder / m.data_file;
    const std::string name = m.id.rfind("pg-wal-", 0) == 0 ? m.id.substr(7) : m.id;
    const fs::path out_path = dest / name;
    std::ofstream out(out_path, std::ios::binary | std::ios::trunc);
    if (!out) return make_error(Errc::io, "cannot create " + out_path.string());
    auto rs = read_backup(data, key, [&](const std::uint8_t* p, std::size_t n) -> Status {
      out.write(reinterpret_cast<const char*>(p), static_cast<std::streamsize>(n));
      if (!out) return make_error(Errc::io, "cannot write " + out_path.string() + " (disk full?)");
      return ok_status();
    });
    if (!rs) return make_error(rs.error().code, "archived WAL " + name + ": " + rs.error().message);
    if (rs->plaintext_sha256 != m.plaintext_sha256)
      return make_error(Errc::corrupt, "archived WAL " + name + " (" + data.string() +
                                           ") does not match its manifest's plaintext_sha256");
    out.close();
    if (!out) return make_error(Errc::io, "cannot write " + out_path.string());
  }
  return ok_status();
}

std::optional<Check> verify_pg_wal(const fs::path& folder, const Manifest& full, const MasterKey* key) {
  auto base = pg_base_of(full);
  if (!base) return std::nullopt;
  auto archived = scan_pg_wal(folder);
  std::vector<PgWalSeg> segs;
  for (auto& m : archived)
    if (auto s = pg_wal_seg(m)) segs.push_back(*s);
  auto chain = pg_chain(*base, segs);
  if (chain.segments.empty() && chain.gap.empty()) return std::nullopt;
  std::uint64_t bytes = 0;
  for (auto& s : chain.segments) {
    const Manifest* m = nullptr;
    for (auto& a : archived)
      if (a.id == s.id) m = &a;
    auto rs = read_backup(folder / m->data_file, key, [](const std::uint8_t*, std::size_t) { return ok_status(); });
    if (!rs) return Check{"wal_archive", false, "archived WAL " + s.wal_file + ": " + rs.error().message};
    if (rs->plaintext_sha256 != m->plaintext_sha256 || rs->file_sha256 != m->file_sha256)
      return Check{"wal_archive", false, "archived WAL " + s.wal_file + " does not match its manifest's checksums"};
    bytes += rs->plaintext_bytes;
  }
  if (!chain.gap.empty()) return Check{"wal_archive", false, chain.gap};
  std::string detail = std::to_string(chain.segments.size()) + " archived WAL segment(s), " + human_bytes(bytes) +
                       ", contiguous from " + (chain.segments.empty() ? "-" : chain.segments.front().wal_file);
  if (auto w = pg_window(*base, chain))
    detail += "; restorable " + format_time_utc(w->from) + " .. " + format_time_utc(w->to);
  return Check{"wal_archive", true, detail};
}

}  // namespace drd::backup
