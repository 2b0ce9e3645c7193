#pragma once
// Injectable time. Decision code takes time as an argument; the daemon's
// timers use the real clocks; tests drive a ManualClock.
#include <chrono>
#include <cstdint>
#include <string>

namespace drd {

using SysTime = std::chrono::system_clock::time_point;
using SteadyTime = std::chrono::steady_clock::time_point;

class Clock {
 public:
  virtual ~Clock() = default;
  virtual SysTime now() const = 0;        // wall time, for records and schedules
  virtual SteadyTime steady() const = 0;  // monotonic, for timeouts and durations
};

class SystemClock : public Clock {
 public:
  SysTime now() const override { return std::chrono::system_clock::now(); }
  SteadyTime steady() const override { return std::chrono::steady_clock::now(); }
};

class ManualClock : public Clock {
 public:
  explicit ManualClock(SysTime start = SysTime(std::chrono::seconds(1'700'000'000)))
      : wall_(start), mono_(SteadyTime(std::chrono::seconds(1000))) {}
  SysTime now() const override { return wall_; }
  SteadyTime steady() const override { return mono_; }
  void advance(std::chrono::milliseconds d) { wall_ += d; mono_ += d; }
  void step_wall(std::chrono::milliseconds d) { wall_ += d; }  // NTP step: wall only
  void set_wall(SysTime t) { wall_ = t; }

 private:
  SysTime wall_;
  SteadyTime mono_;
};

inline std::int64_t to_unix_ms(SysTime t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}
inline SysTime from_unix_ms(std::int64_t ms) { return SysTime(std::chrono::milliseconds(ms)); }

}  // namespace drd

namespace drd {
// "2026-11-24T05:29:20.123Z"
std::string iso8601_ms(std::int64_t unix_ms);
}  // namespace drd
