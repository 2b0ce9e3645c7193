// libFuzzer target: the SQLite WAL reader (daemon/engines/sqlite/replication/wal_reader.hpp and the pure
// parsers of wal_format.hpp) on arbitrary bytes presented as a `-wal` file.
//
// Input: byte 0 holds flags, the rest is the file. Random bytes almost never carry a valid
// checksum, so the flags let the fuzzer reach the interesting paths: bit 0 re-seals the
// header checksum, bit 1 re-seals the checksum chain of every frame whose salts match
// (page numbers, commit sizes, salts and page bytes stay as the fuzzer chose them), bits 2-7
// pick a frame limit for scan(). Mutating a sealed input then breaks the chain at that point.
//
// Oracle: an independent, deliberately naive re-implementation of SQLite's rules (below,
// sharing no code with wal_format.cpp). Checked: the file reader and the buffer parser agree
// with it on the header verdict, the number of valid frames, the last commit and its db size;
// read_frames hands out exactly the committed frames, byte for byte, and fails — never handing
// out the bad frame — when asked to read past the first frame that does not verify.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "daemon/engines/sqlite/replication/wal_format.hpp"
#include "daemon/engines/sqlite/replication/wal_reader.hpp"
#include "tests/fuzz/fuzz_check.hpp"

using namespace drd::replication;

namespace {

std::uint32_t be32(const std::uint8_t* p) { return (p[0] << 24u) | (p[1] << 16u) | (p[2] << 8u) | p[3]; }
std::uint32_t le32(const std::uint8_t* p) { return p[0] | (p[1] << 8u) | (p[2] << 16u) | (std::uint32_t(p[3]) << 24u); }
void wbe32(std::uint8_t* p, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<std::uint8_t>(v >> (24 - 8 * i));
}

// SQLite's walChecksumBytes, written out again from the file-format documentation.
void ref_checksum(bool be, const std::uint8_t* d, std::size_t n, std::uint32_t& s0, std::uint32_t& s1) {
  for (std::size_t i = 0; i + 8 <= n; i += 8) {
    s0 += (be ? be32(d + i) : le32(d + i)) + s1;
    s1 += (be ? be32(d + i + 4) : le32(d + i + 4)) + s0;
  }
}

struct RefResult {
  bool header_ok = false;
  std::uint32_t page_size = 0;
  std::uint32_t valid = 0;         // valid frames, uncommitted tail included
  std::uint32_t committed = 0;     // frames up to and including the last commit frame
  std::uint32_t commit_size = 0;
  std::size_t transactions = 0;
};

bool ref_page_size_ok(std::uint32_t ps) {
  for (std::uint32_t p = 512; p <= 65536; p *= 2)
    if (ps == p) return true;
  return false;
}

// Optionally re-seals checksums (in place) and evaluates the file.
RefResult ref_evaluate(std::vector<std::uint8_t>& f, bool seal_header, bool seal_frames, std::uint32_t limit) {
  RefResult r;
  if (f.size() < 32) return r;
  const std::uint32_t magic = be32(f.data());
  if (magic != 0x377f0682 && magic != 0x377f0683) return r;
  const bool be = magic & 1;
  if (be32(f.data() + 4) != 3007000) return r;
  r.page_size = be32(f.data() + 8);
  if (!ref_page_size_ok(r.page_size)) return r;
  std::uint32_t s0 = 0, s1 = 0;
  ref_checksum(be, f.data(), 24, s0, s1);
  if (seal_header) {
    wbe32(f.data() + 24, s0);
    wbe32(f.data() + 28, s1);
  }
  if (be32(f.data() + 24) != s0 || be32(f.data() + 28) != s1) return r;
  r.header_ok = true;
  const std::uint32_t salt1 = be32(f.data() + 16), salt2 = be32(f.data() + 20);
  const std::size_t fs = 24 + std::size_t(r.page_size);
  for (std::size_t off = 32; off + fs <= f.size(); off += fs) {
    if (limit && r.valid >= limit) break;
    std::uint8_t* fr = f.data() + off;
    if (be32(fr + 8) != salt1 || be32(fr + 12) != salt2) break;
    if (be32(fr) == 0) break;
    std::uint32_t t0 = s0, t1 = s1;
    ref_checksum(be, fr, 8, t0, t1);
    ref_checksum(be, fr + 24, r.page_size, t0, t1);
    if (seal_frames) {
      wbe32(fr + 16, t0);
      wbe32(fr + 20, t1);
    }
    if (be32(fr + 16) != t0 || be32(fr + 20) != t1) break;
    s0 = t0;
    s1 = t1;
    ++r.valid;
    if (be32(fr + 4) != 0) {
      r.committed = r.valid;
      r.commit_size = be32(fr + 4);
      ++r.transactions;
    }
  }
  return r;
}

// One memfd for the whole run, rewritten per input: no file system traffic.
int wal_fd() {
  static int fd = ::memfd_create("fuzz-wal", MFD_CLOEXEC);
  FUZZ_CHECK(fd >= 0, "memfd_create failed");
  return fd;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1 || size > (1u << 20)) return -1;
  const std::uint8_t flags = data[0];
  std::vector<std::uint8_t> file(data + 1, data + size);
  const std::uint32_t limit = flags >> 2;  // 0 = no limit
  const RefResult ref = ref_evaluate(file, flags & 1, flags & 2, 0);
  const RefResult ref_lim = ref_evaluate(file, false, false, limit);

