#include "daemon/backup/retention.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <map>
#include <set>

namespace drd::backup {

using namespace std::chrono;

std::string day_label(SysTime t) {
  year_month_day d{floor<days>(t)};
  char b[32];
  std::snprintf(b, sizeof b, "%04d-%02u-%02u", int(d.year()), unsigned(d.month()), unsigned(d.day()));
  return b;
}

std::string month_label(SysTime t) {
  year_month_day d{floor<days>(t)};
  char b[32];
  std::snprintf(b, sizeof b, "%04d-%02u", int(d.year()), unsigned(d.month()));
  return b;
}

std::string iso_week_label(SysTime t) {
  sys_days day = floor<days>(t);
  unsigned wd = weekday(day).iso_encoding();  // Mon=1 .. Sun=7
  sys_days thursday = day + days(4 - static_cast<int>(wd));  // the ISO year is the Thursday's year
  year y = year_month_day(thursday).year();
  auto week = (thursday - sys_days(y / January / 1)).count() / 7 + 1;
  char b[32];
  std::snprintf(b, sizeof b, "%04d-W%02d", int(y), static_cast<int>(week));
  return b;
}

RetentionDecision apply_retention(const std::vector<RetentionItem>& input, const RetentionPolicy& policy, SysTime now) {
  std::vector<RetentionItem> items = input;
  std::sort(items.begin(), items.end(), [](const RetentionItem& a, const RetentionItem& b) {
    return a.created_at != b.created_at ? a.created_at > b.created_at : a.id > b.id;
  });
  std::map<std::string, std::vector<std::string>> reasons;
  auto keep = [&](const std::string& id, std::string why) {
    auto& r = reasons[id];
    if (std::find(r.begin(), r.end(), why) == r.end()) r.push_back(std::move(why));
  };

  for (int i = 0; i < policy.keep_last && i < static_cast<int>(items.size()); ++i)
    keep(items[static_cast<std::size_t>(i)].id, "last " + std::to_string(policy.keep_last));

  // Newest first, so the first item seen in a bucket is that bucket's newest backup.
  auto buckets = [&](int n, const char* name, std::string (*label)(SysTime)) {
    std::set<std::string> seen;
    for (auto& it : items) {
      if (static_cast<int>(seen.size()) >= n) break;
      if (it.created_at > now) continue;
      std::string l = label(it.created_at);
      if (seen.insert(l).second) keep(it.id, std::string(name) + " " + l);
    }
  };
  buckets(policy.keep_daily, "daily", day_label);
  buckets(policy.keep_weekly, "weekly", iso_week_label);
  buckets(policy.keep_monthly, "monthly", month_label);

  for (auto& it : items)
    if (it.verified) {
      keep(it.id, "newest verified");
      break;
    }
  if (!items.empty() && !reasons.count(items.front().id)) keep(items.front().id, "newest");
  for (auto& it : items)
    if (it.created_at > now) keep(it.id, "dated in the future");

  // Parents of kept incrementals, transitively (an incremental may sit on another one).
  std::map<std::string, const RetentionItem*> by_id;
  for (auto& it : items) by_id[it.id] = &it;
  for (bool changed = true; changed;) {
    changed = false;
    for (auto& it : items) {
      if (!reasons.count(it.id) || it.parent.empty() || !by_id.count(it.parent)) continue;
      bool was = reasons.count(it.parent) > 0;
      auto& r = reasons[it.parent];
      if (std::find(r.begin(), r.end(), "parent of kept incremental") == r.end()) {
        r.push_back("parent of kept incremental");
        changed = changed || !was;
      }
    }
  }

  RetentionDecision d;
  for (auto& it : items) {
    auto f = reasons.find(it.id);
    if (f != reasons.end()) d.keep.push_back(KeptBackup{it.id, f->second});
    else d.remove.push_back(it.id);
  }
  return d;
}

}  // namespace drd::backup
