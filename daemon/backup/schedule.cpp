#include "daemon/backup/schedule.hpp"

#include <algorithm>
#include <cctype>
#include <vector>

#include "common/units.hpp"

namespace drd::backup {

using namespace std::chrono;

namespace {

std::string lower(std::string_view s) {
  std::string o(s);
  for (auto& c : o) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return o;
}

std::vector<std::string> split(std::string_view s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == sep) {
      out.push_back(cur);
      cur.clear();
    } else {
      cur.push_back(c);
    }
  }
  out.push_back(cur);
  return out;
}

struct Field {
  const char* name;
  int lo, hi;
  const char* const* names;  // index 0 = value lo (or 0 for dow)
  int names_base;
};

const char* const kMonths[] = {"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec", nullptr};
const char* const kDays[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat", nullptr};

const Field kFields[5] = {{"minute", 0, 59, nullptr, 0},
                          {"hour", 0, 23, nullptr, 0},
                          {"day-of-month", 1, 31, nullptr, 0},
                          {"month", 1, 12, kMonths, 1},
                          {"day-of-week", 0, 7, kDays, 0}};

// Parses a number or a name; returns false with `err` set.
bool value(const Field& f, int idx, const std::string& tok, int& out, std::string& err) {
  std::string prefix = "cron field " + std::to_string(idx + 1) + " (" + f.name + "): ";
  if (tok.empty()) {
    err = prefix + "empty value";
    return false;
  }
  if (std::all_of(tok.begin(), tok.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); })) {
    if (tok.size() > 4) {
      err = prefix + tok + " is out of range " + std::to_string(f.lo) + "-" + std::to_string(f.hi);
      return false;
    }
    out = std::stoi(tok);
    if (out < f.lo || out > f.hi) {
      err = prefix + tok + " is out of range " + std::to_string(f.lo) + "-" + std::to_string(f.hi);
      return false;
    }
    return true;
  }
  if (f.names) {
    std::string t = lower(tok);
    for (int i = 0; f.names[i]; ++i)
      if (t == f.names[i]) {
        out = i + f.names_base;
        return true;
      }
  }
  err = prefix + "'" + tok + "' is not a number" + (f.names ? " or a name" : "") +
        (f.names == kMonths ? " (jan..dec)" : f.names == kDays ? " (sun..sat)" : "");
  return false;
}

// One field into `bits` (indexed by value). Sets `star` when the field starts with '*'.
bool parse_field(const Field& f, int idx, const std::string& text, std::vector<bool>& bits, bool& star, std::string& err) {
  std::string prefix = "cron field " + std::to_string(idx + 1) + " (" + f.name + "): ";
  star = !text.empty() && text[0] == '*';
  for (auto& item : split(text, ',')) {
    auto parts = split(item, '/');
    if (parts.size() > 2) {
      err = prefix + "'" + item + "' has more than one '/'";
      return false;
    }
    int step = 1;
    if (parts.size() == 2) {
      const std::string& s = parts[1];
      if (s.empty() || s.size() > 3 || !std::all_of(s.begin(), s.end(), [](char c) { return std::isdigit(static_cast<unsigned char>(c)); }) ||
          std::stoi(s) == 0) {
        err = prefix + "step '" + s + "' must be a positive number";
        return false;
      }
      step = std::stoi(s);
    }
    int a, b;
    const std::string& range = parts[0];
    if (range == "*") {
      a = f.lo;
      b = f.hi == 7 ? 6 : f.hi;
    } else {
      auto ab = split(range, '-');
      if (ab.size() > 2) {
        err = prefix + "'" + range + "' is not a range";
        return false;
      }
      if (!value(f, idx, ab[0], a, err)) return false;
      if (ab.size() == 2) {
        if (!value(f, idx, ab[1], b, err)) return false;
        if (b < a) {
          err = prefix + "range '" + range + "' runs backwards";
          return false;
        }
      } else {
        b = parts.size() == 2 ? (f.hi == 7 ? 6 : f.hi) : a;  // "5/15" = from 5 to the end
      }
    }
    for (int v = a; v <= b; v += step) bits[static_cast<std::size_t>(v == 7 && f.hi == 7 ? 0 : v)] = true;
  }
  return true;
}

bool day_matches(const Schedule& s, year_month_day d) {
  if (!s.month[unsigned(d.month())]) return false;
  bool dom = s.dom[unsigned(d.day())];
  bool dow = s.dow[weekday(sys_days(d)).c_encoding()];
  if (s.dom_star || s.dow_star) return dom && dow;
  return dom || dow;
}

}  // namespace

