// Switches and housekeeping: start/stop-monitoring, enable/disable-auto-failover,
// reload, and `version` (local; asks drd for its version when reachable).
#include "ctl/commands.hpp"

namespace drd::ctl {

namespace json = boost::json;

void add_control_commands(CLI::App& app, Registry& reg) {
  struct Toggle { const char* name; const char* help; const char* method; };
  const Toggle toggles[] = {
      {"start-monitoring", "start health monitoring (persisted)", "monitoring.start"},
      {"stop-monitoring", "stop health monitoring (persisted)", "monitoring.stop"},
      {"enable-auto-failover", "let drd fail over on its own (persisted)", "auto_failover.enable"},
      {"disable-auto-failover", "failover only when asked (persisted)", "auto_failover.disable"},
      {"reload", "make drd re-read its config file (a bad config is refused)", "reload"},
  };
  for (const auto& t : toggles) {
    CommandSpec spec;
    spec.app = app.add_subcommand(t.name, t.help);
    spec.method = t.method;
    std::string method = t.method;
    spec.render = [method](const json::value& r, const RenderOptions& o) { return render_confirmation(r, method, o); };
    reg.push_back(std::move(spec));
  }
  CommandSpec version;
  version.app = app.add_subcommand("version", "drctl's version, and drd's when it can be reached");
  version.method = "";  // handled locally by run.cpp
  reg.push_back(std::move(version));
}

}  // namespace drd::ctl
