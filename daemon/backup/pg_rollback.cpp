#include "daemon/backup/pg_rollback.hpp"

#include <algorithm>

namespace drd::backup {

PgRollbackTimelines pg_rollback_timelines(std::uint32_t backup_tl, std::uint32_t primary_tl,
                                          const std::vector<std::uint32_t>& archived) {
  PgRollbackTimelines out;
  out.highest = std::max(backup_tl, primary_tl);
  for (auto tl : archived) out.highest = std::max(out.highest, tl);
  // Only the primary's ancestry (timelines up to its own) can be read from it; a gap above it
  // is left for the timeline check after recovery to catch.
  for (std::uint32_t tl = backup_tl + 1; tl <= primary_tl; ++tl)
    if (std::find(archived.begin(), archived.end(), tl) == archived.end()) out.fetch.push_back(tl);
  return out;
}

std::string pg_rollback_settings(const std::optional<std::string>& time_setting, std::uint32_t primary_tl) {
  if (time_setting) return *time_setting + "recovery_target_timeline = '" + std::to_string(primary_tl) + "'\n";
  return "recovery_target = 'immediate'\nrecovery_target_timeline = 'current'\n";
}

std::optional<std::string> pg_rollback_timeline_problem(std::uint32_t copy_tl, std::uint32_t highest) {
  if (copy_tl > highest) return std::nullopt;
  return "the restored copy was promoted onto timeline " + std::to_string(copy_tl) + ", but timeline " +
         std::to_string(highest) + " is already in use (a history file between them is missing from the archive "
         "and the primary), so its WAL would mix with the old one's";
}

}  // namespace drd::backup
