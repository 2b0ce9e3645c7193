// WAL format rules over hand-built buffers: header parsing, the cumulative
// checksum in both word orders, frame validation and commit boundaries.
#include <catch2/catch.hpp>

#include <vector>

#include "daemon/engines/sqlite/replication/wal_format.hpp"

using namespace drd::replication;

namespace {

constexpr std::uint32_t kPage = 512;

struct Built {
  std::vector<unsigned char> header = std::vector<unsigned char>(kWalHeaderSize);
  std::vector<unsigned char> frames;
  WalHeader h;
  Checksum ck;
};

// Builds a WAL image by hand (independently of the replicator's writer):
// commits[i] != 0 makes frame i a commit frame with that db size.
Built build(bool big_endian, const std::vector<std::uint32_t>& commits, std::uint32_t salt1 = 7,
            std::uint32_t salt2 = 9) {
  Built b;
  b.h = encode_wal_header(b.header.data(), kPage, salt1, salt2, big_endian);
  b.ck = b.h.checksum;
  for (std::size_t i = 0; i < commits.size(); ++i) {
    std::vector<unsigned char> f(kFrameHeaderSize + kPage);
    for (std::uint32_t j = 0; j < kPage; ++j) f[kFrameHeaderSize + j] = static_cast<unsigned char>(i * 31 + j);
    put_be32(f.data(), static_cast<std::uint32_t>(i + 1));
    put_be32(f.data() + 4, commits[i]);
    put_be32(f.data() + 8, salt1);
    put_be32(f.data() + 12, salt2);
    wal_checksum(big_endian, f.data(), 8, b.ck);
    wal_checksum(big_endian, f.data() + kFrameHeaderSize, kPage, b.ck);
    put_be32(f.data() + 16, b.ck.s0);
    put_be32(f.data() + 20, b.ck.s1);
    b.frames.insert(b.frames.end(), f.begin(), f.end());
  }
  return b;
}

}  // namespace

TEST_CASE("checksum follows the documented recurrence in both word orders", "[wal]") {
  // words (BE): 1,2 then 3,4
  const unsigned char data[16] = {0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4};
  Checksum be;
  wal_checksum(true, data, 16, be);
  // s0=1, s1=2+1=3; s0=1+3+3=7, s1=3+4+7=14
  CHECK(be.s0 == 7);
  CHECK(be.s1 == 14);
  Checksum le;
  wal_checksum(false, data, 16, le);
  // LE words: 0x01000000, 0x02000000, 0x03000000, 0x04000000
  std::uint32_t s0 = 0x01000000u, s1 = 0x02000000u + s0;
  s0 += 0x03000000u + s1;
  s1 += 0x04000000u + s0;
  CHECK(le.s0 == s0);
  CHECK(le.s1 == s1);
}

TEST_CASE("WAL header parsing and validation", "[wal]") {
  for (bool be : {true, false}) {
    auto b = build(be, {});
    std::string why;
    auto h = parse_wal_header(b.header.data(), &why);
    REQUIRE(h.has_value());
    CHECK(h->magic == (be ? 0x377f0683u : 0x377f0682u));
    CHECK(h->big_endian() == be);
    CHECK(h->page_size == kPage);
    CHECK(h->salt1 == 7);
    CHECK(h->salt2 == 9);
    CHECK(h->version == 3007000u);
  }
  struct Case {
    const char* name;
    std::size_t offset;
    std::uint32_t value;
    const char* why;
  };
  const Case bad[] = {
      {"magic", 0, 0x12345678, "magic"},
      {"version", 4, 3007001, "version"},
      {"page size not a power of two", 8, 1000, "page size"},
      {"page size too small", 8, 256, "page size"},
      {"salt changed after checksum", 16, 8, "checksum"},
  };
  for (const auto& c : bad) {
    INFO(c.name);
    auto b = build(true, {});
    put_be32(b.header.data() + c.offset, c.value);
    std::string why;
    CHECK_FALSE(parse_wal_header(b.header.data(), &why).has_value());
    CHECK(why.find(c.why) != std::string::npos);
  }
}

