// Schedules: parsing, next_run, missed_run — table-driven, pure, UTC.
#include <catch2/catch.hpp>

#include "daemon/backup/manifest.hpp"
#include "daemon/backup/schedule.hpp"

using namespace drd;
using namespace drd::backup;

namespace {
SysTime at(const std::string& s) { return parse_time_utc(s).value(); }
std::string fmt(std::optional<SysTime> t) { return t ? format_time_utc(*t) : "never"; }
}  // namespace

TEST_CASE("next_run (table)", "[schedule]") {
  struct Row {
    const char* sched;
    const char* after;
    const char* next;
  };
  std::vector<Row> rows = {
      // every: aligned to the epoch, strictly after
      {"every 6h", "2026-11-24T05:29:20Z", "2026-11-24T06:00:00.000Z"},
      {"every 6h", "2026-11-24T06:00:00Z", "2026-11-24T12:00:00.000Z"},
      {"every 6h", "2026-11-24T23:59:59Z", "2026-11-25T00:00:00.000Z"},
      {"every 30m", "2026-11-24T05:29:20Z", "2026-11-24T05:30:00.000Z"},
      {"EVERY 1h30m", "2026-11-24T00:00:00Z", "2026-11-24T01:30:00.000Z"},
      {"every 1d", "2028-02-28T12:00:00Z", "2028-02-29T00:00:00.000Z"},
      // cron basics
      {"*/15 * * * *", "2026-11-24T05:29:20Z", "2026-11-24T05:30:00.000Z"},
      {"*/15 * * * *", "2026-11-24T05:30:00Z", "2026-11-24T05:45:00.000Z"},
      {"*/15 * * * *", "2026-11-24T23:59:00Z", "2026-11-25T00:00:00.000Z"},
      {"0 3 * * 1-5", "2026-11-24T03:00:00Z", "2026-11-25T03:00:00.000Z"},  // Tue -> Wed
      {"0 3 * * 1-5", "2026-11-27T04:00:00Z", "2026-11-30T03:00:00.000Z"},  // Fri after 3 -> Mon
      {"0 3 * * mon-fri", "2026-11-28T00:00:00Z", "2026-11-30T03:00:00.000Z"},
      {"30 2 * * 0", "2026-11-24T00:00:00Z", "2026-11-29T02:30:00.000Z"},   // Sunday as 0
      {"30 2 * * 7", "2026-11-24T00:00:00Z", "2026-11-29T02:30:00.000Z"},   // and as 7
      {"30 2 * * SUN", "2026-11-24T00:00:00Z", "2026-11-29T02:30:00.000Z"},
      {"0,30 8-9 * * *", "2026-11-24T08:30:00Z", "2026-11-24T09:00:00.000Z"},
      {"0,30 8-9 * * *", "2026-11-24T09:30:00Z", "2026-11-25T08:00:00.000Z"},
      {"5/20 * * * *", "2026-11-24T10:46:00Z", "2026-11-24T11:05:00.000Z"},
      {"0 0-12/6 * * *", "2026-11-24T06:00:00Z", "2026-11-24T12:00:00.000Z"},
      // month ends, year ends, leap years
      {"0 0 31 * *", "2026-11-15T00:00:00Z", "2026-12-31T00:00:00.000Z"},  // November has no 31st
      {"0 0 31 * *", "2026-12-31T00:00:00Z", "2027-01-31T00:00:00.000Z"},
      {"0 0 1 * *", "2026-12-31T23:59:59Z", "2027-01-01T00:00:00.000Z"},
      {"0 0 29 2 *", "2026-03-01T00:00:00Z", "2028-02-29T00:00:00.000Z"},
      {"0 0 29 feb *", "2024-02-29T00:00:00Z", "2028-02-29T00:00:00.000Z"},
      {"0 0 29 2 *", "2099-03-01T00:00:00Z", "2104-02-29T00:00:00.000Z"},   // 2100 is not a leap year
      {"59 23 28-31 2 *", "2027-02-28T23:59:00Z", "2028-02-28T23:59:00.000Z"},
      {"59 23 28-31 2 *", "2028-02-28T23:59:00Z", "2028-02-29T23:59:00.000Z"},
      {"0 12 * jan,jul *", "2026-07-31T12:00:00Z", "2027-01-01T12:00:00.000Z"},
      // both day fields restricted: either matches (Vixie cron)
      {"0 0 13 * 5", "2026-11-01T00:00:00Z", "2026-11-06T00:00:00.000Z"},  // Friday the 6th before the 13th
      {"0 0 13 * 5", "2026-11-12T00:00:00Z", "2026-11-13T00:00:00.000Z"},
      // a '*'-led day field keeps AND semantics
      {"0 0 */2 * 1", "2026-11-01T00:00:00Z", "2026-11-09T00:00:00.000Z"},  // odd day AND Monday
  };
  for (auto& r : rows) {
    INFO(r.sched << " after " << r.after);
    auto s = parse_schedule(r.sched);
    REQUIRE(s.ok());
    CHECK(fmt(next_run(s.value(), at(r.after))) == r.next);
  }
}

