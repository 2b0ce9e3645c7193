#pragma once
// Logging: spdlog to stderr in the foreground, journald under systemd.
// Events carry structured fields (NODE, EVENT, TERM, BACKUP_ID, ...) so
// `journalctl -u drd EVENT=failover` finds them; on stderr they are appended
// as key=value. Never pass secrets as fields or message text.
#include <spdlog/spdlog.h>

#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace drd::log {

enum class Target { stderr_text, journald };

// Chooses the target: journald when `prefer_journald` and stderr is connected
// to the journal (JOURNAL_STREAM matches), else stderr.
Target detect_target(bool force_foreground);
void init(Target target, spdlog::level::level_enum level = spdlog::level::info);

using Field = std::pair<std::string, std::string>;

// A structured event: EVENT=<event> plus fields, at `level`.
void event(spdlog::level::level_enum level, std::string_view event, const std::vector<Field>& fields,
           const std::string& message);

// Journald priority for a spdlog level (err=3, warning=4, info=6, debug=7).
int journald_priority(spdlog::level::level_enum level);

}  // namespace drd::log
