// PostgreSQL WAL archive logic (daemon/backup/pg_wal.hpp), table-driven, no server: WAL names
// and LSNs, pg_waldump commit lines, the chain of segments a base backup can use (gaps,
// timeline switches), the restorable window, the plan for a target time and retention.
#include <catch2/catch.hpp>

#include "daemon/backup/catalog_json.hpp"
#include "daemon/backup/pg_wal.hpp"
#include "tests/backup/pg_wal_rows.hpp"

using namespace drd;
using namespace drd::backup;
using namespace drd::backup::test_rows;

namespace {

PgBase base_at(std::uint64_t stop_lsn, std::uint32_t tl = 1, int stop_sec = 0) {
  return PgBase{stop_lsn, tl, at("2026-11-24T12:00:00Z") + std::chrono::seconds(stop_sec)};
}

std::vector<std::string> files(const std::vector<PgWalSeg>& v) {
  std::vector<std::string> out;
  for (auto& s : v) out.push_back(s.wal_file);
  return out;
}

}  // namespace

TEST_CASE("LSNs and WAL file names", "[backup][pg_wal]") {
  struct Row {
    const char* text;
    std::optional<std::uint64_t> lsn;
  };
  for (auto& r : std::vector<Row>{{"0/3000028", 0x3000028ull},
                                  {"1/0", 0x100000000ull},
                                  {"AB/CDEF0123", 0xAB'CDEF0123ull},
                                  {"0/abc", 0xabcull},
                                  {"", std::nullopt},
                                  {"/1", std::nullopt},
                                  {"1/", std::nullopt},
                                  {"0/xyz", std::nullopt},
                                  {"123456789/0", std::nullopt}}) {
    INFO(r.text);
    CHECK(parse_lsn(r.text) == r.lsn);
    if (r.lsn) CHECK(parse_lsn(format_lsn(*r.lsn)) == r.lsn);
  }
  CHECK(format_lsn(0x3000028) == "0/3000028");

  struct Name {
    const char* name;
    bool ok;
    std::uint32_t tl;
    std::uint64_t segno;
    bool history;
  };
  for (auto& n : std::vector<Name>{{"000000010000000000000003", true, 1, 3, false},
                                   {"0000000200000001000000FF", true, 2, 256 + 255, false},
                                   {"00000002.history", true, 2, 0, true},
                                   {"000000010000000000000003.partial", false, 0, 0, false},
                                   {"000000010000000000000100", false, 0, 0, false},  // 256 > 255 per log with 16 MiB
                                   {"00000000000000000000000A", false, 0, 0, false},   // timeline 0
                                   {"0000000100000000000000a3", false, 0, 0, false},   // lower case: not PostgreSQL's
                                   {"backup_label", false, 0, 0, false}}) {
    INFO(n.name);
    auto w = parse_wal_name(n.name);
    REQUIRE(w.has_value() == n.ok);
    if (!w) continue;
    CHECK(w->timeline == n.tl);
    CHECK(w->history == n.history);
    if (!n.history) {
      CHECK(w->segno == n.segno);
      CHECK(wal_file_name(w->timeline, w->segno) == n.name);
    }
  }
  // 64 MiB segments: 64 per log file.
  auto big = parse_wal_name("00000001000000010000003F", 64u << 20);
  REQUIRE(big);
  CHECK(big->segno == 64 + 63);
}

TEST_CASE("commit times from pg_waldump output", "[backup][pg_wal]") {
  const std::string out =
      "rmgr: Transaction len (rec/tot):     34/    34, tx:        735, lsn: 0/03000060, prev 0/03000028, desc: COMMIT "
      "2026-11-24 12:34:56.123456 UTC\n"
      "rmgr: Transaction len (rec/tot):     82/    82, tx:        736, lsn: 0/030000A0, prev 0/03000060, desc: COMMIT "
      "2026-11-24 12:34:57.5 UTC; inval msgs: catcache 7\n"
      "rmgr: Transaction len (rec/tot):     34/    34, tx:        737, lsn: 0/03000100, prev 0/030000A0, desc: ABORT "
      "2026-11-24 12:35:00.000000 UTC\n"
      "rmgr: Transaction len (rec/tot):     66/    66, tx:          0, lsn: 0/03000140, prev 0/03000100, desc: "
      "COMMIT_PREPARED 738: 2026-11-24 12:35:01.000001 UTC\n"
      "pg_waldump: error: error in WAL record at 0/3000180: invalid record length at 0/30001B8: wanted 24, got 0\n";
  auto c = parse_waldump_commits(out);
  REQUIRE(c.size() == 3);  // the ABORT does not count
  CHECK(format_time_utc(c[0]) == "2026-11-24T12:34:56.123Z");
  CHECK(c[0] - at("2026-11-24T12:34:56Z") == std::chrono::microseconds(123456));
  CHECK(c[1] - at("2026-11-24T12:34:57Z") == std::chrono::milliseconds(500));
  CHECK(c[2] - at("2026-11-24T12:35:01Z") == std::chrono::microseconds(1));
  CHECK(parse_waldump_commits("").empty());
}

TEST_CASE("the chain of archived segments after a base backup", "[backup][pg_wal]") {
  struct Row {
    const char* what;
    PgBase base;
    std::vector<PgWalSeg> archived;
    std::vector<std::string> chain;
    bool gap;
  };
  const auto f = [](std::uint32_t tl, std::uint64_t n) { return wal_file_name(tl, n); };
  std::vector<Row> rows{
      {"nothing archived", base_at(3 * kSeg + 0x100), {}, {}, false},
      {"starts at the stop segment", base_at(3 * kSeg + 0x100), {seg(1, 3), seg(1, 4), seg(1, 5)},
       {f(1, 3), f(1, 4), f(1, 5)}, false},
      {"the stop segment itself may be missing (it is in the tar)", base_at(3 * kSeg + 0x100), {seg(1, 4), seg(1, 5)},
       {f(1, 4), f(1, 5)}, false},
      {"older segments are ignored", base_at(3 * kSeg + 0x100), {seg(1, 1), seg(1, 2), seg(1, 4)}, {f(1, 4)}, false},
      {"a hole ends the chain and is named", base_at(3 * kSeg + 0x100), {seg(1, 4), seg(1, 6), seg(1, 7)}, {f(1, 4)}, true},
      {"nothing usable before a hole", base_at(3 * kSeg + 0x100), {seg(1, 6)}, {}, true},
      {"a timeline switch continues the chain", base_at(3 * kSeg), {seg(1, 3), seg(1, 4), seg(2, 5), seg(2, 6)},
       {f(1, 3), f(1, 4), f(2, 5), f(2, 6)}, false},
      {"the higher timeline wins for one segment", base_at(3 * kSeg), {seg(1, 3), seg(1, 4), seg(2, 4), seg(2, 5)},
       {f(1, 3), f(2, 4), f(2, 5)}, false},
      {"never back to an older timeline", base_at(3 * kSeg), {seg(1, 3), seg(2, 4), seg(1, 5)}, {f(1, 3), f(2, 4)}, false},  // another history, not a hole
      {"segments of a timeline older than the backup's are not its history", base_at(3 * kSeg, 2), {seg(1, 3), seg(1, 4)},
       {}, false},
  };
  for (auto& r : rows) {
    INFO(r.what);
    auto c = pg_chain(r.base, r.archived);
    CHECK(files(c.segments) == r.chain);
    CHECK(!c.gap.empty() == r.gap);
  }
  {  // 1 MiB segments (initdb --wal-segsize=1): the size comes from the archived segments
    auto small = [](std::uint64_t n) {
      PgWalSeg s;
      s.wal_file = wal_file_name(1, n, 1u << 20);
      s.id = pg_wal_id(s.wal_file);
      s.timeline = 1;
      s.start = n << 20;
      s.end = (n + 1) << 20;
      return s;
    };
    auto c = pg_chain(base_at((9u << 20) + 0x100), {small(9), small(10), small(12)});
    CHECK(files(c.segments) == std::vector<std::string>{"000000010000000000000009", "00000001000000000000000A"});
    CHECK(c.gap.find("00000001000000000000000B") != std::string::npos);
  }
  auto c = pg_chain(base_at(3 * kSeg + 0x100), {seg(1, 4), seg(1, 6)});
  CHECK(c.gap.find("000000010000000000000005") != std::string::npos);
  CHECK(c.gap.find("000000010000000000000006") != std::string::npos);
}

TEST_CASE("window and plan for a target time", "[backup][pg_wal]") {
  // Base backup ended at 12:00:10; commits archived up to 12:00:50.
  const PgBase base = base_at(3 * kSeg + 0x100, 1, 10);
  const std::vector<PgWalSeg> archived{seg(1, 3, 5, 12), seg(1, 4), seg(1, 5, 20, 30), seg(1, 6, 40, 50)};
  auto chain = pg_chain(base, archived);
  auto w = pg_window(base, chain);
  REQUIRE(w);
  CHECK(format_time_utc(w->from) == "2026-11-24T12:00:10.000Z");
  CHECK(format_time_utc(w->to) == "2026-11-24T12:00:50.000Z");
  CHECK(w->segments == 4);

  struct Row {
    int t;                      // seconds past 12:00:00
    std::size_t segments;       // planned (0 = refused)
    const char* error_part;
  };
  for (auto& r : std::vector<Row>{{5, 0, "before the end of backup"},
                                  {10, 1, ""},   // the first commit after 10 s is in segment 3
                                  {11, 1, ""},
                                  {12, 3, ""},   // commit at 12 included; next commit (20) is in segment 5
                                  {25, 3, ""},
                                  {30, 4, ""},
                                  {49, 4, ""},
                                  {50, 0, "the WAL for"},   // needs a commit after T
                                  {3600, 0, "restorable window 2026-11-24T12:00:10.000Z .. 2026-11-24T12:00:50.000Z"}}) {
    INFO("t=" << r.t);
    auto p = pg_plan("B1", base, chain, at("2026-11-24T12:00:00Z") + std::chrono::seconds(r.t));
    if (r.segments == 0) {
      REQUIRE_FALSE(p);
      CHECK(p.error().code == Errc::refused);
      CHECK(p.error().message.find(r.error_part) != std::string::npos);
    } else {
      REQUIRE(p);
      CHECK(p->size() == r.segments);
    }
  }
  // No commits archived after the backup: no window, a clear refusal.
  auto empty = pg_chain(base, {seg(1, 3, 1, 5), seg(1, 4)});
  CHECK_FALSE(pg_window(base, empty));
  auto p = pg_plan("B1", base, empty, at("2026-11-24T12:00:20Z"));
  REQUIRE_FALSE(p);
  CHECK(p.error().message.find("no WAL with commits after backup B1") != std::string::npos);
}

TEST_CASE("retention keeps the WAL every kept base backup needs", "[backup][pg_wal]") {
  const std::vector<PgWalSeg> archived{seg(1, 1), seg(1, 2), seg(1, 3), seg(1, 4), seg(1, 5)};
  struct Row {
    const char* what;
    std::vector<PgBase> kept;
    std::vector<std::string> removed;
  };
  for (auto& r : std::vector<Row>{
           {"no kept base backup: nothing deleted", {}, {}},
           {"before the oldest kept backup's stop segment", {base_at(3 * kSeg + 5), base_at(5 * kSeg)},
            {pg_wal_id(wal_file_name(1, 1)), pg_wal_id(wal_file_name(1, 2))}},
           {"the oldest kept one decides", {base_at(5 * kSeg), base_at(2 * kSeg + 1)}, {pg_wal_id(wal_file_name(1, 1))}},
       }) {
    INFO(r.what);
    CHECK(pg_wal_unneeded(r.kept, archived) == r.removed);
  }
}

TEST_CASE("backups --json shows the PostgreSQL window", "[backup][pg_wal]") {
  Manifest full;
  full.id = "B1";
  full.engine = "postgresql";
  full.kind = "full";
  full.content = "pg-tar";
  full.node = "node0";
  full.created_at = at("2026-11-24T11:59:00Z");
  full.pg_start_lsn = "0/2000028";
  full.pg_stop_lsn = "0/3000100";
  full.pg_timeline = 1;
  full.pg_stop_time = at("2026-11-24T12:00:10Z");
  auto wal = [&](std::uint64_t segno, const std::string& first, const std::string& last) {
    Manifest m;
    m.id = pg_wal_id(wal_file_name(1, segno));
    m.engine = "postgresql";
    m.kind = "incremental";
    m.parent = "B1";
    m.content = kPgWalContent;
    m.created_at = at(last);
    m.pg_timeline = 1;
    m.pg_start_lsn = format_lsn(segno * kSeg);
    m.pg_stop_lsn = format_lsn((segno + 1) * kSeg);
    m.source_position = "{\"wal_file\":\"" + wal_file_name(1, segno) + "\",\"first_commit_at\":\"" + first +
                        "\",\"last_commit_at\":\"" + last + "\",\"commits\":2}";
    return CatalogEntry{m, "/b/pg-wal", {}, {}, {}};
  };
  std::vector<CatalogEntry> list{wal(4, "2026-11-24T12:00:20Z", "2026-11-24T12:00:30Z"),
                                 wal(3, "2026-11-24T12:00:05Z", "2026-11-24T12:00:15Z"),
                                 CatalogEntry{full, "/b", {}, {}, {}}};
  auto a = catalog_json(list, {kPgArchivingLive}, false);
  REQUIRE(a.size() == 1);  // archived WAL rows only with --segments
  const auto& r = a[0].as_object().at("restorable").as_object();
  CHECK(r.at("from").as_string() == "2026-11-24T12:00:10.000Z");
  CHECK(r.at("to").as_string() == "2026-11-24T12:00:30.000Z");
  CHECK(r.at("segments").to_number<int>() == 2);
  CHECK(r.at("archiving").as_bool());
  auto all = catalog_json(list, {}, true);
  REQUIRE(all.size() == 3);
  CHECK(all[0].as_object().at("wal_file").as_string() == "000000010000000000000004");
  CHECK(all[0].as_object().at("start_lsn").as_string() == "0/4000000");
  CHECK_FALSE(all[2].as_object().at("restorable").as_object().at("archiving").as_bool());
}
