// Logs kept by drd: failover history and the audit log.
#include <memory>

#include "ctl/commands.hpp"

namespace drd::ctl {

namespace json = boost::json;

namespace {

CommandSpec limited(CLI::App& app, const char* name, const char* help, const char* method, Renderer render) {
  auto limit = std::make_shared<int>(0);
  CommandSpec spec;
  spec.app = app.add_subcommand(name, help);
  spec.app->add_option("--limit", *limit, "at most N entries, newest first (drd's default: 50)")
      ->check(CLI::Range(1, 1000000))
      ->type_name("N");
  spec.method = method;
  spec.params = [limit] {
    json::object p;
    if (*limit > 0) p["limit"] = *limit;
    return p;
  };
  spec.render = std::move(render);
  return spec;
}

}  // namespace

void add_history_commands(CLI::App& app, Registry& reg) {
  reg.push_back(limited(app, "history", "failover history: time, from, to, mode, reason, duration", "history",
                        render_history));
  reg.push_back(limited(app, "audit", "the audit log of state-changing calls", "audit", render_audit));
}

}  // namespace drd::ctl
