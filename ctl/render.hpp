#pragma once
// Pure rendering of drd's JSON-RPC results into the text drctl prints.
// Every function takes the result exactly as the daemon sent it (shapes in
// docs/rpc.md), tolerates missing fields ("-"), and returns the whole text
// including the final newline. No I/O, no globals: the caller decides colour
// and emoji (only on a TTY, never with --no-color / NO_COLOR).
#include <boost/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace drd::ctl {

enum class Lang { en, zh };

struct RenderOptions {
  Lang lang = Lang::en;
  bool color = false;  // ANSI colours
  bool emoji = false;  // 🟢/🔴/👑 instead of [ok]/[down]/(primary)
};

// ---- formatting helpers (exposed for tests) --------------------------------
std::string format_bytes(std::uint64_t bytes);           // "0 B", "1.5 MiB"
std::string format_ms(double ms);                        // "0.42 ms", "412 ms", "1.5 s", "2m05s"
std::string format_lag(std::optional<double> bytes, std::optional<double> ms);  // "1.5 MiB, 230 ms"
std::string format_time(std::string_view iso);           // "2026-11-24T05:29:20.123Z" -> "2026-11-24 05:29:20"
std::string format_ratio(std::optional<double> source_bytes, std::optional<double> size_bytes);  // "3.2x"
std::string format_pct(std::optional<double> pct);       // "99.95%"
std::size_t display_width(std::string_view utf8);        // CJK and emoji count as 2 columns
// Columns padded to the widest cell, two spaces apart, no trailing blanks.
std::string render_table(const std::vector<std::string>& headers,
                         const std::vector<std::vector<std::string>>& rows, const RenderOptions& o);
// One progress line (no "\r"): "[#####-----]  50%  5.0 MiB / 10.0 MiB  copy".
std::string progress_line(double done, std::optional<double> total, std::string_view phase, int bar_width = 30);

// ---- per command ------------------------------------------------------------
std::string render_status(const boost::json::value& status, const RenderOptions& o);
std::string render_test(const boost::json::value& result, const RenderOptions& o);
std::string render_primary(const boost::json::value& result, bool url);
std::string render_history(const boost::json::value& entries, const RenderOptions& o);
std::string render_backups(const boost::json::value& backups, const RenderOptions& o);
std::string render_backup_created(const boost::json::value& backup, const RenderOptions& o);
std::string render_verify(const boost::json::value& result, const RenderOptions& o);
std::string render_restore(const boost::json::value& result, const RenderOptions& o);
std::string render_health(const boost::json::value& result, const RenderOptions& o);
std::string render_alerts(const boost::json::value& result, const RenderOptions& o);
std::string render_audit(const boost::json::value& entries, const RenderOptions& o);
// verb: "failover" or "switchover"; node: what was asked for, used if the entry lacks "to".
std::string render_transition(const boost::json::value& entry, std::string_view verb, std::string_view node,
                               const RenderOptions& o);
// verb: "rejoin" or "clone".
std::string render_rejoin(const boost::json::value& result, std::string_view verb, std::string_view node,
                          const RenderOptions& o);
// method: monitoring.start|monitoring.stop|auto_failover.enable|auto_failover.disable|reload
std::string render_confirmation(const boost::json::value& result, std::string_view method, const RenderOptions& o);

// Overall health from the nodes: "healthy" (all up), "degraded" (a standby
// is down), "critical" (the primary is down or there is none).
std::string overall_health(const boost::json::value& status);

}  // namespace drd::ctl