TEST_CASE("schedule errors name the problem (table)", "[schedule]") {
  struct Row {
    const char* sched;
    const char* error;
  };
  std::vector<Row> rows = {
      {"", "empty schedule"},
      {"every", "is not a duration"},
      {"every 6 hours", "'6 hours' is not a duration"},
      {"every 10s", "at least 1m"},
      {"* * * *", "got 4 field(s)"},
      {"* * * * * *", "got 6 field(s)"},
      {"60 * * * *", "cron field 1 (minute): 60 is out of range 0-59"},
      {"0 24 * * *", "cron field 2 (hour): 24 is out of range 0-23"},
      {"0 0 0 * *", "cron field 3 (day-of-month): 0 is out of range 1-31"},
      {"0 0 * 13 *", "cron field 4 (month): 13 is out of range 1-12"},
      {"0 0 * * 8", "cron field 5 (day-of-week): 8 is out of range 0-7"},
      {"0 0 * foo *", "cron field 4 (month): 'foo' is not a number or a name (jan..dec)"},
      {"0 0 * * funday", "(sun..sat)"},
      {"*/0 * * * *", "step '0' must be a positive number"},
      {"5-1 * * * *", "runs backwards"},
      {"1,,2 * * * *", "empty value"},
      {"0 0 30 2 *", "never fires"},
      {"0 0 31 4,6,9,11 *", "never fires"},
  };
  for (auto& r : rows) {
    INFO(r.sched);
    auto s = parse_schedule(r.sched);
    REQUIRE_FALSE(s.ok());
    CHECK(s.error().code == Errc::invalid_argument);
    CHECK_THAT(s.error().message, Catch::Contains(r.error));
  }
}

TEST_CASE("missed_run: a run fell due while drd was down (table)", "[schedule]") {
  struct Row {
    const char* sched;
    const char* last;  // "" = never ran
    const char* now;
    bool missed;
  };
  std::vector<Row> rows = {
      {"every 6h", "2026-11-24T06:00:00Z", "2026-11-24T11:59:59Z", false},
      {"every 6h", "2026-11-24T06:00:00Z", "2026-11-24T12:00:00Z", true},
      {"every 6h", "2026-11-20T06:00:00Z", "2026-11-24T12:00:00Z", true},  // many missed: still one run
      {"every 6h", "", "2026-11-24T12:00:00Z", false},
      {"0 3 * * *", "2026-11-24T03:00:00Z", "2026-11-25T02:59:00Z", false},
      {"0 3 * * *", "2026-11-24T03:00:00Z", "2026-11-25T03:00:00Z", true},
      {"0 3 * * 1-5", "2026-11-27T03:00:00Z", "2026-11-29T23:00:00Z", false},  // weekend: nothing due
      {"0 0 29 2 *", "2024-02-29T00:00:00Z", "2027-12-31T00:00:00Z", false},
      {"0 0 29 2 *", "2024-02-29T00:00:00Z", "2028-03-01T00:00:00Z", true},
  };
  for (auto& r : rows) {
    INFO(r.sched << " last " << r.last << " now " << r.now);
    auto s = parse_schedule(r.sched).value();
    std::optional<SysTime> last;
    if (*r.last) last = at(r.last);
    CHECK(missed_run(s, last, at(r.now)) == r.missed);
  }
}
