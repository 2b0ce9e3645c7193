// Role changes: failover, switchover, rejoin, clone.
#include <memory>

#include "ctl/commands.hpp"

namespace drd::ctl {

namespace json = boost::json;

void add_failover_commands(CLI::App& app, Registry& reg) {
  {
    struct Opts { std::string node; bool force = false; };
    auto o = std::make_shared<Opts>();
    CommandSpec failover;
    failover.app = app.add_subcommand("failover", "promote NODE now (manual failover)");
    failover.app->add_option("NODE", o->node, "the standby to promote")->required()->type_name("");
    failover.app->add_flag("--force", o->force, "promote even if it lags more than failover.max_lag");
    failover.method = "failover";
    failover.params = [o] {
      json::object p;
      p["node"] = o->node;
      if (o->force) p["force"] = true;
      return p;
    };
    failover.render = [o](const json::value& r, const RenderOptions& ro) {
      return render_transition(r, "failover", o->node, ro);
    };
    reg.push_back(std::move(failover));
  }
  {
    auto node = std::make_shared<std::string>();
    CommandSpec sw;
    sw.app = app.add_subcommand("switchover", "planned role swap to NODE, no data lost");
    sw.app->add_option("NODE", *node, "the standby to promote")->required()->type_name("");
    sw.method = "switchover";
    sw.default_timeout = kLongTimeout;
    sw.params = [node] { return json::object{{"node", *node}}; };
    sw.render = [node](const json::value& r, const RenderOptions& ro) {
      return render_transition(r, "switchover", *node, ro);
    };
    reg.push_back(std::move(sw));
  }
  {
    struct Opts { std::string node; bool reclone = false; bool discard = false; };
    auto o = std::make_shared<Opts>();
    CommandSpec rejoin;
    rejoin.app = app.add_subcommand("rejoin", "bring a failed old primary back as a standby");
    rejoin.app->add_option("NODE", o->node, "the node to bring back")->required()->type_name("");
    rejoin.app->add_flag("--reclone", o->reclone, "copy it afresh from the primary instead of rewinding");
    rejoin.app->add_flag("--discard", o->discard,
                         "overwrite NODE's copy even if its history is longer than or diverges from the primary's "
                         "(SQLite; without it drd refuses and keeps both)");
    rejoin.method = "rejoin";
    rejoin.default_timeout = kLongTimeout;
    rejoin.params = [o] {
      json::object p;
      p["node"] = o->node;
      if (o->reclone) p["reclone"] = true;
      if (o->discard) p["discard"] = true;
      return p;
    };
    rejoin.render = [o](const json::value& r, const RenderOptions& ro) { return render_rejoin(r, "rejoin", o->node, ro); };
    reg.push_back(std::move(rejoin));
  }
  {
    auto node = std::make_shared<std::string>();
    CommandSpec clone;
    clone.app = app.add_subcommand("clone", "rebuild NODE as a standby from a fresh copy of the primary");
    clone.app->add_option("NODE", *node, "the node to rebuild")->required()->type_name("");
    clone.method = "clone";
    clone.default_timeout = kLongTimeout;
    clone.params = [node] { return json::object{{"node", *node}}; };
    clone.render = [node](const json::value& r, const RenderOptions& ro) { return render_rejoin(r, "clone", *node, ro); };
    reg.push_back(std::move(clone));
  }
}

}  // namespace drd::ctl
