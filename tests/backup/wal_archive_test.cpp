// WalArchiver (spooling the replicated WAL stream into segments), segments written from
// spools (disk full on a real tmpfs), per-transaction point-in-time restore, and the
// `backups` window computed from catalog rows.
#include <catch2/catch.hpp>
#include <sys/mount.h>

#include "daemon/backup/catalog_json.hpp"
#include "daemon/backup/incremental.hpp"
#include "daemon/backup/wal_archive.hpp"
#include "tests/backup/helpers.hpp"
#include "tests/backup/sqlite_fixture.hpp"
#include "tests/support/temp_dir.hpp"

using namespace drd;
using namespace drd::backup;
using namespace drd::backup::test;
using drd::test::TempDir;
namespace fs = std::filesystem;

namespace {

constexpr std::uint32_t kPage = 4096;

SysTime at(const char* iso) { return parse_time_utc(iso).value(); }

struct Harness {
  TempDir dir{"drd-walarch"};
  std::vector<SpooledSegment> cut;
  std::vector<std::pair<std::string, std::string>> ended;
  std::unique_ptr<WalArchiver> arch;
  explicit Harness(std::uint64_t max_bytes = 1 << 20, std::chrono::milliseconds max_age = std::chrono::seconds(60)) {
    fs::create_directories(dir / "backups");
    arch = std::make_unique<WalArchiver>(
        ArchiveOptions{dir / "backups", max_bytes, max_age}, "tok", [this](SpooledSegment s) { cut.push_back(s); },
        [this](const std::string& id, const std::string& why) { ended.emplace_back(id, why); });
  }
  // One transaction of `pages` frames (the last a commit), seen at `t`.
  void txn(SysTime t, int pages, unsigned char fill = 1) {
    std::vector<unsigned char> page(kPage, fill);
    arch->begin_batch(kPage, t);
    for (int i = 1; i <= pages; ++i) arch->frame(static_cast<std::uint32_t>(i), i == pages ? 10 : 0, page.data());
    arch->end_batch();
  }
};

}  // namespace

TEST_CASE("the archiver cuts a base segment at the first step after the full backup, then by size and age",
          "[wal_archive]") {
  Harness h(3 * (kPage + kSegFrameHeader), std::chrono::seconds(5));
  h.txn(at("2026-11-24T01:00:00Z"), 2);
  h.arch->after_step(at("2026-11-24T01:00:01Z"));
  CHECK(h.cut.empty());  // the full backup is still running: nothing is cut before it is complete
  h.arch->full_done("F");
  h.txn(at("2026-11-24T01:00:02Z"), 1);
  h.arch->after_step(at("2026-11-24T01:00:02.5Z"));
  REQUIRE(h.cut.size() == 1);
  CHECK(h.cut[0].base);
  CHECK(h.cut[0].n == 1);
  CHECK(h.cut[0].frames == 3);
  CHECK(h.cut[0].full_id == "F");
  CHECK(h.cut[0].first_time == at("2026-11-24T01:00:00Z"));
  CHECK(h.cut[0].time == at("2026-11-24T01:00:02.5Z"));
  CHECK(fs::file_size(h.cut[0].spool) == 3 * (kPage + kSegFrameHeader));

  // Size: 3 frames reach max_bytes.
  h.txn(at("2026-11-24T01:00:03Z"), 2);
  h.arch->after_step(at("2026-11-24T01:00:03Z"));
  CHECK(h.cut.size() == 1);
  h.txn(at("2026-11-24T01:00:03.1Z"), 1);
  h.arch->after_step(at("2026-11-24T01:00:03.2Z"));
  REQUIRE(h.cut.size() == 2);
  CHECK_FALSE(h.cut[1].base);
  CHECK(h.cut[1].frames == 3);

  // Age: one small transaction, cut once its commit is 5 s old; idle steps cut nothing.
  h.arch->after_step(at("2026-11-24T01:00:30Z"));
  CHECK(h.cut.size() == 2);
  h.txn(at("2026-11-24T01:01:00Z"), 1);
  h.arch->after_step(at("2026-11-24T01:01:04Z"));
  CHECK(h.cut.size() == 2);
  h.arch->after_step(at("2026-11-24T01:01:05Z"));
  REQUIRE(h.cut.size() == 3);
  CHECK(h.cut[2].n == 3);

  // A gap keeps the whole transactions spooled so far and ends the chain; a batch cut off
  // in the middle is dropped.
  h.txn(at("2026-11-24T01:02:00Z"), 1);
  std::vector<unsigned char> page(kPage, 9);
  h.arch->begin_batch(kPage, at("2026-11-24T01:02:01Z"));
  h.arch->frame(5, 0, page.data());
  h.arch->gap("the primary's WAL was reset by another process");
  REQUIRE(h.cut.size() == 4);
  CHECK(h.cut[3].frames == 1);
  CHECK(fs::file_size(h.cut[3].spool) == kPage + kSegFrameHeader);
  CHECK(h.arch->finished());
  REQUIRE(h.ended.size() == 1);
  CHECK(h.ended[0].first == "F");
  CHECK_THAT(h.ended[0].second, Catch::Contains("reset"));
  h.txn(at("2026-11-24T01:03:00Z"), 1);  // ignored once finished
  h.arch->after_step(at("2026-11-24T01:09:00Z"));
  CHECK(h.cut.size() == 4);
}

