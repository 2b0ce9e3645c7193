// Where drd's pg_receivewal starts (daemon/backup/pg_wal_resume.hpp), table-driven, no server.
#include <catch2/catch.hpp>

#include "daemon/backup/pg_wal_resume.hpp"
#include "tests/backup/pg_wal_rows.hpp"

using namespace drd;
using namespace drd::backup;
using namespace drd::backup::test_rows;

namespace {

PgBase base(std::uint32_t tl, std::uint64_t stop_lsn) {
  PgBase b;
  b.timeline = tl;
  b.stop_lsn = stop_lsn;
  return b;
}

}  // namespace

TEST_CASE("pg_archive_next: the segment the archive needs next", "[backup][pg_wal]") {
  struct Row {
    const char* what;
    PgBase b;
    std::vector<PgWalSeg> archived;
    WalStart want;
  };
  const std::vector<Row> rows = {
      {"nothing archived: the segment holding stop_lsn", base(1, 5 * kSeg + 100), {}, {1, 5}},
      {"stop_lsn on a segment boundary", base(1, 5 * kSeg), {}, {1, 5}},
      {"after the contiguous chain", base(1, 5 * kSeg + 100), {seg(1, 5), seg(1, 6)}, {1, 7}},
      {"the chain starts after the tar's segment", base(1, 5 * kSeg + 100), {seg(1, 6), seg(1, 7)}, {1, 8}},
      {"a gap: right after the chain, not after the newest file", base(1, 5 * kSeg + 100),
       {seg(1, 5), seg(1, 6), seg(1, 9)}, {1, 7}},
      {"followed a timeline switch: the new timeline", base(1, 5 * kSeg + 100),
       {seg(1, 5), seg(1, 6), seg(2, 6), seg(2, 7)}, {2, 8}},
      {"older timelines than the base are not its history", base(2, 5 * kSeg + 100), {seg(1, 5), seg(1, 6)}, {2, 5}},
  };
  for (const auto& r : rows) {
    INFO(r.what);
    CHECK(pg_archive_next(r.b, r.archived, kSeg) == r.want);
  }
}

TEST_CASE("spool_start: pg_receivewal's own resume point", "[backup][pg_wal]") {
  const std::string s5 = wal_file_name(1, 5), s6 = wal_file_name(1, 6), t6 = wal_file_name(2, 6);
  struct Row {
    const char* what;
    std::vector<std::string> names;
    std::optional<WalStart> want;
  };
  const std::vector<Row> rows = {
      {"empty", {}, std::nullopt},
      {"only other files", {"00000002.history", "diverged", "x.partial"}, std::nullopt},
      {"a complete segment: the next one", {s5}, WalStart{1, 6}},
      {"a partial: its own start", {s5, s6 + ".partial"}, WalStart{1, 6}},
      {"complete beats partial of the same number", {s6 + ".partial", s6}, WalStart{1, 7}},
      {"the highest number wins, with its timeline", {s5, t6 + ".partial"}, WalStart{2, 6}},
  };
  for (const auto& r : rows) {
    INFO(r.what);
    CHECK(spool_start(r.names, kSeg) == r.want);
  }
}

TEST_CASE("placeholder_needed: only when the spool says nothing", "[backup][pg_wal]") {
  CHECK(placeholder_needed(std::nullopt, WalStart{1, 5}) == WalStart{1, 5});
  CHECK_FALSE(placeholder_needed(WalStart{1, 3}, WalStart{1, 5}));  // pg_receivewal's continuity wins
  CHECK_FALSE(placeholder_needed(std::nullopt, std::nullopt));       // no base backup: slot or current position
}

