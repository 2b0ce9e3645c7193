#pragma once
// The SQLite write-ahead-log format (src/wal.c), as pure functions over
// byte buffers: no I/O here, so every rule is unit-tested on hand-built data.
//
//   WAL header, 32 bytes, all fields big-endian:
//     0 magic 0x377f0682 | 0x377f0683 (low bit set: checksum words are big-endian)
//     4 format version 3007000    8 page size    12 checkpoint sequence
//    16 salt-1   20 salt-2   24 checksum-1   28 checksum-2 (over bytes 0..23)
//   Frame = 24-byte frame header + one page:
//     0 page number   4 db size in pages after commit (non-zero only on a commit frame)
//     8 salt-1  12 salt-2 (must equal the header's)  16 checksum-1  20 checksum-2
//   The checksum is cumulative: header, then for every frame its first 8
//   header bytes and its page, `s0 += x[i] + s1; s1 += x[i+1] + s0` over
//   32-bit words read in the byte order the magic selects.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

namespace drd::replication {

inline constexpr std::uint32_t kWalMagicLe = 0x377f0682;  // little-endian checksum words
inline constexpr std::uint32_t kWalMagicBe = 0x377f0683;  // big-endian checksum words
inline constexpr std::uint32_t kWalVersion = 3007000;
inline constexpr std::size_t kWalHeaderSize = 32;
inline constexpr std::size_t kFrameHeaderSize = 24;

std::uint32_t get_be32(const unsigned char* p);
void put_be32(unsigned char* p, std::uint32_t v);

// The running checksum pair.
struct Checksum {
  std::uint32_t s0 = 0, s1 = 0;
  bool operator==(const Checksum&) const = default;
};

// Folds `n` bytes (a multiple of 8) into `ck`.
void wal_checksum(bool big_endian_words, const unsigned char* data, std::size_t n, Checksum& ck);

struct WalHeader {
  std::uint32_t magic = kWalMagicBe;
  std::uint32_t version = kWalVersion;
  std::uint32_t page_size = 0;
  std::uint32_t checkpoint_seq = 0;
  std::uint32_t salt1 = 0, salt2 = 0;
  Checksum checksum;  // as stored (parse) / as computed (encode)
  bool big_endian() const { return (magic & 1u) != 0; }
};

// Parses and validates a 32-byte header the way SQLite's recovery does.
// nullopt + reason when the magic, version, page size or checksum is wrong.
std::optional<WalHeader> parse_wal_header(const unsigned char* p, std::string* why = nullptr);
// Writes a header (checksum computed from the other fields) and returns it.
WalHeader encode_wal_header(unsigned char* out, std::uint32_t page_size, std::uint32_t salt1,
                            std::uint32_t salt2, bool big_endian, std::uint32_t checkpoint_seq = 0);

struct FrameHeader {
  std::uint32_t page = 0;
  std::uint32_t commit_size = 0;  // db size in pages; 0 unless a commit frame
  std::uint32_t salt1 = 0, salt2 = 0;
  Checksum checksum;
  bool is_commit() const { return commit_size != 0; }
};

FrameHeader parse_frame_header(const unsigned char* p);

// A position in one WAL generation: just after `frames` valid frames, with the
// cumulative checksum there (the header's checksum when frames == 0).
struct ChainState {
  std::uint32_t salt1 = 0, salt2 = 0;
  bool big_endian = true;
  std::uint32_t page_size = 0;
  std::uint32_t frames = 0;
  Checksum checksum;
};

ChainState chain_start(const WalHeader& h);

// Checks one frame (header + page_size bytes) against the chain; on success
// advances `st` past it. Invalid frames leave `st` untouched: salts differ
// from the generation's, page number 0, or the checksum breaks the chain.
enum class FrameVerdict { ok, stale_salt, bad_page_number, bad_checksum };
FrameVerdict check_frame(const unsigned char* frame, ChainState& st, FrameHeader* out = nullptr);

// Result of scanning a run of consecutive frames.
struct ScanResult {
  ChainState committed;          // state after the last commit frame (or the start)
  ChainState tail;               // state after the last valid frame (may be mid-transaction)
  std::uint32_t commit_size = 0; // db pages after that commit (0: none found)
  std::uint32_t valid_frames = 0;// frames that passed, including an uncommitted tail
  std::size_t transactions = 0;  // commit frames found
  FrameVerdict stop = FrameVerdict::ok;  // why the scan stopped early (ok: ran out of data)
};

// Scans `n` bytes of whole frames starting at chain state `from`, stopping at
// the first invalid frame. Only whole transactions count: `committed` ends at
// the last commit frame, never inside a transaction. `max_frames` (0: none)
// stops after that many frames in the generation.
ScanResult scan_frames(const unsigned char* buf, std::size_t n, const ChainState& from,
                       std::uint32_t max_frames = 0);

inline std::uint64_t frame_size(std::uint32_t page_size) { return kFrameHeaderSize + page_size; }
inline std::uint64_t frame_offset(std::uint32_t index, std::uint32_t page_size) {
  return kWalHeaderSize + std::uint64_t(index) * frame_size(page_size);
}

}  // namespace drd::replication
