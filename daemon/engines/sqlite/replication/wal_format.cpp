#include "daemon/engines/sqlite/replication/wal_format.hpp"

namespace drd::replication {

std::uint32_t get_be32(const unsigned char* p) {
  return (std::uint32_t(p[0]) << 24) | (std::uint32_t(p[1]) << 16) | (std::uint32_t(p[2]) << 8) |
         std::uint32_t(p[3]);
}

void put_be32(unsigned char* p, std::uint32_t v) {
  p[0] = static_cast<unsigned char>(v >> 24);
  p[1] = static_cast<unsigned char>(v >> 16);
  p[2] = static_cast<unsigned char>(v >> 8);
  p[3] = static_cast<unsigned char>(v);
}

static std::uint32_t get_le32(const unsigned char* p) {
  return std::uint32_t(p[0]) | (std::uint32_t(p[1]) << 8) | (std::uint32_t(p[2]) << 16) |
         (std::uint32_t(p[3]) << 24);
}

void wal_checksum(bool big_endian_words, const unsigned char* data, std::size_t n, Checksum& ck) {
  std::uint32_t s0 = ck.s0, s1 = ck.s1;
  if (big_endian_words) {
    for (std::size_t i = 0; i + 8 <= n; i += 8) {
      s0 += get_be32(data + i) + s1;
      s1 += get_be32(data + i + 4) + s0;
    }
  } else {
    for (std::size_t i = 0; i + 8 <= n; i += 8) {
      s0 += get_le32(data + i) + s1;
      s1 += get_le32(data + i + 4) + s0;
    }
  }
  ck.s0 = s0;
  ck.s1 = s1;
}

static bool valid_page_size(std::uint32_t ps) {
  return ps >= 512 && ps <= 65536 && (ps & (ps - 1)) == 0;
}

std::optional<WalHeader> parse_wal_header(const unsigned char* p, std::string* why) {
  auto fail = [&](const char* reason) -> std::optional<WalHeader> {
    if (why) *why = reason;
    return std::nullopt;
  };
  WalHeader h;
  h.magic = get_be32(p);
  if ((h.magic & ~1u) != kWalMagicLe) return fail("bad WAL magic");
  h.version = get_be32(p + 4);
  if (h.version != kWalVersion) return fail("unsupported WAL format version");
  h.page_size = get_be32(p + 8);
  if (!valid_page_size(h.page_size)) return fail("invalid page size in WAL header");
  h.checkpoint_seq = get_be32(p + 12);
  h.salt1 = get_be32(p + 16);
  h.salt2 = get_be32(p + 20);
  h.checksum = {get_be32(p + 24), get_be32(p + 28)};
  Checksum ck;
  wal_checksum(h.big_endian(), p, 24, ck);
  if (!(ck == h.checksum)) return fail("WAL header checksum mismatch");
  return h;
}

WalHeader encode_wal_header(unsigned char* out, std::uint32_t page_size, std::uint32_t salt1,
                            std::uint32_t salt2, bool big_endian, std::uint32_t checkpoint_seq) {
  WalHeader h;
  h.magic = big_endian ? kWalMagicBe : kWalMagicLe;
  h.page_size = page_size;
  h.checkpoint_seq = checkpoint_seq;
  h.salt1 = salt1;
  h.salt2 = salt2;
  put_be32(out, h.magic);
  put_be32(out + 4, h.version);
  put_be32(out + 8, page_size);
  put_be32(out + 12, checkpoint_seq);
  put_be32(out + 16, salt1);
  put_be32(out + 20, salt2);
  wal_checksum(big_endian, out, 24, h.checksum);
  put_be32(out + 24, h.checksum.s0);
  put_be32(out + 28, h.checksum.s1);
  return h;
}

FrameHeader parse_frame_header(const unsigned char* p) {
  FrameHeader f;
  f.page = get_be32(p);
  f.commit_size = get_be32(p + 4);
  f.salt1 = get_be32(p + 8);
  f.salt2 = get_be32(p + 12);
  f.checksum = {get_be32(p + 16), get_be32(p + 20)};
  return f;
}

ChainState chain_start(const WalHeader& h) {
  ChainState st;
  st.salt1 = h.salt1;
  st.salt2 = h.salt2;
  st.big_endian = h.big_endian();
  st.page_size = h.page_size;
  st.frames = 0;
  st.checksum = h.checksum;
  return st;
}

FrameVerdict check_frame(const unsigned char* frame, ChainState& st, FrameHeader* out) {
  FrameHeader f = parse_frame_header(frame);
  if (f.salt1 != st.salt1 || f.salt2 != st.salt2) return FrameVerdict::stale_salt;
  if (f.page == 0) return FrameVerdict::bad_page_number;
  Checksum ck = st.checksum;
  wal_checksum(st.big_endian, frame, 8, ck);
  wal_checksum(st.big_endian, frame + kFrameHeaderSize, st.page_size, ck);
  if (!(ck == f.checksum)) return FrameVerdict::bad_checksum;
  st.checksum = ck;
  st.frames += 1;
  if (out) *out = f;
  return FrameVerdict::ok;
}

ScanResult scan_frames(const unsigned char* buf, std::size_t n, const ChainState& from,
                       std::uint32_t max_frames) {
  ScanResult r;
  r.committed = from;
  r.tail = from;
  ChainState cur = from;
  const std::size_t fs = frame_size(from.page_size);
  for (std::size_t off = 0; off + fs <= n; off += fs) {
    if (max_frames != 0 && cur.frames >= max_frames) break;
    FrameHeader fh;
    FrameVerdict v = check_frame(buf + off, cur, &fh);
    if (v != FrameVerdict::ok) {
      r.stop = v;
      break;
    }
    r.valid_frames += 1;
    r.tail = cur;
    if (fh.is_commit()) {
      r.committed = cur;
      r.commit_size = fh.commit_size;
      r.transactions += 1;
    }
  }
  return r;
}

}  // namespace drd::replication
