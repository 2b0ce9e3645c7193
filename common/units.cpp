#include "common/units.hpp"

#include <cctype>
#include <cmath>
#include <cstdio>

namespace drd {

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

// Reads a non-negative decimal number (digits with an optional fraction).
std::optional<double> read_number(std::string_view& s) {
  size_t i = 0;
  bool digits = false, dot = false;
  while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) || (s[i] == '.' && !dot))) {
    if (s[i] == '.') dot = true; else digits = true;
    ++i;
  }
  if (!digits) return std::nullopt;
  double v = std::stod(std::string(s.substr(0, i)));
  s.remove_prefix(i);
  return v;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

}  // namespace

std::optional<Millis> parse_duration(std::string_view s) {
  s = trim(s);
  if (s.empty()) return std::nullopt;
  double total = 0;
  while (!s.empty()) {
    auto n = read_number(s);
    if (!n) return std::nullopt;
    size_t i = 0;
    while (i < s.size() && std::isalpha(static_cast<unsigned char>(s[i]))) ++i;
    std::string unit = lower(s.substr(0, i));
    s.remove_prefix(i);
    double ms;
    if (unit == "ms") ms = 1;
    else if (unit == "s" || unit == "sec") ms = 1000;
    else if (unit == "m" || unit == "min") ms = 60'000;
    else if (unit == "h") ms = 3'600'000;
    else if (unit == "d") ms = 86'400'000;
    else if (unit == "w") ms = 7 * 86'400'000.0;
    else return std::nullopt;
    total += *n * ms;
  }
  if (total > 1e15) return std::nullopt;
  return Millis(static_cast<std::int64_t>(std::llround(total)));
}

std::string format_duration(Millis d) {
  auto ms = d.count();
  struct U { std::int64_t ms; const char* name; };
  static constexpr U units[] = {{86'400'000, "d"}, {3'600'000, "h"}, {60'000, "m"}, {1000, "s"}};
  for (auto u : units) {
    if (ms >= u.ms && ms % u.ms == 0) return std::to_string(ms / u.ms) + u.name;
  }
  if (ms >= 1000 && ms % 100 == 0) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1fs", static_cast<double>(ms) / 1000.0);
    return buf;
  }
  return std::to_string(ms) + "ms";
}

std::optional<std::uint64_t> parse_size(std::string_view s) {
  s = trim(s);
  auto n = read_number(s);
  if (!n) return std::nullopt;
  std::string unit = lower(trim(s));
  double mult;
  if (unit.empty() || unit == "b") mult = 1;
  else if (unit == "k" || unit == "kb" || unit == "kib") mult = 1024.0;
  else if (unit == "m" || unit == "mb" || unit == "mib") mult = 1024.0 * 1024;
  else if (unit == "g" || unit == "gb" || unit == "gib") mult = 1024.0 * 1024 * 1024;
  else if (unit == "t" || unit == "tb" || unit == "tib") mult = 1024.0 * 1024 * 1024 * 1024;
  else return std::nullopt;
  return static_cast<std::uint64_t>(std::llround(*n * mult));
}

std::string format_size(std::uint64_t bytes) {
  static constexpr const char* names[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(bytes);
  int i = 0;
  while (v >= 1024 && i < 4) { v /= 1024; ++i; }
  char buf[32];
  if (i == 0) std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(bytes));
  else std::snprintf(buf, sizeof buf, "%.1f %s", v, names[i]);
  return buf;
}

}  // namespace drd