TEST_CASE("an archiver ended before its base segment or abandoned leaves nothing behind", "[wal_archive]") {
  SECTION("gap while the full backup runs") {
    Harness h;
    h.txn(at("2026-11-24T01:00:00Z"), 2);
    h.arch->gap("replication restarted");
    CHECK(h.cut.empty());
    CHECK(h.arch->finished());
    REQUIRE(h.ended.size() == 1);
    CHECK(h.ended[0].first.empty());
  }
  SECTION("the full backup failed") {
    Harness h;
    h.txn(at("2026-11-24T01:00:00Z"), 2);
    h.arch->abandon("disk full");
    CHECK(h.cut.empty());
    CHECK(h.ended.empty());
  }
  SECTION("nothing committed: the base segment is empty but still marks the window") {
    Harness h;
    h.arch->full_done("F");
    h.arch->after_step(at("2026-11-24T01:00:00Z"));
    REQUIRE(h.cut.size() == 1);
    CHECK(h.cut[0].base);
    CHECK(h.cut[0].frames == 0);
  }
}

TEST_CASE("segments from spools restore per transaction, the window starts at the base segment", "[wal_archive]") {
  TempDir dir("drd-walarch-pitr");
  MasterKey key = test_key();
  fs::path src = dir / "images.db";
  make_image_db(src, 500);
  BackupSettings s;
  s.directory = dir / "backups";
  s.key.emplace(key);
  NewBackup nb;
  nb.node = "primary";
  nb.now = at("2026-11-24T00:00:00Z");
  auto full = backup_sqlite(s, src, nb);
  REQUIRE(full.ok());
  auto ref = resolve_backup(manifest_path(s.directory, full->id)).value();
  REQUIRE(restore_sqlite(ref, dir / "base.db", RestoreOptions{false, &key}).ok());
  const auto img0 = slurp(dir / "base.db");
  const auto pages0 = static_cast<std::uint32_t>(img0.size() / kPage);

  // Transactions: each rewrites the last page with a marker byte; the db size never changes.
  WalArchiver arch(ArchiveOptions{s.directory, 1 << 20, std::chrono::seconds(1)}, "t", [&](SpooledSegment seg) {
    auto w = write_segment_from_spool(s, seg);
    INFO((w ? "" : w.error().message));
    REQUIRE(w.ok());
  }, {});
  auto txn = [&](const char* t, unsigned char marker) {
    std::vector<unsigned char> page(img0.end() - kPage, img0.end());
    page[kPage - 1] = marker;
    arch.begin_batch(kPage, at(t));
    arch.frame(pages0, pages0, page.data());
    arch.end_batch();
  };
  txn("2026-11-24T00:00:01Z", 1);  // before the snapshot was known complete: base segment
  arch.full_done(full->id);
  arch.after_step(at("2026-11-24T00:00:02Z"));
  txn("2026-11-24T00:00:03Z", 2);
  txn("2026-11-24T00:00:04Z", 3);
  arch.after_step(at("2026-11-24T00:00:05Z"));  // cut: 2 transactions in segment 2
  txn("2026-11-24T00:00:06Z", 4);
  arch.stop("test over");  // cut at the last commit

  auto scan = scan_segments(s.directory, full->id);
  REQUIRE(scan.segments.size() == 3);
  CHECK(scan.segments[0].base);
  auto w = restore_window(full->created_at, scan.segments);
  REQUIRE(w);
  CHECK(w->from == at("2026-11-24T00:00:02Z"));
  CHECK(w->to == at("2026-11-24T00:00:06Z"));

  int restores = 0;
  auto marker_at = [&](const char* t) -> int {
    fs::path target = dir / ("r-" + std::to_string(++restores) + ".db");
    auto r = restore_sqlite_to_time(ref, target, at(t), RestoreOptions{false, &key});
    INFO((r ? "" : r.error().message));
    if (!r) return -1;
    auto img = slurp(target);
    return img[pages0 * kPage - 1];
  };
  CHECK(marker_at("2026-11-24T00:00:02Z") == 1);
  CHECK(marker_at("2026-11-24T00:00:03.500Z") == 2);  // inside segment 2, between two commits
  CHECK(marker_at("2026-11-24T00:00:04Z") == 3);
  CHECK(marker_at("2026-11-24T00:00:06Z") == 4);
  auto before = restore_sqlite_to_time(ref, dir / "x.db", at("2026-11-24T00:00:01.500Z"), RestoreOptions{false, &key});
  REQUIRE_FALSE(before.ok());
  CHECK_THAT(before.error().message, Catch::Contains("before the restorable window"));

  // A hole: segment 2's data is gone. Up to the base still works; past it is refused by name.
  fs::remove(scan.segments[1].path);
  CHECK(marker_at("2026-11-24T00:00:02Z") == 1);
  auto past = restore_sqlite_to_time(ref, dir / "y.db", at("2026-11-24T00:00:04Z"), RestoreOptions{false, &key});
  REQUIRE_FALSE(past.ok());
  CHECK_THAT(past.error().message, Catch::Contains("segment 2") && Catch::Contains("missing"));
  CHECK_FALSE(fs::exists(dir / "y.db"));
  auto v = verify_segments(s.directory, full->id, &key);
  REQUIRE(v);
  CHECK_FALSE(v->ok);
  CHECK_THAT(v->detail, Catch::Contains("segment 2"));
}

