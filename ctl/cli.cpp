#include "drd_version.hpp"
#include "ctl/cli.hpp"

#include <cstdlib>
#include <sstream>

#include "common/json_text.hpp"
#include "common/units.hpp"
#include "ctl/commands.hpp"

namespace drd::ctl {

std::optional<Millis> parse_timeout(std::string_view s) {
  if (s.empty()) return std::nullopt;
  const bool bare_number = s.find_first_not_of("0123456789.") == std::string_view::npos;
  if (bare_number) {
    std::string t(s);
    char* end = nullptr;
    double secs = std::strtod(t.c_str(), &end);
    if (end != t.c_str() + t.size() || secs <= 0) return std::nullopt;
    return Millis(static_cast<long long>(secs * 1000));
  }
  auto d = parse_duration(s);
  if (!d || d->count() <= 0) return std::nullopt;
  return *d;
}

CLI::Validator duration_validator() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        return parse_duration(s) ? std::string() : "not a duration like 30m, 1h or 7d: " + s;
      },
      "");
}

// The first word that is not an option (or an option's value): the command.
std::string first_command_word(const std::vector<std::string>& args) {
  static const char* const takes_value[] = {"--socket", "--config", "--lang", "--timeout"};
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--") return i + 1 < args.size() ? args[i + 1] : "";
    if (a.rfind("-", 0) == 0) {
      for (const char* opt : takes_value)
        if (a == opt) ++i;
      continue;
    }
    return a;
  }
  return {};
}

namespace {

struct Globals {
  GlobalOptions opts;
  std::string lang = "en";
  std::string timeout;
};

void add_globals(CLI::App& app, Globals& g) {
  app.add_option("--socket", g.opts.socket, "drd's control socket (else $DRD_SOCKET, --config, /etc/drd/drd.yaml, /run/drd/drd.sock)")
      ->type_name("PATH");
  app.add_option("--config", g.opts.config, "read control.socket from this drd config file")->type_name("FILE");
  app.add_flag("--json", g.opts.json, "print the daemon's result as one JSON document");
  app.add_option("--lang", g.lang, "language of the text output (default en)")->type_name("LANG")->check(CLI::IsMember({"en", "zh"}));
  app.add_option("--timeout", g.timeout, "how long to wait for drd (default 30s; 1h for backup, restore, verify, switchover, rejoin, clone)")
      ->type_name("DURATION")
      ->check(CLI::Validator(
          [](std::string& s) -> std::string {
            return parse_timeout(s) ? std::string() : "not a timeout like 30s, 5m or 1h: " + s;
          },
          ""));
  app.add_flag("--no-color", g.opts.no_color, "no ANSI colours or emoji (also: NO_COLOR=1)");
}

// "drctl failover NODE [--force]": what a command expects, built from its CLI11 definition.
std::string usage_line(const CLI::App& sub) {
  std::string line = "drctl " + sub.get_name();
  const CLI::Option* help = sub.get_help_ptr();
  for (const CLI::Option* o : sub.get_options()) {
    if (o == help) continue;
    if (o->get_positional()) {
      std::string name = o->get_name(true);
      line += o->get_required() ? " " + name : " [" + name + "]";
    } else {
      std::string name = o->get_name();
      std::string value = o->get_type_name();
      bool flag = o->get_expected_min() == 0;
      line += " [" + name + (flag ? "" : " " + (value.empty() ? std::string("VALUE") : value)) + "]";
    }
  }
  return line;
}

bool wants_json(const std::vector<std::string>& args) {
  for (const auto& a : args) {
    if (a == "--") return false;
    if (a == "--json") return true;
  }
  return false;
}

}  // namespace

std::string json_error_line(const std::string& message, boost::json::object extra) {
  boost::json::object err{{"message", message}};
  for (auto& kv : extra) err[kv.key()] = kv.value();
  return serialize_plain(boost::json::object{{"error", std::move(err)}}) + "\n";
}

