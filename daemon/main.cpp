// drd: the disaster-recovery daemon. Never forks; systemd (or the shell) supervises it.
#include "drd_version.hpp"
#include <fmt/ranges.h>
#include <malloc.h>
#include <systemd/sd-daemon.h>

#include <CLI/CLI.hpp>
#include <boost/asio.hpp>
#include <cstdio>
#include <cstdlib>
#include <iostream>

#include "common/config.hpp"
#include "common/config_paths.hpp"
#include "common/log.hpp"
#include "common/process.hpp"
#include "daemon/backup/key.hpp"
#include "daemon/rpc/control_server.hpp"
#include "daemon/coord/coordinator.hpp"
#include "daemon/coord/host_files.hpp"
#include "daemon/observability/http_server.hpp"
#include "daemon/daemon.hpp"
#include "daemon/observability/notifier.hpp"

namespace asio = boost::asio;

int main(int argc, char** argv) {
  // drd runs many short-lived threads (zstd workers, backup and archive jobs); glibc gives each
  // its own malloc arena (up to 8 per core) and keeps them mapped, which put drd near 80 MB of
  // RSS after a 1 GiB backup and WAL archiving, against about 50 MB with two arenas
  // (docs/benchmarks.md). MALLOC_ARENA_MAX in the environment still wins.
  if (!std::getenv("MALLOC_ARENA_MAX")) ::mallopt(M_ARENA_MAX, 2);
  CLI::App app{"drd - disaster recovery daemon for SQLite and PostgreSQL"};
  std::string config_path = "/etc/drd/drd.yaml";
  bool foreground = false, check_only = false, version = false;
  std::string level = "info";
  app.add_option("-c,--config", config_path, "configuration file")->capture_default_str();
  app.add_flag("-f,--foreground", foreground, "log to stderr even under systemd");
  app.add_flag("--check-config", check_only, "validate the configuration, print every resolved path and exit (0 ok, 2 problems)");
  app.add_option("--log-level", level, "trace, debug, info, warn, error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}))->capture_default_str();
  app.add_flag("--version", version, "print the version and exit");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }
  if (version) {
    std::printf("drd %s\n", drd::kVersion);
    return 0;
  }

  auto loaded = drd::load_config(config_path);
  if (!loaded.config) {
    for (auto& p : loaded.problems) std::cerr << p.to_string() << "\n";
    std::cerr << "drd: " << loaded.problems.size() << " problem" << (loaded.problems.size() == 1 ? "" : "s")
              << " in " << config_path << "\n";
    return 2;
  }
  // The backup key is checked now rather than at the next backup. --check-config fails on it;
  // a running drd still starts (failover matters more than backups) but says so loudly below.
  std::optional<std::string> key_problem;
  if (loaded.config->backup.key_file)
    if (auto why = drd::backup::key_file_problem(*loaded.config->backup.key_file))
      key_problem = config_path + ": backup.encryption.key_file: " + *why;
  // What is at current_link: only a symlink (or nothing) is ever replaced. A regular file
  // there may be the application's own database, so drd refuses to start (exit 2, a config
  // problem) and --check-config reports it.
  std::optional<drd::LinkVerdict> link_verdict;
  if (loaded.config->current_link) {
    std::vector<std::filesystem::path> files;
    for (const auto& n : loaded.config->nodes) files.push_back(n.sqlite_path);
    link_verdict = drd::judge_current_link(*loaded.config->current_link,
                                           drd::inspect_link(*loaded.config->current_link), files);
  }
  const bool link_error = link_verdict && link_verdict->level == drd::LinkLevel::error;
  if (check_only) {
    // Every resolved path, one "KEY = /absolute/path" line each, then the verdict.
    for (const auto& p : drd::resolved_paths(*loaded.config)) std::cout << p.key << " = " << p.path.string() << "\n";
    int problems = 0;
    if (key_problem) {
      std::cerr << *key_problem << "\n";
      ++problems;
    }
    if (link_verdict && link_verdict->level == drd::LinkLevel::warning)
      std::cerr << config_path << ": warning: " << link_verdict->message << "\n";
    if (link_error) {
      std::cerr << config_path << ": " << link_verdict->message << "\n";
      ++problems;
    }
    if (problems > 0) {
      std::cerr << "drd: " << problems << " problem" << (problems == 1 ? "" : "s") << " in " << config_path << "\n";
      return 2;
    }
    std::cout << config_path << ": ok (" << loaded.config->nodes.size() << " databases)\n";
    return 0;
  }
  if (link_error) {
    std::cerr << config_path << ": " << link_verdict->message << "\n";
    return 2;
  }
  drd::Config config = std::move(*loaded.config);

  drd::log::init(drd::log::detect_target(foreground), spdlog::level::from_str(level));
  spdlog::info("drd {} starting with {} ({} databases)", drd::kVersion, config.file.string(), config.nodes.size());
  if (key_problem)
    drd::log::event(spdlog::level::err, "backup_key_invalid", {}, *key_problem + "; backups will fail until it is fixed");
  if (config.base_dir != config.file.parent_path())
    spdlog::info("relative paths resolve against base_dir {}", config.base_dir.string());
  if (link_verdict && link_verdict->level == drd::LinkLevel::warning) spdlog::warn("{}", link_verdict->message);
  else if (link_verdict) spdlog::info("{}", link_verdict->message);

  auto store = drd::SqliteStateStore::open(config.state_dir / "state.db");
  if (!store) {
    spdlog::critical("{}", store.error().message);
    return 1;
  }

  if (auto remote = drd::coord::keep_local_files_only(config); !remote.empty())
    spdlog::info("multi-host mode: data_dir/bin_dir/os_user of {} ignored: only the drd on a database's own host "
                 "touches its server's files", fmt::join(remote, ", "));

  asio::io_context io(1);
  drd::SystemClock clock;
  drd::SdNotifier notifier;
  drd::RealProcessRunner runner;
  drd::Daemon daemon(io, config, std::move(store.value()), clock, notifier, runner);
  drd::ControlServer server(io, daemon);

  // Socket activation: systemd hands over the listening socket (drd.socket).
  int fds = sd_listen_fds(1);
  drd::Status listening = fds >= 1 ? server.adopt(SD_LISTEN_FDS_START)
                                   : server.listen(config.control.socket, config.control.socket_group);
  if (!listening) {
    spdlog::critical("{}{}", listening.error().message,
                     listening.error().hint.empty() ? "" : " (" + listening.error().hint + ")");
    return 1;
  }

  if (config.store.type == "etcd") {
    // Secrets are read here, once; the loader only checked the paths.
    std::string password, peer_token;
    if (config.store.password_file) {
      auto p = drd::monitoring::read_token_file(*config.store.password_file, "store.password_file");
      if (!p) {
        spdlog::critical("{}", p.error().message);
        return 1;
      }
      password = *p;
    }
    if (config.store.peer_token_file) {
      auto t = drd::monitoring::read_token_file(*config.store.peer_token_file, "store.peer_token_file");
      if (!t) {
        spdlog::critical("{}", t.error().message);
        return 1;
      }
      peer_token = *t;
    }
    spdlog::info("multi-host mode: drd {} on etcd {} (prefix {}, ttl {})", config.local,
                 fmt::join(config.store.endpoints, ","), config.store.prefix, drd::format_duration(config.store.ttl));
    if (auto st = daemon.set_coordinator(std::make_unique<drd::coord::Coordinator>(config, password, peer_token, runner)); !st) {
      spdlog::critical("{}", st.error().message);
      return 1;
    }
  }

  if (auto http = daemon.start_http(); !http) {
    spdlog::critical("{}", http.error().message);
    return 1;
  }

  bool stopping = false;
  auto shutdown = [&] {
    if (stopping) return;
    stopping = true;
    notifier.notify("STOPPING=1");
    spdlog::info("drd stopping");
    server.close();
    daemon.stop();
    io.stop();
  };

  asio::signal_set signals(io, SIGINT, SIGTERM, SIGHUP);
  std::function<void()> wait_signal = [&] {
    signals.async_wait([&](const boost::system::error_code& ec, int sig) {
      if (ec) return;
      if (sig == SIGHUP) {
        asio::post(daemon.control(), [&] {
          auto r = daemon.reload();
          if (!r) spdlog::error("SIGHUP reload: {}", r.error().message);
        });
        wait_signal();
        return;
      }
      asio::post(daemon.control(), shutdown);
    });
  };
  wait_signal();

  daemon.start([&] {
    notifier.notify("READY=1");
    notifier.notify("STATUS=" + daemon.status_line());
    spdlog::info("drd ready on {}: {}", config.control.socket.string(), daemon.status_line());
  });
  io.run();
  spdlog::info("drd stopped");
  return 0;
}
