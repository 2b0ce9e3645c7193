// DRDBK1 container and pipeline on real files: round trips, tamper detection, keys, disk full.
#include <sys/mount.h>
#include <sys/stat.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstring>

#include "daemon/backup/container.hpp"
#include "daemon/backup/stream.hpp"
#include "tests/backup/helpers.hpp"
#include "tests/support/temp_dir.hpp"

using namespace drd;
using namespace drd::backup;
using namespace drd::backup::test;
using drd::test::TempDir;
namespace fs = std::filesystem;

TEST_CASE("pipeline round trips any size, encrypted or not", "[container]") {
  TempDir dir("drd-bk");
  MasterKey key = test_key();
  for (bool enc : {false, true}) {
    for (std::size_t n : {std::size_t(0), std::size_t(1), std::size_t(4096), std::size_t(65536), std::size_t(700'000)}) {
      auto data = random_bytes(n, static_cast<unsigned>(n));
      // half compressible so several chunk sizes are exercised
      for (std::size_t i = 0; i < n / 2; ++i) data[i] = static_cast<std::uint8_t>(i % 7);
      auto path = dir / ("b" + std::to_string(n) + (enc ? "e" : "p"));
      auto st = make_backup(path, data, enc ? &key : nullptr, 4096);
      CHECK(st.source_bytes == n);
      CHECK(st.size_bytes == fs::file_size(path));
      CHECK_FALSE(fs::exists(path.string() + ".partial"));
      auto back = read_all_bytes(path, enc ? &key : nullptr);
      INFO((back.ok() ? "" : back.error().message));
      INFO((back.ok() ? "" : back.error().message));
  REQUIRE(back.ok());
      CHECK(back.value() == data);
      ReadStats rs = read_backup(path, enc ? &key : nullptr, [](auto, auto) { return ok_status(); }).value();
      CHECK(rs.plaintext_sha256 == st.plaintext_sha256);
      CHECK(rs.file_sha256 == st.file_sha256);
      CHECK(rs.file_sha256 == sha256_hex_of_file(path));
      CHECK(rs.chunks == st.chunks);
      CHECK(rs.encrypted == enc);
    }
  }
}

TEST_CASE("multi-threaded zstd produces a readable file", "[container]") {
  TempDir dir("drd-bk");
  std::vector<std::uint8_t> data(6 << 20);
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<std::uint8_t>((i * 31) ^ (i >> 12));
  PipelineOptions o;
  o.threads = 2;
  o.level = 5;
  auto w = BackupWriter::create(dir / "mt", o);
  REQUIRE(w.ok());
  for (std::size_t off = 0; off < data.size(); off += 100'000)
    REQUIRE(w.value()->write(data.data() + off, std::min<std::size_t>(100'000, data.size() - off)).ok());
  REQUIRE(w.value()->commit().ok());
  auto back = read_all_bytes(dir / "mt", nullptr);
  INFO((back.ok() ? "" : back.error().message));
  REQUIRE(back.ok());
  CHECK(back.value() == data);
}

TEST_CASE("an encrypted file holds no plaintext", "[container]") {
  TempDir dir("drd-bk");
  MasterKey key = test_key();
  const std::string marker = "MARKER-7f3a-https://img.example/cat.jpg";
  auto data = random_bytes(200'000, 3);
  std::memcpy(data.data() + 1000, marker.data(), marker.size());
  make_backup(dir / "plain", data, nullptr, 4096, 1);
  make_backup(dir / "enc", data, &key, 4096, 1);
  auto has_marker = [&](const fs::path& p) {
    auto b = slurp(p);
    return std::search(b.begin(), b.end(), marker.begin(), marker.end()) != b.end();
  };
  CHECK(has_marker(dir / "plain"));  // the check can see it when it is there
  CHECK_FALSE(has_marker(dir / "enc"));
}

namespace {
std::string read_error(const fs::path& p, const MasterKey* key) {
  auto r = read_all_bytes(p, key);
  return r.ok() ? std::string() : r.error().message;
}
}  // namespace

TEST_CASE("every flipped byte and every truncation is detected", "[container]") {
  TempDir dir("drd-bk");
  MasterKey key = test_key();
  auto data = random_bytes(3000, 9);
  for (bool enc : {false, true}) {
    auto path = dir / (enc ? "enc" : "plain");
    make_backup(path, data, enc ? &key : nullptr, 512);
    auto good = slurp(path);
    REQUIRE(good.size() > 3000);
    auto bad = dir / "bad";
    for (std::size_t i = 0; i < good.size(); ++i) {
      auto b = good;
      b[i] ^= 0x20;
      spit(bad, b);
      INFO("flipped byte " << i << (enc ? " (encrypted)" : " (plain)"));
      CHECK_FALSE(read_error(bad, enc ? &key : nullptr).empty());
    }
    for (std::size_t len = 0; len < good.size(); ++len) {
      spit(bad, std::vector<std::uint8_t>(good.begin(), good.begin() + static_cast<long>(len)));
      INFO("truncated to " << len);
      CHECK_FALSE(read_error(bad, enc ? &key : nullptr).empty());
    }
    // appended garbage is caught too
    auto longer = good;
    longer.push_back(0);
    spit(bad, longer);
    CHECK_FALSE(read_error(bad, enc ? &key : nullptr).empty());
  }
}

TEST_CASE("errors name the chunk: altered, reordered, dropped", "[container]") {
  TempDir dir("drd-bk");
  MasterKey key = test_key();
  auto data = random_bytes(5000, 11);  // incompressible: chunks of exactly 512 bytes
  auto path = dir / "b";
  make_backup(path, data, &key, 512);
  auto good = slurp(path);
  const std::size_t header = 80, frame = 4 + 12 + 512 + 16;
  REQUIRE(good.size() > header + 5 * frame);

  auto b = good;
  b[header + 3 * frame + 100] ^= 1;
  spit(dir / "x", b);
  CHECK_THAT(read_error(dir / "x", &key), Catch::Contains("chunk 3 failed authentication"));

  b = good;  // swap chunks 1 and 2
  std::swap_ranges(b.begin() + header + frame, b.begin() + header + 2 * frame, b.begin() + header + 2 * frame);
  spit(dir / "x", b);
  CHECK_THAT(read_error(dir / "x", &key), Catch::Contains("chunk 1 failed authentication"));

  b.assign(good.begin(), good.begin() + header + 6 * frame);  // cut at a chunk boundary
  spit(dir / "x", b);
  CHECK_THAT(read_error(dir / "x", &key), Catch::Contains("file ends after chunk 5 without the final chunk"));

  b.assign(good.begin(), good.begin() + header + 2 * frame + 7);
  spit(dir / "x", b);
  CHECK_THAT(read_error(dir / "x", &key), Catch::Contains("file ends inside chunk 2"));
}

TEST_CASE("wrong or missing key is refused before any output", "[container][key]") {
  TempDir dir("drd-bk");
  MasterKey key = test_key(1), other = test_key(2);
  make_backup(dir / "b", random_bytes(10000), &key);
  bool wrote = false;
  auto r = read_backup(dir / "b", &other, [&](auto, auto) {
    wrote = true;
    return ok_status();
  });
  REQUIRE_FALSE(r.ok());
  CHECK_FALSE(wrote);
  CHECK(r.error().message.find("wrong key (key id " + other.id() + ", backup made with " + key.id() + ")") !=
        std::string::npos);
  auto none = read_all_bytes(dir / "b", nullptr);
  REQUIRE_FALSE(none.ok());
  CHECK_THAT(none.error().message, Catch::Contains("is encrypted (key id " + key.id() + ")"));
  auto info = peek_container(dir / "b");
  REQUIRE(info.ok());
  CHECK(info->encrypted);
  CHECK(info->key_id == key.id());
  CHECK_FALSE(peek_container(dir / "nope").ok());
}

TEST_CASE("key files: raw, hex, base64, bad modes and lengths refused", "[key]") {
  TempDir dir("drd-bk");
  std::string hex = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
  std::string raw;
  for (int i = 0; i < 32; ++i) raw.push_back(static_cast<char>(i));
  std::string b64 = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
  auto k1 = load_master_key(write_key_file(dir / "hex", hex + "\n"));
  auto k2 = load_master_key(write_key_file(dir / "raw", raw));
  auto k3 = load_master_key(write_key_file(dir / "b64", b64 + "\n"));
  auto k4 = load_master_key(write_key_file(dir / "HEX", "000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F"));
  REQUIRE(k1.ok());
  REQUIRE(k2.ok());
  REQUIRE(k3.ok());
  REQUIRE(k4.ok());
  CHECK(std::memcmp(k1->data(), k2->data(), 32) == 0);
  CHECK(std::memcmp(k1->data(), k3->data(), 32) == 0);
  CHECK(k1->id() == k4->id());
  CHECK(k1->id().size() == 16);

  auto open = load_master_key(write_key_file(dir / "open", hex, 0644));
  REQUIRE_FALSE(open.ok());
  CHECK(open.error().code == Errc::permission_denied);
  CHECK_THAT(open.error().message, Catch::Contains((dir / "open").string()));
  CHECK_THAT(open.error().hint, Catch::Contains("chmod 600"));
  CHECK_THAT(open.error().message + open.error().hint, !Catch::Contains(hex));

  auto group = load_master_key(write_key_file(dir / "group", hex, 0640));
  CHECK_FALSE(group.ok());

  auto shortk = load_master_key(write_key_file(dir / "short", hex.substr(0, 62)));
  REQUIRE_FALSE(shortk.ok());
  CHECK(shortk.error().code == Errc::invalid_argument);
  CHECK_THAT(shortk.error().message, !Catch::Contains(hex.substr(0, 20)));
  CHECK_FALSE(load_master_key(write_key_file(dir / "junk", std::string(64, 'z'))).ok());
  auto missing = load_master_key(dir / "missing");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().code == Errc::not_found);
}

namespace {
// Accepts `limit` bytes, then fails like a full disk.
class FullDisk : public OutputFile {
 public:
  FullDisk(fs::path p, std::uint64_t limit) : real_(open_output_file(p).value()), path_(std::move(p)), limit_(limit) {}
  Status write(const std::uint8_t* p, std::size_t n) override {
    if (real_->bytes_written() + n > limit_)
      return make_error(Errc::io, "disk full while writing " + path_.string() + ": " +
                                      human_bytes(real_->bytes_written()) + " written");
    return real_->write(p, n);
  }
  Status sync() override { return real_->sync(); }
  Status close() override { return real_->close(); }
  std::uint64_t bytes_written() const override { return real_->bytes_written(); }

 private:
  std::unique_ptr<OutputFile> real_;
  fs::path path_;
  std::uint64_t limit_;
};
}  // namespace

TEST_CASE("a full disk removes the partial file and says so (injected writer)", "[container][enospc]") {
  TempDir dir("drd-bk");
  PipelineOptions o;
  o.threads = 1;
  o.chunk_size = 4096;
  o.open_output = [](const fs::path& p) -> Result<std::unique_ptr<OutputFile>> {
    return std::unique_ptr<OutputFile>(new FullDisk(p, 50'000));
  };
  auto w = BackupWriter::create(dir / "b", o);
  REQUIRE(w.ok());
  auto data = random_bytes(200'000);
  auto s = w.value()->write(data.data(), data.size());
  REQUIRE_FALSE(s.ok());
  CHECK_THAT(s.error().message, Catch::Contains("disk full while writing") && Catch::Contains("written"));
  CHECK_FALSE(fs::exists(dir / "b.partial"));
  CHECK_FALSE(fs::exists(dir / "b"));
}

TEST_CASE("a full tmpfs removes the partial file and says so (real ENOSPC)", "[container][enospc]") {
  TempDir dir("drd-bk");
  fs::path mnt = dir / "small";
  fs::create_directory(mnt);
  if (::mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=256k") != 0) {
    WARN("cannot mount a tmpfs here (not root?): real ENOSPC not tested");
    return;
  }
  struct Unmount {
    fs::path p;
    ~Unmount() { ::umount2(p.c_str(), MNT_DETACH); }
  } unmount{mnt};
  PipelineOptions o;
  o.threads = 1;
  o.chunk_size = 16384;
  auto w = BackupWriter::create(mnt / "b", o);
  REQUIRE(w.ok());
  auto data = random_bytes(1 << 20);
  Status s = ok_status();
  for (std::size_t off = 0; off < data.size() && s.ok(); off += 65536) s = w.value()->write(data.data() + off, 65536);
  REQUIRE_FALSE(s.ok());
  CHECK_THAT(s.error().message, Catch::Contains("disk full while writing " + (mnt / "b.partial").string()) &&
                                    Catch::Contains("KiB written"));
  CHECK(fs::is_empty(mnt));
}
