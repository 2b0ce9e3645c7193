#include "daemon/backup/incremental.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <iterator>

#include <boost/json.hpp>

#include "daemon/backup/catalog.hpp"
#include "daemon/backup/util.hpp"

namespace drd::backup {

namespace fs = std::filesystem;
namespace json = boost::json;

namespace {

constexpr char kSegMagic1[8] = {'D', 'R', 'D', 'S', 'E', 'G', '1', '\0'};  // read only
constexpr char kSegMagic[8] = {'D', 'R', 'D', 'S', 'E', 'G', '2', '\0'};

void put64(std::uint8_t* p, std::uint64_t v) {
  for (int i = 7; i >= 0; --i, v >>= 8) p[i] = static_cast<std::uint8_t>(v);
}
std::uint64_t get64(const std::uint8_t* p) {
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | p[i];
  return v;
}

void put32(std::uint8_t* p, std::uint32_t v) {
  p[0] = static_cast<std::uint8_t>(v >> 24);
  p[1] = static_cast<std::uint8_t>(v >> 16);
  p[2] = static_cast<std::uint8_t>(v >> 8);
  p[3] = static_cast<std::uint8_t>(v);
}
std::uint32_t get32(const std::uint8_t* p) {
  return (std::uint32_t(p[0]) << 24) | (std::uint32_t(p[1]) << 16) | (std::uint32_t(p[2]) << 8) | p[3];
}

fs::path seg_dir(const fs::path& dir, const std::string& full_id) { return dir / full_id; }

Status write_text_atomic(const fs::path& final, const std::string& text) {
  fs::path partial = final;
  partial += ".partial";
  auto f = open_output_file(partial);
  if (!f) return f.error();
  auto s = f.value()->write(reinterpret_cast<const std::uint8_t*>(text.data()), text.size());
  if (s) s = f.value()->sync();
  if (s) s = f.value()->close();
  std::error_code ec;
  if (s) {
    fs::rename(partial, final, ec);
    if (ec) s = make_error(Errc::io, "cannot rename " + partial.string() + ": " + ec.message());
  }
  if (!s) fs::remove(partial, ec);
  return s;
}

Result<SegmentInfo> read_sidecar(const fs::path& p) {
  std::ifstream in(p);
  if (!in) return make_error(Errc::not_found, "segment description " + p.string() + " is missing");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  boost::system::error_code ec;
  auto v = json::parse(text, ec);
  if (ec || !v.is_object()) return make_error(Errc::corrupt, "segment description " + p.string() + " is not JSON");
  auto& o = v.as_object();
  SegmentInfo si;
  try {
    si.n = static_cast<std::uint64_t>(o.at("n").as_int64());
    auto t = parse_time_utc(std::string(o.at("time").as_string()));
    if (!t) return t.error();
    si.time = t.value();
    si.first_time = si.time;
    if (auto* ft = o.if_contains("first_time"); ft && ft->is_string()) {
      auto f = parse_time_utc(std::string(ft->as_string()));
      if (!f) return f.error();
      si.first_time = f.value();
    }
    if (auto* b = o.if_contains("base"); b && b->is_bool()) si.base = b->as_bool();
    if (auto* rb = o.if_contains("raw_bytes"); rb && rb->is_int64()) si.raw_bytes = static_cast<std::uint64_t>(rb->as_int64());
    si.frames = static_cast<std::uint64_t>(o.at("frames").as_int64());
    si.page_size = static_cast<std::uint32_t>(o.at("page_size").as_int64());
    si.file_sha256 = std::string(o.at("file_sha256").as_string());
    si.plaintext_sha256 = std::string(o.at("plaintext_sha256").as_string());
  } catch (const std::exception&) {
    return make_error(Errc::corrupt, "segment description " + p.string() + " lacks or mistypes a field");
  }
  return si;
}

}  // namespace

namespace {

// Highest n with a `seg-<n>` or `seg-<n>.json` in the folder (either one counts: a data file
// whose description is gone is a hole, not the end).
std::uint64_t highest_segment(const fs::path& sd) {
  std::uint64_t max_n = 0;
  std::error_code ec;
  for (fs::directory_iterator it(sd, ec), end; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (name.rfind("seg-", 0) != 0) continue;
    std::string num = name.substr(4);
    if (num.size() > 5 && num.substr(num.size() - 5) == ".json") num.resize(num.size() - 5);
    if (num.empty() || num.size() > 12 || num.find_first_not_of("0123456789") != std::string::npos) continue;
    max_n = std::max<std::uint64_t>(max_n, std::stoull(num));
  }
  return max_n;
}

Result<SegmentInfo> load_segment(const fs::path& sd, const std::string& full_id, std::uint64_t n) {
  fs::path data = sd / ("seg-" + std::to_string(n));
  auto si = read_sidecar(data.string() + ".json");
  if (!si) return make_error(si.error().code, "segment " + std::to_string(n) + " of " + full_id + ": " + si.error().message);
  std::error_code ec;
  if (!fs::exists(data, ec))
    return make_error(Errc::not_found, "segment " + std::to_string(n) + " of " + full_id + ": file " + data.string() + " is missing");
  si->path = data;
  return si;
}

Status write_sidecar(const SegmentInfo& si, bool encrypted) {
  json::object o{{"n", si.n},
                 {"time", format_time_utc(si.time)},
                 {"first_time", format_time_utc(si.first_time)},
                 {"base", si.base},
                 {"frames", si.frames},
                 {"page_size", si.page_size},
                 {"raw_bytes", si.raw_bytes},
                 {"file_sha256", si.file_sha256},
                 {"plaintext_sha256", si.plaintext_sha256},
                 {"encrypted", encrypted}};
  if (auto r = write_text_atomic(si.path.string() + ".json", json::serialize(o) + "\n"); !r) {
    std::error_code ec;
    fs::remove(si.path, ec);
    return r;
  }
  return ok_status();
}

}  // namespace

std::string segment_id(const std::string& full_id, std::uint64_t n) { return full_id + ".seg-" + std::to_string(n); }
std::optional<SegmentInfo> segment_row(const Manifest& m) {
  boost::system::error_code ec;
  auto v = json::parse(m.source_position, ec);
  if (ec || !v.is_object()) return std::nullopt;
  const auto& o = v.as_object();
  SegmentInfo si;
  si.time = m.created_at;
  si.first_time = m.created_at;
  if (auto* n = o.if_contains("segment"); n && n->is_int64() && n->as_int64() > 0)
    si.n = static_cast<std::uint64_t>(n->as_int64());
  if (si.n == 0) return std::nullopt;
  if (auto* b = o.if_contains("base"); b && b->is_bool()) si.base = b->as_bool();
  if (auto* f = o.if_contains("frames"); f && f->is_int64() && f->as_int64() >= 0)
    si.frames = static_cast<std::uint64_t>(f->as_int64());
  if (auto* f = o.if_contains("first_commit_at"); f && f->is_string())
    if (auto t = parse_time_utc(std::string(f->as_string()))) si.first_time = t.value();
  return si;
}

std::vector<SegmentInfo> contiguous_segments(std::vector<SegmentInfo> rows) {
  std::sort(rows.begin(), rows.end(), [](const SegmentInfo& a, const SegmentInfo& b) { return a.n < b.n; });
  std::vector<SegmentInfo> out;
  for (auto& r : rows) {
    if (r.n != out.size() + 1) break;
    out.push_back(std::move(r));
  }
  return out;
}

bool is_wal_segment(const Manifest& m) {
  // PostgreSQL's archived WAL (pg_wal.hpp) is no backup of its own either: listed, retained and
  // verified with the full backups it extends.
  return m.content == kWalSegmentContent || m.content == "pg-wal" || m.content == "pg-wal-history";
}

Result<std::vector<SegmentInfo>> list_segments(const fs::path& dir, const std::string& full_id) {
  std::vector<SegmentInfo> out;
  fs::path sd = seg_dir(dir, full_id);
  std::error_code ec;
  if (!fs::exists(sd, ec)) return out;
  const std::uint64_t max_n = highest_segment(sd);
  for (std::uint64_t n = 1; n <= max_n; ++n) {
    auto si = load_segment(sd, full_id, n);
    if (!si) return si.error();
    out.push_back(si.value());
  }
  return out;
}

SegmentScan scan_segments(const fs::path& dir, const std::string& full_id) {
  SegmentScan out;
  fs::path sd = seg_dir(dir, full_id);
  out.highest = highest_segment(sd);
  for (std::uint64_t n = 1; n <= out.highest; ++n) {
    auto si = load_segment(sd, full_id, n);
    if (!si) {
      out.hole = si.error().message;
      break;
    }
    out.segments.push_back(si.value());
  }
  return out;
}

std::optional<RestoreWindow> restore_window(SysTime full_created_at, const std::vector<SegmentInfo>& segments) {
  if (segments.empty()) return std::nullopt;
  RestoreWindow w;
  w.from = segments.front().base ? segments.front().time : full_created_at;
  w.to = std::max(w.from, segments.back().time);
  w.segments = segments.size();
  return w;
}

void put_frame_header(std::uint8_t* out, std::uint32_t page_no, std::uint32_t commit_db_size, SysTime commit_time) {
  put32(out, page_no);
  put32(out + 4, commit_db_size);
  put64(out + 8, static_cast<std::uint64_t>(std::max<std::int64_t>(0, to_unix_ms(commit_time))));
}

Result<SegmentInfo> append_wal_segment(const BackupSettings& s, const std::string& full_id, std::uint32_t page_size,
                                       const std::vector<WalFrame>& frames, SysTime time) {
  if (!fs::exists(manifest_path(s.directory, full_id)))
    return make_error(Errc::not_found, "no full backup " + full_id + " in " + s.directory.string());
  if (frames.empty()) return make_error(Errc::invalid_argument, "a WAL segment needs at least one frame");
  if (frames.back().commit_db_size == 0)
    return make_error(Errc::invalid_argument, "a WAL segment must end with a commit frame (commit_db_size != 0)");
  for (std::size_t i = 0; i < frames.size(); ++i) {
    if (frames[i].page_no == 0 || frames[i].bytes.size() != page_size)
      return make_error(Errc::invalid_argument, "WAL frame " + std::to_string(i) + ": page " +
                                                    std::to_string(frames[i].page_no) + " with " +
                                                    std::to_string(frames[i].bytes.size()) + " bytes, page size " +
                                                    std::to_string(page_size));
  }
  auto existing = list_segments(s.directory, full_id);
  if (!existing) return existing.error();
  if (!existing->empty() && time < existing->back().time)
    return make_error(Errc::invalid_argument, "segment time is older than the previous segment's");
  SegmentInfo si;
  si.n = existing->size() + 1;
  si.time = time;
  si.frames = frames.size();
  si.page_size = page_size;
  fs::path sd = seg_dir(s.directory, full_id);
  std::error_code ec;
  fs::create_directories(sd, ec);
  if (ec) return make_error(Errc::io, "cannot create " + sd.string() + ": " + ec.message());
  si.path = sd / ("seg-" + std::to_string(si.n));
  auto w = BackupWriter::create(si.path, s.pipeline());
  if (!w) return w.error();
  std::uint8_t head[16];
  std::memcpy(head, kSegMagic, 8);
  put32(head + 8, page_size);
  put32(head + 12, static_cast<std::uint32_t>(frames.size()));
  if (auto r = w.value()->write(head, sizeof head); !r) return r.error();
  for (auto& f : frames) {
    std::uint8_t fh[kSegFrameHeader];
    put_frame_header(fh, f.page_no, f.commit_db_size, time);
    if (auto r = w.value()->write(fh, sizeof fh); !r) return r.error();
    if (auto r = w.value()->write(f.bytes.data(), f.bytes.size()); !r) return r.error();
  }
  auto st = w.value()->commit();
  if (!st) return st.error();
  si.file_sha256 = st->file_sha256;
  si.plaintext_sha256 = st->plaintext_sha256;
  si.first_time = time;
  si.raw_bytes = st->source_bytes;
  if (auto r = write_sidecar(si, s.key.has_value()); !r) return r.error();
  (void)fsync_path(sd);
  return si;
}

Result<SegmentInfo> write_segment_from_spool(const BackupSettings& s, const SpooledSegment& seg) {
  std::error_code ec;
  auto drop_spool = [&] { fs::remove(seg.spool, ec); };
  if (!fs::exists(manifest_path(s.directory, seg.full_id))) {
    drop_spool();
    return make_error(Errc::not_found, "no full backup " + seg.full_id + " in " + s.directory.string());
  }
  const std::uint64_t expect = seg.frames * (kSegFrameHeader + seg.page_size);
  auto size = fs::file_size(seg.spool, ec);
  if (ec || size != expect) {
    drop_spool();
    return make_error(Errc::corrupt, "WAL spool " + seg.spool.string() + " holds " + (ec ? ec.message() : std::to_string(size) + " bytes") +
                                         ", expected " + std::to_string(expect));
  }
  fs::path sd = seg_dir(s.directory, seg.full_id);
  fs::create_directories(sd, ec);
  if (ec) {
    drop_spool();
    return make_error(Errc::io, "cannot create " + sd.string() + ": " + ec.message());
  }
  SegmentInfo si;
  si.n = seg.n;
  si.time = seg.time;
  si.first_time = seg.frames ? seg.first_time : seg.time;
  si.base = seg.base;
  si.frames = seg.frames;
  si.page_size = seg.page_size;
  si.path = sd / ("seg-" + std::to_string(seg.n));
  auto result = [&]() -> Result<SegmentInfo> {
    auto w = BackupWriter::create(si.path, s.pipeline());
    if (!w) return w.error();
    std::uint8_t head[16];
    std::memcpy(head, kSegMagic, 8);
    put32(head + 8, seg.page_size);
    put32(head + 12, static_cast<std::uint32_t>(seg.frames));
    if (auto r = w.value()->write(head, sizeof head); !r) return r.error();
    int fd = ::open(seg.spool.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno_error(Errc::io, "cannot open", seg.spool, errno);
    std::vector<std::uint8_t> buf(1 << 20);
    Status st = ok_status();
    for (;;) {
      ssize_t n = ::read(fd, buf.data(), buf.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        st = errno_error(Errc::io, "cannot read", seg.spool, errno);
        break;
      }
      if (n == 0) break;
      if (st = w.value()->write(buf.data(), static_cast<std::size_t>(n)); !st) break;
    }
    ::close(fd);
    if (!st) return st.error();
    auto cs = w.value()->commit();
    if (!cs) return cs.error();
    si.file_sha256 = cs->file_sha256;
    si.plaintext_sha256 = cs->plaintext_sha256;
    si.raw_bytes = cs->source_bytes;
    if (auto r = write_sidecar(si, s.key.has_value()); !r) return r.error();
    (void)fsync_path(sd);
    return si;
  }();
  drop_spool();
  return result;
}

namespace {

// Applies one segment's frames to the database file `fd` as a checkpoint would: every frame
// when `limit` is null, else the frames whose commit time is <= *limit (times never go back,
// so this stops at a transaction boundary). The rest is still read: checksums cover it all.
struct Applied {
  std::uint64_t frames = 0;
  std::optional<SysTime> last_time;
};
Result<Applied> apply_segment(const SegmentInfo& si, const MasterKey* key, int fd, std::uint32_t page_size,
                              std::optional<SysTime> limit) {
  std::vector<std::uint8_t> pending;
  bool header_done = false, v2 = true, stopped = false;
  std::uint32_t frames_left = 0;
  bool last_was_commit = true;  // a segment of zero frames is complete
  std::size_t fh_len = kSegFrameHeader;
  Applied out;
  auto consume = [&]() -> Status {
    std::size_t off = 0;
    if (!header_done) {
      if (pending.size() < 16) return ok_status();
      v2 = std::memcmp(pending.data(), kSegMagic, 8) == 0;
      frames_left = get32(pending.data() + 12);
      if ((!v2 && std::memcmp(pending.data(), kSegMagic1, 8) != 0) || (frames_left && get32(pending.data() + 8) != page_size))
        return make_error(Errc::corrupt, "segment " + si.path.string() + " has a bad header or page size");
      fh_len = v2 ? kSegFrameHeader : 8;
      header_done = true;
      off = 16;
    }
    const std::size_t frame_len = fh_len + page_size;
    while (pending.size() - off >= frame_len) {
      if (frames_left == 0) return make_error(Errc::corrupt, "segment " + si.path.string() + " has extra frames");
      const std::uint8_t* f = pending.data() + off;
      std::uint32_t page_no = get32(f), commit = get32(f + 4);
      SysTime t = v2 ? from_unix_ms(static_cast<std::int64_t>(get64(f + 8))) : si.time;
      if (page_no == 0) return make_error(Errc::corrupt, "segment " + si.path.string() + " has a frame for page 0");
      if (limit && t > *limit) stopped = true;
      if (!stopped) {
        if (::pwrite(fd, f + fh_len, page_size, static_cast<off_t>(page_no - 1) * page_size) != static_cast<ssize_t>(page_size))
          return make_error(Errc::io, std::string("writing a page while applying ") + si.path.string() + ": " + std::strerror(errno));
        if (commit != 0 && ::ftruncate(fd, static_cast<off_t>(commit) * page_size) != 0)
          return make_error(Errc::io, std::string("truncating while applying ") + si.path.string() + ": " + std::strerror(errno));
        ++out.frames;
        if (commit != 0) out.last_time = t;
      }
      last_was_commit = commit != 0;
      --frames_left;
      off += frame_len;
    }
    pending.erase(pending.begin(), pending.begin() + static_cast<long>(off));
    return ok_status();
  };
  auto rs = read_backup(si.path, key, [&](const std::uint8_t* p, std::size_t n) {
    pending.insert(pending.end(), p, p + n);
    return consume();
  });
  if (!rs) return make_error(rs.error().code, "segment " + si.path.string() + ": " + rs.error().message, rs.error().hint);
  if (rs->file_sha256 != si.file_sha256 || rs->plaintext_sha256 != si.plaintext_sha256)
    return make_error(Errc::corrupt, "segment " + si.path.string() + " does not match its recorded checksums");
  if (!header_done || frames_left != 0 || !pending.empty() || !last_was_commit)
    return make_error(Errc::corrupt, "segment " + si.path.string() + " is incomplete");
  return out;
}

std::uint32_t db_page_size(const std::uint8_t* h) {
  std::uint32_t ps = (std::uint32_t(h[16]) << 8) | h[17];
  return ps == 1 ? 65536 : ps;
}

}  // namespace

std::optional<Check> verify_segments(const fs::path& dir, const std::string& full_id, const MasterKey* key) {
  auto scan = scan_segments(dir, full_id);
  if (scan.highest == 0) return std::nullopt;
  Check c{"segments", false, ""};
  for (auto& si : scan.segments) {
    auto rs = read_backup(si.path, key, [](const std::uint8_t*, std::size_t) { return ok_status(); });
    if (!rs) {
      c.detail = "segment " + std::to_string(si.n) + " (" + si.path.string() + "): " + rs.error().message;
      return c;
    }
    if (rs->file_sha256 != si.file_sha256 || rs->plaintext_sha256 != si.plaintext_sha256) {
      c.detail = "segment " + std::to_string(si.n) + " (" + si.path.string() + ") does not match its recorded checksums";
      return c;
    }
  }
  if (!scan.hole.empty()) {
    c.detail = scan.hole;
    return c;
  }
  c.ok = true;
  c.detail = std::to_string(scan.segments.size()) + " WAL segment(s) read and checked";
  return c;
}

Result<PitrResult> restore_sqlite_to_time(const BackupRef& full, const fs::path& target, SysTime to_time,
                                          const RestoreOptions& opts) {
  if (!full.manifest || full.manifest->kind != "full" || full.manifest->engine != "sqlite")
    return make_error(Errc::invalid_argument, "point-in-time restore needs a full SQLite backup with its manifest");
  const Manifest& m = *full.manifest;
  if (to_time < m.created_at)
    return make_error(Errc::invalid_argument, "to_time " + format_time_utc(to_time) + " is before backup " + m.id +
                                                  " was taken (" + format_time_utc(m.created_at) + ")",
                      "choose an older full backup (drctl backups shows each one's restorable window)");
  fs::path dir = full.data.parent_path();
  auto scan = scan_segments(dir, m.id);
  auto window = restore_window(m.created_at, scan.segments);
  if (!window) {
    if (!scan.hole.empty())
      return make_error(Errc::not_found, "the WAL archived after backup " + m.id + " cannot be read: " + scan.hole,
                        "restore without --to-time to get the database as of the backup");
    return make_error(Errc::not_found, "backup " + m.id + " has no archived WAL segments, so it cannot be replayed to " +
                                           format_time_utc(to_time),
                      "restore without --to-time to get the database as of the backup");
  }
  if (to_time < window->from)
    return make_error(Errc::invalid_argument,
                      "to_time " + format_time_utc(to_time) + " is before the restorable window of backup " + m.id +
                          " (" + format_time_utc(window->from) + " to " + format_time_utc(window->to) +
                          "): its snapshot was still being taken then",
                      "choose a time in the window, or an older full backup");
  if (to_time > window->to) {
    std::string why = scan.hole.empty() ? "no WAL was archived after " + format_time_utc(window->to)
                                        : scan.hole + ", so the WAL after " + format_time_utc(window->to) + " is gone";
    return make_error(Errc::not_found,
                      "the WAL for " + format_time_utc(to_time) + " is missing from backup " + m.id + ": " + why,
                      "restore to " + format_time_utc(window->to) + " or earlier, or take a newer backup");
  }
  PitrResult out;
  out.restored_time = window->from;
  auto apply = [&](const fs::path& tmp) -> Status {
    std::uint8_t h[100];
    std::ifstream in(tmp, std::ios::binary);
    if (!in.read(reinterpret_cast<char*>(h), 100)) return make_error(Errc::corrupt, "restored file is not a SQLite database");
    const std::uint32_t ps = db_page_size(h);
    int fd = ::open(tmp.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) return errno_error(Errc::io, "cannot open", tmp, errno);
    Status s = ok_status();
    for (auto& si : scan.segments) {
      if (!si.base && si.first_time > to_time) break;
      if (si.frames && si.page_size != ps) {
        s = make_error(Errc::corrupt, "segment " + si.path.string() + " has page size " + std::to_string(si.page_size) +
                                          ", the database " + std::to_string(ps));
        break;
      }
      auto a = apply_segment(si, opts.key, fd, ps, si.base ? std::nullopt : std::optional<SysTime>(to_time));
      if (!a) {
        s = a.error();
        break;
      }
      if (a->frames > 0 || si.base) ++out.applied_segments;
      if (a->last_time) out.restored_time = std::max(*out.restored_time, *a->last_time);
    }
    if (s && ::fsync(fd) != 0) s = errno_error(Errc::io, "fsync failed for", tmp, errno);
    ::close(fd);
    return s;
  };
  auto r = detail::restore_sqlite_with(full, target, opts, {}, apply);
  if (!r) return r.error();
  out.restore = r.value();
  return out;
}

}  // namespace drd::backup