  const int fd = wal_fd();
  FUZZ_CHECK(::ftruncate(fd, 0) == 0, "ftruncate failed");
  FUZZ_CHECK(::pwrite(fd, file.data(), file.size(), 0) == static_cast<ssize_t>(file.size()), "pwrite failed");
  auto wal = WalFile::open("/proc/self/fd/" + std::to_string(fd));
  FUZZ_CHECK(wal.ok(), "cannot open the memfd as a WAL file");

  std::string why;
  auto hdr = wal->read_header(&why);
  FUZZ_CHECK(hdr.ok(), "read_header failed on a readable file: " + hdr.error().message);
  FUZZ_CHECK(hdr->has_value() == ref.header_ok, "header verdict differs from the reference (" + why + ")");
  if (file.size() >= kWalHeaderSize) {
    auto pure = parse_wal_header(file.data());
    FUZZ_CHECK(pure.has_value() == ref.header_ok, "parse_wal_header differs from the reference");
  }
  if (!ref.header_ok) {
    FUZZ_CHECK(!why.empty(), "rejected header without a reason");
    return 0;
  }
  const WalHeader& h = **hdr;
  FUZZ_CHECK(h.page_size == ref.page_size, "page size differs");
  const ChainState start = chain_start(h);

  // The file reader, unlimited and limited.
  auto scan = wal->scan(start);
  FUZZ_CHECK(scan.ok(), "scan failed: " + scan.error().message);
  FUZZ_CHECK(scan->valid_frames == ref.valid, "scan: valid frames " + std::to_string(scan->valid_frames) +
                                                  " but the reference says " + std::to_string(ref.valid));
  FUZZ_CHECK(scan->committed.frames == ref.committed, "scan: committed frames differ from the reference");
  FUZZ_CHECK(scan->tail.frames == ref.valid, "scan: tail differs from the reference");
  FUZZ_CHECK(scan->commit_size == ref.commit_size, "scan: commit size differs from the reference");
  FUZZ_CHECK(scan->transactions == ref.transactions, "scan: transaction count differs from the reference");
  auto lim = wal->scan(start, limit);
  FUZZ_CHECK(lim.ok(), "limited scan failed");
  FUZZ_CHECK(lim->valid_frames == ref_lim.valid && lim->committed.frames == ref_lim.committed,
             "limited scan differs from the reference");

  // The pure parser over the same bytes agrees with the file reader.
  const std::size_t body = file.size() - kWalHeaderSize;
  const std::size_t fs = frame_size(h.page_size);
  ScanResult pure = scan_frames(file.data() + kWalHeaderSize, body - body % fs, start);
  FUZZ_CHECK(pure.valid_frames == ref.valid && pure.committed.frames == ref.committed &&
                 pure.committed.checksum == scan->committed.checksum,
             "scan_frames differs from WalFile::scan");

  // read_frames hands out exactly the committed frames, in order, byte for byte.
  std::uint32_t seen = 0;
  auto sink = [&](const FrameHeader& fh, const unsigned char* page) -> drd::Status {
    FUZZ_CHECK(seen < ref.valid, "read_frames handed out a frame past an invalid one");
    const std::uint8_t* expect = file.data() + kWalHeaderSize + std::size_t(seen) * fs;
    FUZZ_CHECK(fh.page == be32(expect), "frame page number differs");
    FUZZ_CHECK(std::memcmp(page, expect + kFrameHeaderSize, h.page_size) == 0, "frame page bytes differ");
    ++seen;
    return drd::ok_status();
  };
  auto rd = wal->read_frames(start, scan->committed.frames, sink);
  FUZZ_CHECK(rd.ok(), "read_frames of the committed frames failed: " + rd.error().message);
  FUZZ_CHECK(seen == ref.committed, "read_frames handed out the wrong number of frames");

  // Asked to read one frame beyond the valid ones, it must refuse, naming the frame, after
  // handing out only the valid ones.
  seen = 0;
  auto past = wal->read_frames(start, ref.valid + 1, sink);
  FUZZ_CHECK(!past.ok(), "read_frames read past the last valid frame");
  // (It may also refuse before handing out anything, e.g. when the file is too short.)
  FUZZ_CHECK(seen <= ref.valid, "read_frames handed out too many frames before failing");
  FUZZ_CHECK(past.error().message.find(std::to_string(ref.valid)) != std::string::npos,
             "the error does not name the frame: " + past.error().message);
  return 0;
}
