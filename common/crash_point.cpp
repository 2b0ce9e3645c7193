#include "common/crash_point.hpp"

#include <signal.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

namespace drd {

void crash_point(const char* point) {
  static const std::string wanted = [] {
    const char* v = std::getenv("DRD_TEST_CRASH_AT");
    return v ? "," + std::string(v) + "," : std::string();
  }();
  if (wanted.empty() || wanted.find("," + std::string(point) + ",") == std::string::npos) return;
  spdlog::critical("DRD_TEST_CRASH_AT: killing drd at crash point '{}'", point);
  spdlog::default_logger()->flush();
  ::kill(::getpid(), SIGKILL);
}

}  // namespace drd
