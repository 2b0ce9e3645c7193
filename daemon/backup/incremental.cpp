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

constexpr char kSegMagic[8] = {'D', 'R', 'D', 'S', 'E', 'G', '1', '\0'};

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

Result<std::vector<SegmentInfo>> list_segments(const fs::path& dir, const std::string& full_id) {
  std::vector<SegmentInfo> out;
  fs::path sd = seg_dir(dir, full_id);
  std::error_code ec;
  if (!fs::exists(sd, ec)) return out;
  std::uint64_t max_n = 0;
  for (auto& e : fs::directory_iterator(sd, ec)) {
    std::string name = e.path().filename().string();
    if (name.rfind("seg-", 0) == 0 && name.size() > 9 && name.substr(name.size() - 5) == ".json")
      max_n = std::max<std::uint64_t>(max_n, std::stoull(name.substr(4, name.size() - 9)));
  }
  for (std::uint64_t n = 1; n <= max_n; ++n) {
    fs::path data = sd / ("seg-" + std::to_string(n));
    auto si = read_sidecar(data.string() + ".json");
    if (!si) return make_error(si.error().code, "segment " + std::to_string(n) + " of " + full_id + ": " + si.error().message);
    if (!fs::exists(data, ec)) return make_error(Errc::not_found, "segment file " + data.string() + " is missing");
    si->path = data;
    out.push_back(si.value());
  }
  return out;
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
    std::uint8_t fh[8];
    put32(fh, f.page_no);
    put32(fh + 4, f.commit_db_size);
    if (auto r = w.value()->write(fh, 8); !r) return r.error();
    if (auto r = w.value()->write(f.bytes.data(), f.bytes.size()); !r) return r.error();
  }
  auto st = w.value()->commit();
  if (!st) return st.error();
  si.file_sha256 = st->file_sha256;
  si.plaintext_sha256 = st->plaintext_sha256;
  json::object o{{"n", si.n},
                 {"time", format_time_utc(time)},
                 {"frames", si.frames},
                 {"page_size", page_size},
                 {"file_sha256", si.file_sha256},
                 {"plaintext_sha256", si.plaintext_sha256},
                 {"encrypted", s.key.has_value()}};
  if (auto r = write_text_atomic(si.path.string() + ".json", json::serialize(o) + "\n"); !r) {
    fs::remove(si.path, ec);
    return r.error();
  }
  (void)fsync_path(sd);
  return si;
}

namespace {

// Applies one segment's frames to the database file `fd` as a checkpoint would.
Status apply_segment(const SegmentInfo& si, const MasterKey* key, int fd, std::uint32_t page_size) {
  std::vector<std::uint8_t> pending;
  bool header_done = false;
  std::uint32_t frames_left = 0;
  bool last_was_commit = false;
  const std::size_t frame_len = 8 + page_size;
  auto consume = [&]() -> Status {
    std::size_t off = 0;
    if (!header_done) {
      if (pending.size() < 16) return ok_status();
      if (std::memcmp(pending.data(), kSegMagic, 8) != 0 || get32(pending.data() + 8) != page_size)
        return make_error(Errc::corrupt, "segment " + si.path.string() + " has a bad header or page size");
      frames_left = get32(pending.data() + 12);
      header_done = true;
      off = 16;
    }
    while (pending.size() - off >= frame_len) {
      if (frames_left == 0) return make_error(Errc::corrupt, "segment " + si.path.string() + " has extra frames");
      const std::uint8_t* f = pending.data() + off;
      std::uint32_t page_no = get32(f), commit = get32(f + 4);
      if (page_no == 0) return make_error(Errc::corrupt, "segment " + si.path.string() + " has a frame for page 0");
      if (::pwrite(fd, f + 8, page_size, static_cast<off_t>(page_no - 1) * page_size) != static_cast<ssize_t>(page_size))
        return make_error(Errc::io, std::string("writing a page while applying ") + si.path.string() + ": " + std::strerror(errno));
      if (commit != 0 && ::ftruncate(fd, static_cast<off_t>(commit) * page_size) != 0)
        return make_error(Errc::io, std::string("truncating while applying ") + si.path.string() + ": " + std::strerror(errno));
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
  if (!rs) return rs.error();
  if (rs->file_sha256 != si.file_sha256 || rs->plaintext_sha256 != si.plaintext_sha256)
    return make_error(Errc::corrupt, "segment " + si.path.string() + " does not match its recorded checksums");
  if (!header_done || frames_left != 0 || !pending.empty() || !last_was_commit)
    return make_error(Errc::corrupt, "segment " + si.path.string() + " is incomplete");
  return ok_status();
}

}  // namespace

Result<PitrResult> restore_sqlite_to_time(const BackupRef& full, const fs::path& target, SysTime to_time,
                                          const RestoreOptions& opts) {
  if (!full.manifest || full.manifest->kind != "full" || full.manifest->engine != "sqlite")
    return make_error(Errc::invalid_argument, "point-in-time restore needs a full SQLite backup with its manifest");
  const Manifest& m = *full.manifest;
  if (to_time < m.created_at)
    return make_error(Errc::invalid_argument, "to_time " + format_time_utc(to_time) + " is before backup " + m.id +
                                                  " was taken (" + format_time_utc(m.created_at) + ")");
  fs::path dir = full.data.parent_path();
  auto segs = list_segments(dir, m.id);
  if (!segs) return segs.error();
  PitrResult out;
  out.restored_time = m.created_at;
  auto apply = [&](const fs::path& tmp) -> Status {
    std::uint8_t h[100];
    std::ifstream in(tmp, std::ios::binary);
    if (!in.read(reinterpret_cast<char*>(h), 100)) return make_error(Errc::corrupt, "restored file is not a SQLite database");
    std::uint32_t ps = (std::uint32_t(h[16]) << 8) | h[17];
    if (ps == 1) ps = 65536;
    int fd = ::open(tmp.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) return errno_error(Errc::io, "cannot open", tmp, errno);
    Status s = ok_status();
    for (auto& si : segs.value()) {
      if (si.time > to_time) break;
      if (si.page_size != ps) {
        s = make_error(Errc::corrupt, "segment " + si.path.string() + " has page size " + std::to_string(si.page_size) +
                                          ", the database " + std::to_string(ps));
        break;
      }
      s = apply_segment(si, opts.key, fd, ps);
      if (!s) break;
      ++out.applied_segments;
      out.restored_time = si.time;
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