Result<Schedule> parse_schedule(std::string_view text) {
  Schedule s;
  s.text = std::string(text);
  std::string t = lower(text);
  while (!t.empty() && std::isspace(static_cast<unsigned char>(t.back()))) t.pop_back();
  while (!t.empty() && std::isspace(static_cast<unsigned char>(t.front()))) t.erase(0, 1);
  if (t.empty()) return make_error(Errc::invalid_argument, "empty schedule (use \"every 6h\" or a cron expression)");
  if (t.rfind("every", 0) == 0) {
    std::string d = t.substr(5);
    while (!d.empty() && d.front() == ' ') d.erase(0, 1);
    auto dur = parse_duration(d);
    if (!dur)
      return make_error(Errc::invalid_argument, "schedule '" + s.text + "': '" + d + "' is not a duration (e.g. 30m, 6h, 1d)");
    if (*dur < minutes(1))
      return make_error(Errc::invalid_argument, "schedule '" + s.text + "': the interval must be at least 1m");
    s.kind = Schedule::Kind::every;
    s.interval = duration_cast<seconds>(*dur);
    return s;
  }
  std::vector<std::string> fields;
  std::string cur;
  for (char c : t) {
    if (std::isspace(static_cast<unsigned char>(c))) {
      if (!cur.empty()) fields.push_back(cur), cur.clear();
    } else {
      cur.push_back(c);
    }
  }
  if (!cur.empty()) fields.push_back(cur);
  if (fields.size() != 5)
    return make_error(Errc::invalid_argument,
                      "schedule '" + s.text + "': expected \"every <duration>\" or 5 cron fields (minute hour "
                      "day-of-month month day-of-week), got " + std::to_string(fields.size()) + " field(s)");
  s.kind = Schedule::Kind::cron;
  std::string err;
  for (int i = 0; i < 5; ++i) {
    std::vector<bool> bits(64, false);
    bool star = false;
    if (!parse_field(kFields[i], i, fields[static_cast<std::size_t>(i)], bits, star, err))
      return make_error(Errc::invalid_argument, "schedule '" + s.text + "': " + err);
    for (std::size_t v = 0; v < 64; ++v) {
      if (!bits[v]) continue;
      switch (i) {
        case 0: s.minute[v] = true; break;
        case 1: s.hour[v] = true; break;
        case 2: s.dom[v] = true; break;
        case 3: s.month[v] = true; break;
        case 4: s.dow[v] = true; break;
      }
    }
    if (i == 2) s.dom_star = star;
    if (i == 4) s.dow_star = star;
  }
  // Refuse expressions that never fire (Feb 30, Apr 31): look 8 years ahead of a fixed date,
  // enough to meet every Feb 29.
  if (!next_run(s, SysTime(sys_days(2000y / January / 1))))
    return make_error(Errc::invalid_argument, "schedule '" + s.text + "' never fires (no such date)");
  return s;
}

std::optional<SysTime> next_run(const Schedule& s, SysTime after) {
  if (s.kind == Schedule::Kind::every) {
    auto since = duration_cast<seconds>(after.time_since_epoch());
    auto n = since.count() / s.interval.count();
    if (since.count() < 0 && since.count() % s.interval.count() != 0) --n;  // floor for pre-1970
    return SysTime(seconds((n + 1) * s.interval.count()));
  }
  SysTime start = floor<minutes>(after) + minutes(1);
  sys_days day = floor<days>(start);
  auto tod = duration_cast<minutes>(start - day);
  int h0 = static_cast<int>(tod.count() / 60), m0 = static_cast<int>(tod.count() % 60);
  for (int i = 0; i < 366 * 8 + 2; ++i, ++day) {
    if (!day_matches(s, year_month_day(day))) {
      h0 = m0 = 0;
      continue;
    }
    for (int h = h0; h < 24; ++h) {
      if (!s.hour[static_cast<std::size_t>(h)]) continue;
      for (int m = (h == h0 ? m0 : 0); m < 60; ++m)
        if (s.minute[static_cast<std::size_t>(m)]) return SysTime(day) + hours(h) + minutes(m);
    }
    h0 = m0 = 0;
  }
  return std::nullopt;
}

bool missed_run(const Schedule& s, std::optional<SysTime> last_run, SysTime now) {
  if (!last_run) return false;
  auto n = next_run(s, *last_run);
  return n && *n <= now;
}

}  // namespace drd::backup
