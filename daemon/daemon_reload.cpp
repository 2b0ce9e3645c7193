// Reload: re-read the config file and apply what can change while running.
// A bad file, or a change that needs a restart, is refused and the running
// config stays in force.
#include <spdlog/spdlog.h>

#include "common/log.hpp"
#include "daemon/backup/key.hpp"
#include "daemon/daemon.hpp"

namespace drd {

namespace {

// Changes that the running daemon cannot take without a restart, or "" if none.
std::string needs_restart(const Config& old_cfg, const Config& new_cfg) {
  if (old_cfg.nodes.size() != new_cfg.nodes.size()) return "the set of databases changed";
  for (auto& n : new_cfg.nodes) {
    const NodeConfig* o = old_cfg.find_node(n.name);
    if (!o) return "database '" + n.name + "' was added";
    if (o->url != n.url || o->engine != n.engine) return "the URL of database '" + n.name + "' changed";
  }
  if (old_cfg.state_dir != new_cfg.state_dir) return "state_dir changed";
  if (old_cfg.control.socket != new_cfg.control.socket) return "control.socket changed";
  if (old_cfg.current_link != new_cfg.current_link) return "current_link changed";
  if (old_cfg.local != new_cfg.local) return "local changed";
  const auto& a = old_cfg.store;
  const auto& b = new_cfg.store;
  if (a.type != b.type || a.endpoints != b.endpoints || a.prefix != b.prefix || a.ttl != b.ttl ||
      a.peer_listen != b.peer_listen || a.username != b.username || a.failsafe != b.failsafe)
    return "the store section changed";
  return "";
}

}  // namespace

Result<json::value> Daemon::reload() {
  auto loaded = load_config(config_.file);
  // A bad backup key refuses the reload like any other config problem: found now, not at the
  // next backup.
  if (loaded.config && loaded.config->backup.key_file)
    if (auto why = backup::key_file_problem(*loaded.config->backup.key_file)) {
      loaded.problems.push_back(ConfigProblem{config_.file.string(), 0, 0, "backup.encryption.key_file: " + *why});
      loaded.config.reset();
    }
  if (!loaded.config) {
    std::string msg = "new config refused (" + std::to_string(loaded.problems.size()) + " problem" +
                      (loaded.problems.size() == 1 ? "" : "s") + "); the running config stays in force";
    json::array problems;
    for (auto& p : loaded.problems) {
      spdlog::error("{}", p.to_string());
      problems.push_back(json::string(p.to_string()));
      msg += "\n  " + p.to_string();
    }
    log::event(spdlog::level::err, "reload_refused", {}, msg);
    return make_error(Errc::invalid_argument, msg);
  }
  if (auto why = needs_restart(config_, *loaded.config); !why.empty()) {
    log::event(spdlog::level::err, "reload_refused", {}, "reload refused: " + why + "; restart drd to apply it");
    return make_error(Errc::refused, "reload refused: " + why, "restart drd (systemctl restart drd) to apply it");
  }
  bool interval_changed = loaded.config->monitoring.interval != config_.monitoring.interval;
  config_ = std::move(*loaded.config);
  mon_->reconfigure(config_);
  if (interval_changed && state_.monitoring()) probes_->schedule_all(config_.monitoring.interval);
  log::event(spdlog::level::info, "reload", {}, "configuration reloaded from " + config_.file.string());
  after_round();
  return json::value(json::object{{"reloaded", true}, {"config", config_.file.string()}});
}

}  // namespace drd
