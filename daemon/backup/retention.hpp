#pragma once
// Which backups to keep: a pure function, no I/O (the daemon deletes files and catalog rows).
//
// Grandfather-father-son over the list it is given (the caller passes one cluster's backups):
//   keep_last N     the N newest backups                           reason "last N"
//   keep_daily N    newest backup of each of the N newest UTC days  "daily 2026-11-20"
//                   that have backups
//   keep_weekly N   same per ISO-8601 week (UTC)                    "weekly 2026-W47"
//   keep_monthly N  same per calendar month (UTC)                   "monthly 2026-10"
// and always:
//   the newest verified backup                                     "newest verified"
//   the newest backup, even with an all-zero policy                "newest"
//   backups dated after `now` (clock skew; never judged)           "dated in the future"
//   every backup a kept incremental depends on (transitively)      "parent of kept incremental"
// Everything else is deleted.
#include <string>
#include <vector>

#include "common/clock.hpp"

namespace drd::backup {

struct RetentionItem {
  std::string id;
  SysTime created_at{};
  bool verified = false;
  std::string kind = "full";  // full | incremental | logical
  std::string parent;         // incrementals
  std::string node;
};

struct RetentionPolicy {
  int keep_last = 7, keep_daily = 7, keep_weekly = 4, keep_monthly = 6;
};

struct KeptBackup {
  std::string id;
  std::vector<std::string> reasons;  // in the order listed above
};

struct RetentionDecision {
  std::vector<KeptBackup> keep;    // newest first
  std::vector<std::string> remove; // newest first
};

RetentionDecision apply_retention(const std::vector<RetentionItem>& items, const RetentionPolicy& policy, SysTime now);

// Bucket labels, exposed for tests and messages: "2026-11-20", "2026-W47", "2026-10".
std::string day_label(SysTime t);
std::string iso_week_label(SysTime t);
std::string month_label(SysTime t);

}  // namespace drd::backup