TEST_CASE("frames verify against the chain, stale salts, page 0 and bad checksums are rejected", "[wal]") {
  for (bool be : {true, false}) {
    INFO("big endian " << be);
    auto b = build(be, {0, 3});
    ChainState st = chain_start(*parse_wal_header(b.header.data()));
    FrameHeader fh;
    REQUIRE(check_frame(b.frames.data(), st, &fh) == FrameVerdict::ok);
    CHECK(fh.page == 1);
    CHECK_FALSE(fh.is_commit());
    CHECK(st.frames == 1);

    auto stale = b.frames;
    put_be32(stale.data() + kFrameHeaderSize + kPage + 8, 6);  // frame 2 carries an older salt-1
    ChainState s2 = st;
    CHECK(check_frame(stale.data() + kFrameHeaderSize + kPage, s2) == FrameVerdict::stale_salt);
    CHECK(s2.frames == 1);  // untouched

    auto flipped = b.frames;
    flipped[kFrameHeaderSize + kPage + kFrameHeaderSize + 100] ^= 0x40;  // one bit of frame 2's page
    s2 = st;
    CHECK(check_frame(flipped.data() + kFrameHeaderSize + kPage, s2) == FrameVerdict::bad_checksum);

    auto zero = b.frames;
    put_be32(zero.data() + kFrameHeaderSize + kPage, 0);
    s2 = st;
    CHECK(check_frame(zero.data() + kFrameHeaderSize + kPage, s2) == FrameVerdict::bad_page_number);
  }
}

TEST_CASE("scan_frames ships whole transactions only", "[wal]") {
  struct Case {
    const char* name;
    std::vector<std::uint32_t> commits;
    std::uint32_t max_frames;
    std::uint32_t committed;
    std::uint32_t valid;
    std::size_t transactions;
  };
  const Case cases[] = {
      {"empty", {}, 0, 0, 0, 0},
      {"one uncommitted frame", {0}, 0, 0, 1, 0},
      {"single commit", {2}, 0, 1, 1, 1},
      {"commit then open transaction", {0, 2, 0, 0}, 0, 2, 4, 1},
      {"two transactions", {0, 2, 0, 5}, 0, 4, 4, 2},
      {"limit inside second transaction", {0, 2, 0, 5}, 3, 2, 3, 1},
  };
  for (bool be : {true, false}) {
    for (const auto& c : cases) {
      INFO(c.name << " big endian " << be);
      auto b = build(be, c.commits);
      ChainState st = chain_start(*parse_wal_header(b.header.data()));
      auto r = scan_frames(b.frames.data(), b.frames.size(), st, c.max_frames);
      CHECK(r.committed.frames == c.committed);
      CHECK(r.valid_frames == c.valid);
      CHECK(r.transactions == c.transactions);
      if (c.transactions > 0) CHECK(r.commit_size == c.commits[c.committed - 1]);
    }
  }
}

TEST_CASE("a bad frame stops the scan at the previous commit", "[wal]") {
  auto b = build(true, {0, 2, 0, 4, 0, 6});
  ChainState st = chain_start(*parse_wal_header(b.header.data()));
  const std::size_t fs = kFrameHeaderSize + kPage;
  SECTION("bad checksum in the middle of the second transaction") {
    b.frames[2 * fs + kFrameHeaderSize] ^= 1;
    auto r = scan_frames(b.frames.data(), b.frames.size(), st);
    CHECK(r.committed.frames == 2);
    CHECK(r.stop == FrameVerdict::bad_checksum);
  }
  SECTION("stale salt on the commit frame of the third transaction") {
    put_be32(b.frames.data() + 5 * fs + 12, 1234);
    auto r = scan_frames(b.frames.data(), b.frames.size(), st);
    CHECK(r.committed.frames == 4);
    CHECK(r.stop == FrameVerdict::stale_salt);
  }
  SECTION("resuming from a commit state continues the chain") {
    auto first = scan_frames(b.frames.data(), 2 * fs, st);
    REQUIRE(first.committed.frames == 2);
    auto rest = scan_frames(b.frames.data() + 2 * fs, b.frames.size() - 2 * fs, first.committed);
    CHECK(rest.committed.frames == 6);
    CHECK(rest.transactions == 2);
  }
}
