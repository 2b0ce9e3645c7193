// Read-only views: status, test, primary, health, alerts.
#include <memory>

#include "ctl/commands.hpp"
#include "ctl/json_access.hpp"

namespace drd::ctl {

namespace json = boost::json;

void add_status_commands(CLI::App& app, Registry& reg) {
  CommandSpec status;
  status.app = app.add_subcommand("status", "the status panel: primary, nodes, health, failover state");
  status.method = "status";
  status.render = render_status;
  reg.push_back(std::move(status));

  {
    auto node = std::make_shared<std::string>();
    CommandSpec test;
    test.app = app.add_subcommand("test", "probe every node now, one line each; exit 1 if any fails");
    test.app->add_option("--node", *node, "probe only this node")->type_name("NODE");
    test.method = "test";
    test.params = [node] {
      json::object p;
      if (!node->empty()) p["node"] = *node;
      return p;
    };
    test.render = render_test;
    test.exit_rule = [](const json::value& r) {
      for (const auto& n : jv::arr(r, "nodes"))
        if (!jv::boolean(n, "ok").value_or(false)) return 1;
      return 0;
    };
    reg.push_back(std::move(test));
  }

  {
    auto url = std::make_shared<bool>(false);
    CommandSpec primary;
    primary.app = app.add_subcommand("primary", "the current primary's name");
    primary.app->add_flag("--url", *url, "print its URL (credentials removed) instead");
    primary.method = "primary";
    primary.render = [url](const json::value& r, const RenderOptions&) { return render_primary(r, *url); };
    reg.push_back(std::move(primary));
  }

  {
    struct Opts { std::string since, node; };
    auto o = std::make_shared<Opts>();
    CommandSpec health;
    health.app = app.add_subcommand("health", "per node: availability %, p50/p95/p99 response time, failures, outages");
    health.app->add_option("--since", o->since, "how far back (default 1h)")->check(duration_validator());
    health.app->add_option("--node", o->node, "only this node")->type_name("NODE");
    health.method = "health";
    health.params = [o] {
      json::object p;
      if (!o->since.empty()) p["since"] = o->since;
      if (!o->node.empty()) p["node"] = o->node;
      return p;
    };
    health.render = render_health;
    reg.push_back(std::move(health));
  }

  CommandSpec alerts;
  alerts.app = app.add_subcommand("alerts", "firing and recent alerts");
  alerts.method = "alerts";
  alerts.render = render_alerts;
  reg.push_back(std::move(alerts));
}

}  // namespace drd::ctl
