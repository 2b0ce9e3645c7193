// Which archived WAL files a standby re-seeded from a base backup gets in its pg_wal/
// (daemon/backup/pg_reseed.hpp), table-driven, no server.
#include <catch2/catch.hpp>

#include "daemon/backup/pg_reseed.hpp"
#include "daemon/backup/pg_wal.hpp"

using namespace drd;
using namespace drd::backup;

namespace {

constexpr std::uint64_t kSeg = 16u << 20;

Manifest base_backup(std::uint64_t stop_lsn, std::uint32_t tl = 1, const std::string& content = "pg-tar") {
  Manifest m;
  m.id = "B1";
  m.engine = "postgresql";
  m.kind = "full";
  m.content = content;
  m.pg_start_lsn = format_lsn(stop_lsn > kSeg ? stop_lsn - kSeg : 0);
  m.pg_stop_lsn = format_lsn(stop_lsn);
  m.pg_timeline = tl;
  return m;
}

Manifest segment(std::uint32_t tl, std::uint64_t segno) {
  Manifest m;
  const std::string f = wal_file_name(tl, segno);
  m.id = pg_wal_id(f);
  m.engine = "postgresql";
  m.kind = "incremental";
  m.content = kPgWalContent;
  m.pg_timeline = tl;
  m.pg_start_lsn = format_lsn(segno * kSeg);
  m.pg_stop_lsn = format_lsn((segno + 1) * kSeg);
  m.source_position = "{\"wal_file\":\"" + f + "\"}";
  return m;
}

Manifest history(std::uint32_t tl) {
  Manifest m;
  char name[32];
  std::snprintf(name, sizeof name, "%08X.history", tl);
  m.id = pg_wal_id(name);
  m.engine = "postgresql";
  m.kind = "incremental";
  m.content = kPgHistoryContent;
  m.pg_timeline = tl;
  return m;
}

std::vector<std::string> names(const PgReseedWal& w) {
  std::vector<std::string> out;
  for (auto& m : w.files) out.push_back(m.id.substr(7));
  return out;
}

}  // namespace

TEST_CASE("the archived WAL a standby re-seeded from a base backup gets", "[backup][pg_reseed]") {
  struct Row {
    const char* what;
    Manifest full;
    std::vector<Manifest> archived;
    std::vector<std::string> staged;
    std::size_t segments;
    bool gap;
  };
  const auto f = [](std::uint32_t tl, std::uint64_t n) { return wal_file_name(tl, n); };
  const std::vector<Row> rows{
      {"no archive: nothing (the primary must still have the WAL)", base_backup(3 * kSeg + 0x100), {}, {}, 0, false},
      {"every segment from the one holding the stop LSN", base_backup(3 * kSeg + 0x100),
       {segment(1, 5), segment(1, 3), segment(1, 4)}, {f(1, 3), f(1, 4), f(1, 5)}, 3, false},
      {"segments before the backup are not staged", base_backup(3 * kSeg + 0x100),
       {segment(1, 1), segment(1, 2), segment(1, 3)}, {f(1, 3)}, 1, false},
      {"a hole ends what is staged and is named", base_backup(3 * kSeg + 0x100),
       {segment(1, 3), segment(1, 5)}, {f(1, 3)}, 1, true},
      {"across a failover: the new timeline's segments and history", base_backup(3 * kSeg),
       {segment(1, 3), segment(1, 4), segment(2, 4), segment(2, 5), history(2)},
       {f(1, 3), f(2, 4), f(2, 5), "00000002.history"}, 3, false},
      {"histories of timelines older than the backup's are left out", base_backup(3 * kSeg, 3),
       {history(2), history(3), history(4), segment(3, 3)}, {f(3, 3), "00000003.history", "00000004.history"}, 1, false},
      {"a history file alone (no segment archived yet)", base_backup(3 * kSeg), {history(2)}, {"00000002.history"}, 0, false},
      {"a pg_dump backup has no WAL", base_backup(3 * kSeg, 1, "pg-dump"), {segment(1, 3), history(2)}, {}, 0, false},
  };
  for (const auto& r : rows) {
    INFO(r.what);
    auto w = pg_reseed_wal(r.full, r.archived);
    CHECK(names(w) == r.staged);
    CHECK(w.segments == r.segments);
    CHECK(!w.gap.empty() == r.gap);
  }
}