namespace {

// A usage error: "drctl: WHAT", then what the command expects (or where to look), exit 2.
// With --json, the same as a JSON document on stdout.
ParseOutcome usage_failure(const std::vector<std::string>& args, const std::string& what, const CLI::App* sub) {
  ParseOutcome outcome;
  outcome.exit_code = 2;
  std::string usage = sub ? usage_line(*sub) : "";
  outcome.err = "drctl: " + what + "\n" +
                (sub ? "usage: " + usage + "\nRun 'drctl " + sub->get_name() + " --help' for details.\n"
                     : std::string("Run 'drctl --help' for the list of commands and options.\n"));
  if (wants_json(args)) {
    boost::json::object extra{{"usage_error", true}};
    if (sub) extra["usage"] = usage;
    outcome.out = json_error_line(what, std::move(extra));
  }
  return outcome;
}

}  // namespace

ParseOutcome parse_command_line(const std::vector<std::string>& args) {
  CLI::App app("drctl: administer drd, the disaster-recovery daemon for SQLite and PostgreSQL", "drctl");
  app.fallthrough();  // global options may follow the subcommand; set before adding subcommands
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("drctl ") + drd::kVersion);
  app.footer("Exit codes: 0 done, 1 refused or failed, 2 usage error, 3 drd unreachable.\n"
             "Reference: docs/drctl.md");
  Globals g;
  add_globals(app, g);
  Registry reg;
  add_status_commands(app, reg);
  add_history_commands(app, reg);
  add_backup_commands(app, reg);
  add_failover_commands(app, reg);
  add_control_commands(app, reg);

  ParseOutcome outcome;
  if (std::string word = first_command_word(args); !word.empty()) {
    bool known = false;
    for (auto& spec : reg) known = known || spec.app->check_name(word);
    if (!known) return usage_failure(args, "unknown command '" + word + "'", nullptr);
  }
  std::vector<std::string> reversed(args.rbegin(), args.rend());  // CLI11 consumes from the back
  try {
    app.parse(reversed);
  } catch (const CLI::CallForHelp& e) {
    std::ostringstream out, err;
    outcome.exit_code = app.exit(e, out, err);
    outcome.out = out.str();
    return outcome;
  } catch (const CLI::CallForAllHelp& e) {
    std::ostringstream out, err;
    outcome.exit_code = app.exit(e, out, err);
    outcome.out = out.str();
    return outcome;
  } catch (const CLI::CallForVersion& e) {
    outcome.out = std::string(e.what()) + "\n";
    return outcome;
  } catch (const CLI::ParseError& e) {
    const CLI::App* sub = nullptr;
    for (auto& spec : reg)
      if (spec.app->parsed()) sub = spec.app;
    const std::string what = e.what();
    if (!sub && dynamic_cast<const CLI::RequiredError*>(&e))
      return usage_failure(args, "a command is required, e.g. drctl status", nullptr);
    return usage_failure(args, what, sub);
  }

  const CommandSpec* chosen = nullptr;
  for (auto& spec : reg)
    if (spec.app->parsed()) chosen = &spec;
  if (!chosen)  // require_subcommand(1) makes this unreachable; stay safe anyway
    return usage_failure(args, "a command is required, e.g. drctl status", nullptr);
  if (chosen->check)
    if (std::string what = chosen->check(); !what.empty()) return usage_failure(args, what, chosen->app);
  Invocation inv;
  inv.globals = g.opts;
  inv.globals.lang = g.lang == "zh" ? Lang::zh : Lang::en;
  if (!g.timeout.empty()) inv.globals.timeout = parse_timeout(g.timeout);
  inv.command = chosen->app->get_name();
  inv.method = chosen->method;
  inv.params = chosen->params ? chosen->params() : boost::json::object{};
  inv.timeout = inv.globals.timeout.value_or(chosen->default_timeout);
  inv.progress = chosen->progress;
  inv.render = chosen->render;
  inv.exit_rule = chosen->exit_rule;
  outcome.invocation = std::move(inv);
  return outcome;
}

}  // namespace drd::ctl
