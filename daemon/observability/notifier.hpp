#pragma once
// The systemd notification channel (sd_notify). Tests substitute their own
// NOTIFY_SOCKET and read what drd says; without one, notify() does nothing.
#include <string>

namespace drd {

class Notifier {
 public:
  virtual ~Notifier() = default;
  virtual void notify(const std::string& state) = 0;  // "READY=1", "STATUS=...", "WATCHDOG=1", "STOPPING=1"
  // The watchdog interval systemd asked for (WATCHDOG_USEC), 0 if none.
  virtual long long watchdog_usec() const = 0;
};

class SdNotifier : public Notifier {
 public:
  SdNotifier();
  void notify(const std::string& state) override;
  long long watchdog_usec() const override { return watchdog_usec_; }

 private:
  long long watchdog_usec_ = 0;
};

}  // namespace drd
