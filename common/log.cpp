#include "common/log.hpp"

#include <spdlog/sinks/base_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <systemd/sd-journal.h>
#include <unistd.h>

#include <cstdlib>
#include <cstdio>
#include <mutex>

namespace drd::log {

namespace {

Target g_target = Target::stderr_text;

// Sends spdlog messages to journald with PRIORITY and SYSLOG_IDENTIFIER.
class JournaldSink : public spdlog::sinks::base_sink<std::mutex> {
 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    std::string text(msg.payload.data(), msg.payload.size());
    sd_journal_send("MESSAGE=%s", text.c_str(), "PRIORITY=%d", journald_priority(msg.level),
                    "SYSLOG_IDENTIFIER=drd", nullptr);
  }
  void flush_() override {}
};

bool stderr_is_journal() {
  const char* js = std::getenv("JOURNAL_STREAM");
  if (!js) return false;
  unsigned long dev = 0, ino = 0;
  if (std::sscanf(js, "%lu:%lu", &dev, &ino) != 2) return false;
  struct stat st {};
  if (fstat(STDERR_FILENO, &st) != 0) return false;
  return st.st_dev == dev && st.st_ino == ino;
}

}  // namespace

int journald_priority(spdlog::level::level_enum level) {
  switch (level) {
    case spdlog::level::critical: return 2;
    case spdlog::level::err: return 3;
    case spdlog::level::warn: return 4;
    case spdlog::level::info: return 6;
    default: return 7;
  }
}

Target detect_target(bool force_foreground) {
  if (force_foreground) return Target::stderr_text;
  return stderr_is_journal() ? Target::journald : Target::stderr_text;
}

void init(Target target, spdlog::level::level_enum level) {
  g_target = target;
  std::shared_ptr<spdlog::logger> logger;
  if (target == Target::journald) {
    logger = std::make_shared<spdlog::logger>("drd", std::make_shared<JournaldSink>());
    logger->set_pattern("%v");
  } else {
    logger = spdlog::stderr_color_mt("drd");
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%-5l%$ %v");
  }
  logger->set_level(level);
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(logger);
}

void event(spdlog::level::level_enum level, std::string_view event, const std::vector<Field>& fields,
           const std::string& message) {
  if (g_target == Target::journald) {
    std::vector<std::string> lines;
    lines.reserve(fields.size() + 4);
    lines.push_back("MESSAGE=" + message);
    lines.push_back("PRIORITY=" + std::to_string(journald_priority(level)));
    lines.push_back("SYSLOG_IDENTIFIER=drd");
    lines.push_back("EVENT=" + std::string(event));
    for (auto& [k, v] : fields) lines.push_back(k + "=" + v);
    std::vector<iovec> iov;
    iov.reserve(lines.size());
    for (auto& l : lines) iov.push_back(iovec{l.data(), l.size()});
    sd_journal_sendv(iov.data(), static_cast<int>(iov.size()));
    return;
  }
  std::string text = message + " [event=" + std::string(event);
  for (auto& [k, v] : fields) {
    text += ' ';
    for (char c : k) text += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    text += '=' + v;
  }
  text += ']';
  spdlog::log(level, "{}", text);
}

}  // namespace drd::log