TEST_CASE("classify_receiver_failure reads pg_receivewal's errors", "[backup][pg_wal]") {
  const std::string diverged =
      "pg_receivewal: error: could not send replication command \"START_REPLICATION\": ERROR:  requested starting "
      "point 0/A000000 on timeline 1 is not in this server's history\nDETAIL:  This server's history forked from "
      "timeline 1 at 0/9001234.\n";
  auto d = classify_receiver_failure(diverged, kSeg);
  CHECK(d.kind == ReceiverFailure::diverged);
  REQUIRE(d.restart_at);
  CHECK(*d.restart_at == WalStart{1, 9});

  auto no_detail = classify_receiver_failure("ERROR:  requested starting point 0/A000000 on timeline 1 is not in this server's history", kSeg);
  CHECK(no_detail.kind == ReceiverFailure::diverged);
  CHECK_FALSE(no_detail.restart_at);

  CHECK(classify_receiver_failure("ERROR:  requested WAL segment 000000010000000000000003 has already been removed", kSeg).kind ==
        ReceiverFailure::unavailable);
  CHECK(classify_receiver_failure("ERROR:  requested starting point 0/9000000 is ahead of the WAL flush position of this "
                                  "server 0/8000148", kSeg).kind == ReceiverFailure::unavailable);
  CHECK(classify_receiver_failure("pg_receivewal: error: connection to server failed: Connection refused", kSeg).kind ==
        ReceiverFailure::other);
  auto huge = classify_receiver_failure("not in this server's history; forked from timeline 99999999999999 at 0/1", kSeg);
  CHECK(huge.kind == ReceiverFailure::diverged);
  CHECK_FALSE(huge.restart_at);  // no number parsed past 9 digits
}

TEST_CASE("parse_timeline_history reads TIMELINE_HISTORY's content", "[backup][pg_wal]") {
  auto h = parse_timeline_history("1\t0/B00000\tno recovery target specified\n\n2\t0/3A000A0\tbefore 2026-11-24\ngarbage\n");
  REQUIRE(h.size() == 2);
  CHECK(h[0].timeline == 1);
  CHECK(h[0].switchpoint == 0xB00000);
  CHECK(h[1].timeline == 2);
  CHECK(h[1].switchpoint == 0x3A000A0);
  CHECK(parse_timeline_history("").empty());
  CHECK(parse_timeline_history("1 not-an-lsn\n99999999999 0/1\n").empty());
}

TEST_CASE("resolve_start puts pg_receivewal's start on the server's history", "[backup][pg_wal]") {
  constexpr std::uint64_t kMiB = 1u << 20;  // the test clusters' --wal-segsize
  const std::vector<TimelineSwitch> one = {{1, 0xB00000}};                  // 1 -> 2 at 0/B00000
  const std::vector<TimelineSwitch> inside = {{1, 0xA00123}};               // 1 -> 2 inside segment 0xA
  const std::vector<TimelineSwitch> two = {{1, 0xA00123}, {2, 0xC00000}};   // 1 -> 2 -> 3
  struct Row {
    const char* what;
    WalStart want;
    std::vector<TimelineSwitch> history;
    std::uint32_t server_tl;
    WalStart start;
    bool past_fork;
    bool unknown;
  };
  const std::vector<Row> rows = {
      {"same timeline: unchanged", {2, 0xC}, {}, 2, {2, 0xC}, false, false},
      {"before the switch: unchanged, pg_receivewal follows", {1, 0xA}, inside, 2, {1, 0xA}, false, false},
      {"exactly at the switch: the next timeline", {1, 0xB}, one, 2, {2, 0xB}, false, false},
      {"past the switch: the fork's segment on the next timeline", {1, 0xB}, inside, 2, {2, 0xA}, true, false},
      {"past the first fork: its segment on timeline 2, followed from there", {1, 0xC}, two, 3, {2, 0xA}, true, false},
      {"exact switch then still on timeline 2", {2, 0xB}, two, 3, {2, 0xB}, false, false},
      {"exact second switch", {2, 0xC}, two, 3, {3, 0xC}, false, false},
      {"a timeline this server never had", {5, 0xC}, one, 6, {5, 0xC}, false, true},
  };
  for (const auto& r : rows) {
    INFO(r.what);
    auto got = resolve_start(r.want, r.history, r.server_tl, kMiB);
    CHECK(got.start == r.start);
    CHECK(got.past_fork == r.past_fork);
    CHECK(got.unknown_timeline == r.unknown);
  }
}
