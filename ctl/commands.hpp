#pragma once
// Internal to ctl/: each command group file registers its subcommands here.
// A CommandSpec's option storage lives in shared_ptrs captured by its lambdas,
// so a parse is self-contained (tests parse many command lines in one process).
#include <CLI/CLI.hpp>
#include <boost/json.hpp>

#include <vector>

#include "ctl/cli.hpp"

namespace drd::ctl {

inline constexpr Millis kShortTimeout{30'000};
inline constexpr Millis kLongTimeout{3'600'000};  // backup, restore, verify, switchover, rejoin, clone

struct CommandSpec {
  CLI::App* app = nullptr;
  std::string method;
  Millis default_timeout = kShortTimeout;
  bool progress = false;
  std::function<boost::json::object()> params;  // called once parsing succeeded; null = {}
  Renderer render;
  ExitRule exit_rule;
  // Checks what CLI11 cannot express (e.g. one of two options required); called once parsing
  // succeeded. Returns a usage error saying what was expected, or "" when the line is fine.
  std::function<std::string()> check;
};

using Registry = std::vector<CommandSpec>;

void add_status_commands(CLI::App& app, Registry& reg);    // status, test, primary, health, alerts
void add_history_commands(CLI::App& app, Registry& reg);   // history, audit
void add_backup_commands(CLI::App& app, Registry& reg);    // backup, backups, verify, restore
void add_failover_commands(CLI::App& app, Registry& reg);  // failover, switchover, rejoin, clone
void add_control_commands(CLI::App& app, Registry& reg);   // monitoring/auto-failover toggles, reload, version

// Accepts what drd::parse_duration accepts ("1h", "30m", "7d").
CLI::Validator duration_validator();

}  // namespace drd::ctl