TEST_CASE("a segment on a full disk fails naming the file and leaves no segment or spool", "[wal_archive][enospc]") {
  TempDir dir("drd-walarch-full");
  fs::path mnt = dir / "mnt";
  fs::create_directories(mnt);
  if (::mount("tmpfs", mnt.c_str(), "tmpfs", 0, "size=256k") != 0) {
    WARN("cannot mount a tmpfs here (not root?): real ENOSPC not tested");
    return;
  }
  struct Unmount {
    fs::path p;
    ~Unmount() { ::umount2(p.c_str(), MNT_DETACH); }
  } unmount{mnt};
  BackupSettings s;
  s.directory = mnt;
  s.key.emplace(test_key());
  Manifest m;
  m.id = "F";
  m.kind = "full";
  m.engine = "sqlite";
  m.data_file = "F.drdbk";
  REQUIRE(write_manifest(mnt, m).ok());
  // 1 MiB of incompressible frames (random pages) in a spool outside the tmpfs.
  SpooledSegment seg;
  seg.full_id = "F";
  seg.n = 1;
  seg.spool = dir / "spool.partial";
  seg.page_size = kPage;
  seg.frames = 256;
  seg.first_time = seg.time = at("2026-11-24T00:00:00Z");
  {
    std::vector<std::uint8_t> all;
    auto bytes = random_bytes(kPage * 256, 3);
    for (std::uint32_t i = 0; i < 256; ++i) {
      std::uint8_t h[kSegFrameHeader];
      put_frame_header(h, i + 1, i == 255 ? 256 : 0, seg.time);
      all.insert(all.end(), h, h + sizeof h);
      all.insert(all.end(), bytes.begin() + i * kPage, bytes.begin() + (i + 1) * kPage);
    }
    spit(seg.spool, all);
  }
  auto r = write_segment_from_spool(s, seg);
  REQUIRE_FALSE(r.ok());
  CHECK_THAT(r.error().message, Catch::Contains("disk full") && Catch::Contains((mnt / "F" / "seg-1").string()));
  CHECK_FALSE(fs::exists(mnt / "F" / "seg-1"));
  CHECK_FALSE(fs::exists(mnt / "F" / "seg-1.partial"));
  CHECK_FALSE(fs::exists(seg.spool));
}

