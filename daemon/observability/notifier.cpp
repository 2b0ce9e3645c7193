#include "daemon/observability/notifier.hpp"

#include <systemd/sd-daemon.h>

#include <cstdint>

namespace drd {

SdNotifier::SdNotifier() {
  std::uint64_t usec = 0;
  if (sd_watchdog_enabled(0, &usec) > 0) watchdog_usec_ = static_cast<long long>(usec);
}

void SdNotifier::notify(const std::string& state) { sd_notify(0, state.c_str()); }

}  // namespace drd
