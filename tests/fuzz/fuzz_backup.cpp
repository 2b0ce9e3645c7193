// libFuzzer target: the backup reader (DRDBK1 container + zstd, daemon/backup/container.hpp,
// stream.hpp) and the SQLite restore built on it (sqlite_backup.hpp).
//
// Input: byte 0 picks a mode, the rest is the material.
//   0/1  the bytes ARE the backup file, read without / with the fixed test key;
//   2/3  the bytes are the compressed payload, sealed into an authentic container (unencrypted /
//        encrypted) so the zstd decoder and what follows it see fuzzer-chosen data — random bytes
//        cannot pass the chunk authentication otherwise;
//   4    the bytes are the database image, written through the whole pipeline (zstd + AES-GCM).
// Checked:
//   - nothing crashes, hangs or leaks, and every failure is an Error with a message naming the file;
//   - an authentic container always opens (modes 2/3), and what reaches the sink is what the
//     reader counts as plaintext;
//   - never write output: a failed restore leaves nothing behind: no target, no `.restore-tmp`, no -wal/-shm;
//   - mode 4: reading back returns exactly the bytes written (round trip), with matching SHA-256.
#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "daemon/backup/container.hpp"
#include "daemon/backup/key.hpp"
#include "daemon/backup/sqlite_backup.hpp"
#include "daemon/backup/stream.hpp"
#include "tests/fuzz/fuzz_check.hpp"

namespace fs = std::filesystem;
using namespace drd::backup;

namespace {

// The fixed test key: 32 bytes of 0x42. The seed corpus's encrypted backup uses it too
// (tests/fuzz/make_seeds.cpp).
const MasterKey& test_key() {
  static const MasterKey k([] {
    std::array<std::uint8_t, 32> b;
    b.fill(0x42);
    return b;
  }());
  return k;
}

// A private scratch folder for the whole run, emptied before every input.
const fs::path& scratch() {
  static const fs::path dir = [] {
    std::string tmpl = (fs::temp_directory_path() / "drd-fuzz-backup-XXXXXX").string();
    FUZZ_CHECK(::mkdtemp(tmpl.data()) != nullptr, "mkdtemp failed");
    return fs::path(tmpl);
  }();
  return dir;
}

void empty_scratch() {
  for (auto& e : fs::directory_iterator(scratch())) fs::remove_all(e.path());
}

std::vector<std::string> scratch_listing() {
  std::vector<std::string> names;
  for (auto& e : fs::directory_iterator(scratch())) names.push_back(e.path().filename().string());
  return names;
}

void write_file(const fs::path& p, const std::uint8_t* d, std::size_t n) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(d), static_cast<std::streamsize>(n));
  FUZZ_CHECK(f.good(), "cannot write " + p.string());
}

// Seals `payload` as the chunks of an authentic container (no compression added).
void write_container(const fs::path& p, const std::uint8_t* d, std::size_t n, const MasterKey* key,
                     std::size_t chunk) {
  auto out = open_output_file(p);
  FUZZ_CHECK(out.ok(), "open_output_file failed");
  ContainerWriter w(*out.value(), key, chunk);
  FUZZ_CHECK(w.write(d, n).ok() && w.finish().ok() && out.value()->close().ok(), "ContainerWriter failed");
}

// Reads `file` and checks the no-output-before-authentication rules.
void check_read(const fs::path& file, const MasterKey* key, bool authentic) {
  std::uint64_t sunk = 0;
  auto sink = [&](const std::uint8_t*, std::size_t n) {
    sunk += n;
    return drd::ok_status();
  };
  auto opened = BackupReader::open(file, key);
  if (!opened) {
    FUZZ_CHECK(!opened.error().message.empty(), "open failed without a message");
    FUZZ_CHECK(opened.error().message.find(file.string()) != std::string::npos,
               "open error does not name the file: " + opened.error().message);
    FUZZ_CHECK(!authentic, "an authentic container failed to open: " + opened.error().message);
    return;
  }
  auto rs = opened.value()->read_all(sink);
  if (rs) {
    FUZZ_CHECK(rs->plaintext_bytes == sunk, "plaintext_bytes differs from what reached the sink");
  } else {
    FUZZ_CHECK(!rs.error().message.empty(), "read failed without a message");
    FUZZ_CHECK(rs.error().message.find(file.string()) != std::string::npos,
               "read error does not name the file: " + rs.error().message);
  }
}

// Restores `file` into the scratch folder; a failure must leave only the backup file there.
void check_restore(const fs::path& file, const MasterKey* key) {
  BackupRef ref;
  ref.data = file;
  RestoreOptions opts;
  opts.key = key;
  const fs::path target = scratch() / "restored.db";
  auto r = restore_sqlite(ref, target, opts);
  if (r) {
    FUZZ_CHECK(fs::exists(target), "restore reported success without a target file");
    return;
  }
  FUZZ_CHECK(!r.error().message.empty(), "restore failed without a message");
  auto left = scratch_listing();
  std::string names;
  for (auto& n : left) names += n + " ";
  FUZZ_CHECK(left.size() == 1 && left[0] == file.filename().string(),
             "a failed restore left files behind: " + names + "(" + r.error().message + ")");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1 || size > (1u << 20)) return -1;
  const int mode = data[0] % 5;
  const std::uint8_t* d = data + 1;
  const std::size_t n = size - 1;
  empty_scratch();
  const fs::path file = scratch() / "fuzz.drdbk";
  const MasterKey* key = (mode == 1 || mode == 3 || mode == 4) ? &test_key() : nullptr;

  switch (mode) {
    case 0:
    case 1:
      write_file(file, d, n);
      check_read(file, key, false);
      break;
    case 2:
    case 3:
      // Small chunks (from the first material byte) so multi-chunk streams are exercised too.
      write_container(file, d, n, key, 1 + (n ? d[0] : 0) * 64);
      check_read(file, key, true);
      break;
    case 4: {
      PipelineOptions opts;
      opts.level = 1;
      opts.threads = 1;
      opts.key = key;
      opts.chunk_size = 4096;
      auto w = BackupWriter::create(file, opts);
      FUZZ_CHECK(w.ok(), "BackupWriter::create failed");
      FUZZ_CHECK(w.value()->write(d, n).ok(), "BackupWriter::write failed");
      auto st = w.value()->commit();
      FUZZ_CHECK(st.ok(), "commit failed");
      std::vector<std::uint8_t> back;
      auto rs = read_backup(file, key, [&](const std::uint8_t* p, std::size_t k) {
        back.insert(back.end(), p, p + k);
        return drd::ok_status();
      });
      FUZZ_CHECK(rs.ok(), "a freshly written backup does not read back: " + rs.error().message);
      FUZZ_CHECK(back.size() == n && std::equal(back.begin(), back.end(), d), "round trip changed the bytes");
      FUZZ_CHECK(rs->plaintext_sha256 == st->plaintext_sha256 && rs->file_sha256 == st->file_sha256,
                 "checksums differ after a round trip");
      // And the wrong key (none) must fail before any output.
      std::uint64_t sunk = 0;
      auto nokey = read_backup(file, nullptr, [&](const std::uint8_t*, std::size_t k) {
        sunk += k;
        return drd::ok_status();
      });
      FUZZ_CHECK(!nokey.ok() && sunk == 0, "an encrypted backup was read without its key");
      break;
    }
  }
  check_restore(file, key);
  return 0;
}
