// Writes the binary seed inputs of tests/fuzz/corpus/ (run once by hand; the results are
// committed): `fuzz_make_seeds <corpus-dir>`. Each input starts with the target's mode/flags
// byte (see fuzz_wal.cpp and fuzz_backup.cpp).
//   fuzz_wal/    a real WAL written by SQLite (512-byte pages, two transactions)
//   fuzz_backup/ an unencrypted and an encrypted (test key 0x42...) backup of a small database, its
//           zstd stream, and the raw image for the round-trip mode
#include <sqlite3.h>
#include <zstd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "daemon/backup/key.hpp"
#include "daemon/backup/stream.hpp"

namespace fs = std::filesystem;

namespace {

std::vector<std::uint8_t> slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

void emit(const fs::path& p, std::uint8_t first, const std::vector<std::uint8_t>& body) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.put(static_cast<char>(first));
  out.write(reinterpret_cast<const char*>(body.data()), static_cast<std::streamsize>(body.size()));
  std::printf("%s: %zu bytes\n", p.c_str(), body.size() + 1);
}

bool exec(sqlite3* db, const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db, sql, nullptr, nullptr, &err) == SQLITE_OK) return true;
  std::fprintf(stderr, "sqlite: %s\n", err ? err : "?");
  sqlite3_free(err);
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
    return 2;
  }
  const fs::path corpus = argv[1];
  const fs::path work = fs::temp_directory_path() / "drd-fuzz-seeds";
  fs::remove_all(work);
  fs::create_directories(work);
  fs::create_directories(corpus / "fuzz_wal");
  fs::create_directories(corpus / "fuzz_backup");

  // A small WAL database; the WAL is copied while the connection is still open (SQLite
  // checkpoints and deletes it on close).
  const fs::path db = work / "images.db";
  sqlite3* h = nullptr;
  if (sqlite3_open(db.c_str(), &h) != SQLITE_OK) return 1;
  if (!exec(h, "PRAGMA page_size=512; PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;"
               "CREATE TABLE images (id INTEGER PRIMARY KEY, url TEXT NOT NULL, size INTEGER);"
               "INSERT INTO images (url, size) VALUES ('http://example.test/a.jpg', 10);") ||
      !exec(h, "BEGIN; INSERT INTO images (url, size) VALUES ('http://example.test/b.jpg', 20);"
               "INSERT INTO images (url, size) VALUES ('http://example.test/c.jpg', 30); COMMIT;"))
    return 1;
  auto wal = slurp(db.string() + "-wal");
  emit(corpus / "fuzz_wal" / "sqlite-wal-2tx", 0x00, wal);
  emit(corpus / "fuzz_wal" / "sqlite-wal-2tx-sealed-limit1", 0x07, wal);  // seal + scan limit 1
  sqlite3_close(h);

  // The database image (checkpointed, rollback-journal mode) for the backups.
  if (sqlite3_open(db.c_str(), &h) != SQLITE_OK || !exec(h, "PRAGMA journal_mode=DELETE;")) return 1;
  sqlite3_close(h);
  auto image = slurp(db);
  emit(corpus / "fuzz_backup" / "mode4-image", 0x04, image);

  std::vector<std::uint8_t> z(ZSTD_compressBound(image.size()));
  z.resize(ZSTD_compress(z.data(), z.size(), image.data(), image.size(), 3));
  emit(corpus / "fuzz_backup" / "mode2-zstd", 0x02, z);
  emit(corpus / "fuzz_backup" / "mode3-zstd", 0x03, z);

  std::array<std::uint8_t, 32> kb;
  kb.fill(0x42);
  const drd::backup::MasterKey key(kb);
  for (bool encrypted : {false, true}) {
    drd::backup::PipelineOptions opts;
    opts.threads = 1;
    opts.key = encrypted ? &key : nullptr;
    opts.chunk_size = 1024;  // several chunks
    const fs::path out = work / (encrypted ? "enc.drdbk" : "plain.drdbk");
    auto w = drd::backup::BackupWriter::create(out, opts);
    if (!w || !w.value()->write(image.data(), image.size()) || !w.value()->commit()) return 1;
    emit(corpus / "fuzz_backup" / (encrypted ? "mode1-encrypted" : "mode0-plain"), encrypted ? 0x01 : 0x00, slurp(out));
  }
  fs::remove_all(work);
  return 0;
}