TEST_CASE("backups JSON shows each full's restorable window from its contiguous segments", "[wal_archive][catalog]") {
  auto entry = [](std::string id, std::string kind, std::string parent, const char* t, std::string pos) {
    CatalogEntry e;
    e.manifest.id = id;
    e.manifest.kind = kind;
    e.manifest.engine = "sqlite";
    e.manifest.parent = parent;
    e.manifest.created_at = at(t);
    e.manifest.source_position = pos;
    e.manifest.content = kind == "incremental" ? kWalSegmentContent : "sqlite-db";
    e.directory = "/b";
    return e;
  };
  std::vector<CatalogEntry> list{
      entry("F.seg-4", "incremental", "F", "2026-11-24T01:04:00Z", R"({"segment":4,"base":false,"frames":1})"),
      entry("F.seg-2", "incremental", "F", "2026-11-24T01:02:00Z",
            R"({"segment":2,"base":false,"first_commit_at":"2026-11-24T01:01:30.000Z","frames":3})"),
      entry("F.seg-1", "incremental", "F", "2026-11-24T01:00:05Z", R"({"segment":1,"base":true,"frames":0})"),
      entry("F", "full", "", "2026-11-24T01:00:00Z", ""),
      entry("G", "full", "", "2026-11-23T01:00:00Z", ""),
  };
  auto out = catalog_json(list, {"F"});
  REQUIRE(out.size() == 5);
  const auto& f = out[3].as_object();
  REQUIRE(f.at("restorable").is_object());
  // Segment 3 is missing: the window ends with segment 2.
  CHECK(f.at("restorable").at("from").as_string() == "2026-11-24T01:00:05.000Z");
  CHECK(f.at("restorable").at("to").as_string() == "2026-11-24T01:02:00.000Z");
  CHECK(f.at("restorable").at("segments").to_number<std::int64_t>() == 2);
  CHECK(f.at("restorable").at("archiving").as_bool());
  CHECK(out[4].at("restorable").is_null());
  CHECK(out[1].at("segment").to_number<std::int64_t>() == 2);
  CHECK(out[1].at("first_commit_at").as_string() == "2026-11-24T01:01:30.000Z");
  CHECK(out[1].at("last_commit_at").as_string() == "2026-11-24T01:02:00.000Z");
  CHECK(out[1].at("parent").as_string() == "F");
}

TEST_CASE("a chain ended after idle steps cuts an empty final segment at the last step it read", "[wal_archive]") {
  SECTION("stop after idle steps: the window reaches the last step, not the last commit") {
    Harness h;
    h.arch->full_done("F");
    h.txn(at("2026-11-24T01:00:00Z"), 1);
    h.arch->after_step(at("2026-11-24T01:00:01Z"));  // base
    h.txn(at("2026-11-24T01:00:02Z"), 1);
    h.arch->after_step(at("2026-11-24T01:01:10Z"));  // cut by age (60 s)
    const std::size_t before = h.cut.size();
    h.arch->after_step(at("2026-11-24T01:05:00Z"));  // idle
    h.arch->stop("a newer full backup (G) started its own chain");
    REQUIRE(h.cut.size() == before + 1);
    CHECK(h.cut.back().frames == 0);
    CHECK(h.cut.back().time == at("2026-11-24T01:05:00Z"));
    CHECK_FALSE(h.cut.back().base);
  }
  SECTION("gap right after a cut with no step since: nothing more to say") {
    Harness h;
    h.arch->full_done("F");
    h.arch->after_step(at("2026-11-24T01:00:01Z"));  // base
    h.arch->gap("replication restarted");
    CHECK(h.cut.size() == 1);
  }
  SECTION("spooled commits: cut at the later of the last commit and the last step") {
    Harness h;
    h.arch->full_done("F");
    h.arch->after_step(at("2026-11-24T01:00:01Z"));  // base
    h.txn(at("2026-11-24T01:00:02Z"), 1);
    h.arch->after_step(at("2026-11-24T01:00:03Z"));
    h.arch->gap("the primary changed");
    REQUIRE(h.cut.size() == 2);
    CHECK(h.cut[1].frames == 1);
    CHECK(h.cut[1].time == at("2026-11-24T01:00:03Z"));
  }
}
