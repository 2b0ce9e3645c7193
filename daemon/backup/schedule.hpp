#pragma once
// Backup schedules: a pure function of (schedule, time). All times are UTC.
//
//   "every 6h" / "every 30m" / "every 1h30m"   runs at multiples of the interval counted from
//        the Unix epoch (00:00 UTC), so "every 6h" runs at 00:00, 06:00, 12:00, 18:00 UTC
//        whatever time drd started. At least 1m.
//   5-field cron "M H DOM MON DOW"             minute 0-59, hour 0-23, day 1-31, month 1-12 or
//        jan-dec, weekday 0-7 (0 and 7 = Sunday) or sun-sat; each field a comma list of `*`,
//        `N`, `A-B`, with an optional `/STEP`. As in Vixie cron, when both day-of-month and
//        day-of-week are restricted (neither starts with `*`), a day matching either fires.
//        Evaluated in UTC, not local time.
#include <bitset>
#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "common/clock.hpp"
#include "common/result.hpp"

namespace drd::backup {

struct Schedule {
  enum class Kind { every, cron } kind = Kind::every;
  std::chrono::seconds interval{0};  // every
  std::bitset<60> minute;            // cron
  std::bitset<24> hour;
  std::bitset<32> dom;               // 1..31
  std::bitset<13> month;             // 1..12
  std::bitset<7> dow;                // 0..6, Sunday = 0
  bool dom_star = true, dow_star = true;
  std::string text;                  // as written
};

// Errors (invalid_argument) name the field and the value: "cron field 2 (hour): 24 is out of
// range 0-23". A cron expression that can never fire ("0 0 30 2 *") is refused too.
Result<Schedule> parse_schedule(std::string_view text);

// The first run strictly after `after` (minute precision for cron). nullopt only for a cron
// expression that cannot fire within 8 years (parse_schedule refuses those).
std::optional<SysTime> next_run(const Schedule& s, SysTime after);

// Whether a scheduled run fell in (last_run, now] — i.e. was missed while drd was down; the
// daemon then runs one backup at start (one, however many were missed). No last run: false.
bool missed_run(const Schedule& s, std::optional<SysTime> last_run, SysTime now);

}  // namespace drd::backup
