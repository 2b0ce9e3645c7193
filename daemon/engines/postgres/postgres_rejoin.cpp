// PostgresNode: actions on the server's files (pg_ctl, pg_rewind,
// pg_basebackup), run as os_user with bin_dir through the ProcessRunner.
// Config files are read and written with cat as os_user too, so drd itself
// needs no access to the data folder.
#include <spdlog/spdlog.h>

#include <ctime>
#include <filesystem>
#include <thread>

#include "daemon/engines/postgres/postgres_node.hpp"

namespace drd {

using namespace std::chrono_literals;
using pg::ms_left;

namespace {
SteadyTime now() { return std::chrono::steady_clock::now(); }
// pg_rewind copies the source's config files over the target's; these are
// kept and put back so the node keeps its own port, hba rules and settings.
const char* kConfigFiles[] = {"postgresql.conf", "postgresql.auto.conf", "pg_hba.conf", "pg_ident.conf"};

// A tool's output for an error message: trailing blank lines dropped, at most
// the last 2000 characters (the full text is in the log).
std::string trim_output(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r')) s.pop_back();
  if (s.size() > 2000) s = "..." + s.substr(s.size() - 2000);
  return s;
}
}  // namespace

Status PostgresNode::need_local(const std::string& action) const {
  if (!cfg_.data_dir || !cfg_.bin_dir)
    return make_error(Errc::invalid_argument,
                      action + " " + cfg_.name + " needs the server's files, but data_dir or bin_dir is not configured",
                      "add data_dir: and bin_dir: (and os_user:) to this node in the configuration");
  return ok_status();
}

Result<ProcessOutcome> PostgresNode::tool(std::vector<std::string> argv, SteadyTime deadline,
                                          std::map<std::string, std::string> env, std::string stdin_data) {
  if (argv[0].rfind("pg_", 0) == 0 || argv[0] == "postgres") argv[0] = (*cfg_.bin_dir / argv[0]).string();
  ProcessSpec spec{std::move(argv)};
  spec.user = cfg_.os_user;
  long long left = ms_left(deadline);
  spec.timeout = Millis(left < 1000 ? 1000 : left);
  spec.env = std::move(env);
  spec.stdin_data = std::move(stdin_data);
  const auto t0 = now();
  auto out = runner_.run(spec);
  if (!out) return named(out.error(), "run " + spec.argv[0] + " for");
  spdlog::debug("{}: {} {} took {} ms (exit {})", cfg_.name, spec.argv[0], spec.argv.size() > 1 ? spec.argv[1] : "",
                std::chrono::duration_cast<std::chrono::milliseconds>(now() - t0).count(), out->exit_code);
  out->output = pg::scrub(out->output, secrets());
  if (spec.argv[0] != "sh") {
    tool_log_ += "$ " + spec.argv[0] + "\n" + out->output;
    // What pg_basebackup, pg_rewind and pg_ctl start/stop say goes to drd's log
    // (they run rarely and their words are what an operator needs afterwards);
    // status checks stay at debug level.
    const std::string prog = std::filesystem::path(spec.argv[0]).filename().string();
    const bool chatty = prog == "pg_controldata" || (prog == "pg_ctl" && spec.argv.size() > 1 && spec.argv[1] == "status");
    std::size_t pos = 0;
    while (pos < out->output.size()) {
      auto nl = out->output.find('\n', pos);
      std::string line = out->output.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
      pos = nl == std::string::npos ? out->output.size() : nl + 1;
      if (line.empty()) continue;
      if (chatty) spdlog::debug("{}: {}: {}", cfg_.name, prog, line);
      else spdlog::info("{}: {}: {}", cfg_.name, prog, line);
    }
  }
  return out;
}

Result<pg::DataDirState> PostgresNode::data_dir_state(SteadyTime deadline) {
  // Exit 0 only for a folder holding a cluster (PG_VERSION), so a tool that
  // answers nothing in particular is treated as "a cluster is there" (the careful case).
  auto out = tool({"sh", "-c",
                   "if [ -f \"$1/PG_VERSION\" ]; then exit 0; elif [ ! -e \"$1\" ]; then exit 3; "
                   "elif [ -d \"$1\" ] && [ -z \"$(ls -A -- \"$1\")\" ]; then exit 4; else exit 5; fi",
                   "sh", cfg_.data_dir->string()},
                  deadline);
  if (!out) return out.error();
  switch (out->exit_code) {
    case 0: return pg::DataDirState::cluster;
    case 3: return pg::DataDirState::missing;
    case 4: return pg::DataDirState::empty;
    case 5: return pg::DataDirState::other;
    default:
      return make_error(Errc::io, "cannot inspect " + cfg_.data_dir->string() + " as " +
                                      cfg_.os_user.value_or("drd's user") + ": " + out->output);
  }
}

std::optional<std::string> PostgresNode::rewind_blocker(SteadyTime deadline) {
  // LC_ALL=C: the field names are translated otherwise.
  auto out = tool({"pg_controldata", "-D", cfg_.data_dir->string()}, deadline, {{"LC_ALL", "C"}});
  if (!out || !out->success()) return std::nullopt;  // pg_rewind itself will say what is wrong
  return pg::rewind_blocker(pg::parse_controldata(out->output));
}

Result<bool> PostgresNode::server_running(SteadyTime deadline) {
  auto out = tool({"pg_ctl", "status", "-D", cfg_.data_dir->string()}, deadline);
  if (!out) return out.error();
  if (out->exit_code == 0) return true;
  if (out->exit_code == 3) return false;
  return make_error(Errc::io, "pg_ctl status for " + cfg_.name + " failed (exit " +
                                  std::to_string(out->exit_code) + "): " + out->output);
}

Status PostgresNode::stop_server(SteadyTime deadline, bool* was_running, bool immediate) {
  auto running = server_running(deadline);
  if (!running) return running.error();
  if (was_running) *was_running = running.value();
  if (!running.value()) return ok_status();
  const std::string d = cfg_.data_dir->string();
  // fast first (clean shutdown, pg_rewind likes it); immediate if that hangs. A fence asks for
  // immediate only: fast ends sessions with SIGTERM, which finishes COMMITs waiting for a
  // synchronous standby locally (pg::fence_method).
  if (!immediate) {
    auto budget = ms_left(deadline);
    auto fast = tool({"pg_ctl", "stop", "-D", d, "-m", "fast", "-w", "-t",
                      std::to_string(pg::whole_seconds(budget * 2 / 3))},
                     now() + Millis(budget * 2 / 3 + 1000));
    if (fast && fast->success()) return ok_status();
  }
  auto imm = tool({"pg_ctl", "stop", "-D", d, "-m", "immediate", "-w", "-t",
                   std::to_string(pg::whole_seconds(ms_left(deadline)))},
                  deadline);
  if (imm && imm->success()) return ok_status();
  // A frozen (SIGSTOPped) postmaster ignores both; SIGKILL is the last resort.
  auto pid = tool({"sh", "-c", "head -n 1 \"$1\"/postmaster.pid", "sh", d}, deadline);
  if (pid && pid->success() && !pid->output.empty()) {
    std::string p = pid->output.substr(0, pid->output.find('\n'));
    auto k = tool({"pg_ctl", "kill", "KILL", p}, deadline);
    if (k && k->success()) {
      for (int i = 0; i < 100; ++i) {
        auto r = server_running(deadline);
        if (r && !r.value()) return ok_status();
        std::this_thread::sleep_for(50ms);
      }
    }
  }
  return make_error(Errc::timeout, "could not stop " + cfg_.name + " with pg_ctl: " +
                                       (imm ? imm->output : imm.error().message));
}

Status PostgresNode::start_server(SteadyTime deadline) {
  const std::string d = cfg_.data_dir->string();
  auto out = tool({"pg_ctl", "start", "-D", d, "-w", "-t", std::to_string(pg::whole_seconds(ms_left(deadline))),
                   "-l", d + "/drd-pg_ctl.log"},
                  deadline);
  if (!out) return out.error();
  if (!out->success())
    return make_error(out->timed_out ? Errc::timeout : Errc::io,
                      "pg_ctl start for " + cfg_.name + " failed: " + out->output,
                      "see " + d + "/drd-pg_ctl.log");
  return ok_status();
}

Result<std::map<std::string, std::string>> PostgresNode::save_config(SteadyTime deadline) {
  std::map<std::string, std::string> saved;
  for (const char* f : kConfigFiles) {
    auto path = (*cfg_.data_dir / f).string();
    auto out = tool({"sh", "-c", "test -f \"$1\" || exit 3; exec cat -- \"$1\"", "sh", path}, deadline);
    if (!out) return out.error();
    if (out->exit_code == 3) continue;
    if (!out->success()) return make_error(Errc::io, "cannot read " + path + ": " + out->output);
    saved[f] = out->output;
  }
  return saved;
}

Status PostgresNode::write_config(const std::map<std::string, std::string>& files, SteadyTime deadline) {
  for (const auto& [name, text] : files) {
    auto path = (*cfg_.data_dir / name).string();
    auto out = tool({"sh", "-c", "umask 077; cat > \"$1\"", "sh", path}, deadline, {}, text);
    if (!out) return out.error();
    if (!out->success()) return make_error(Errc::io, "cannot write " + path + ": " + out->output);
  }
  return ok_status();
}

Status PostgresNode::restore_config(const std::map<std::string, std::string>& saved,
                                    const std::string& primary_conninfo, SteadyTime deadline) {
  auto files = saved;
  files["postgresql.auto.conf"] = pg::set_auto_conf(files["postgresql.auto.conf"], "primary_conninfo", primary_conninfo);
  if (auto w = write_config(files, deadline); !w) return w;
  auto sig = (*cfg_.data_dir / "standby.signal").string();
  auto out = tool({"sh", "-c", "umask 077; : > \"$1\"", "sh", sig}, deadline);
  if (!out) return out.error();
  if (!out->success()) return make_error(Errc::io, "cannot create " + sig + ": " + out->output);
  return ok_status();
}

Status PostgresNode::become_standby_of(const NodeConfig& primary, const std::map<std::string, std::string>& saved,
                                       SteadyTime deadline) {
  auto conninfo = pg::primary_conninfo_for(primary, cfg_.name);
  if (!conninfo) return conninfo.error();
  if (auto r = restore_config(saved, conninfo.value(), deadline); !r) return r;
  if (auto s = start_server(deadline); !s) return s;
  conn_.reset();  // the old session died with the server
  return wait_streaming_from(primary, deadline);
}

Status PostgresNode::rejoin_with_rewind(const NodeConfig& primary, Millis timeout) {
  if (auto n = need_local("rejoin"); !n) return n;
  const auto deadline = now() + timeout;
  tool_log_.clear();
  auto src = pg::tool_conninfo_for(primary, "drd_rewind");
  if (!src) return named(src.error(), "rejoin");
  auto pw = node_password(primary);
  if (!pw) return named(pw.error(), "rejoin");
  std::map<std::string, std::string> env;
  if (!pw->empty()) env["PGPASSWORD"] = pw.value();  // never on the command line (ps shows it)

  // Checked before the server is touched: a refusal leaves the node as it was.
  if (auto why = rewind_blocker(deadline))
    return make_error(Errc::refused, "rejoin " + cfg_.name + ": pg_rewind cannot rewind " + cfg_.data_dir->string() +
                                         ": " + *why + "; nothing was changed",
                      rewind_hint());

  conn_.reset();
  bool was_running = false;
  if (auto s = stop_server(deadline, &was_running); !s) return named(s.error(), "rejoin");
  auto saved = save_config(deadline);
  if (!saved) return named(saved.error(), "rejoin");
  // PG15 updates the control file's timeline only at the first checkpoint after
  // promotion; without one pg_rewind sees the same timeline and rewinds nothing.
  // Not fatal: an unreachable primary makes pg_rewind fail with a clearer
  // message, and a missed timeline switch is caught by the timeline check.
  if (auto ck = remote_sql(primary, "CHECKPOINT", deadline); !ck) {
    spdlog::warn("rejoin {}: CHECKPOINT on {} failed: {}", cfg_.name, primary.name, ck.error().message);
    tool_log_ += "CHECKPOINT on " + primary.name + " failed: " + ck.error().message + "\n";
  }
  // pg_rewind runs crash recovery itself (postgres --single) if the target was not shut down cleanly.
  auto out = tool({"pg_rewind", "--target-pgdata=" + cfg_.data_dir->string(), "--source-server=" + src.value()},
                  deadline, env);
  if (!out) return out.error();
  if (!out->success()) {
    const std::string text = trim_output(pg::scrub(out->output, {pw.value()}));
    // Both refusals below come before pg_rewind changes a file: the old server is
    // put back as it was (started again if it was running, still fenced).
    std::string restarted;
    auto put_back = [&] {
      if (!was_running) return;
      auto st = start_server(now() + 60s);
      restarted = st ? "; " + cfg_.name + " was started again as it was (fenced)"
                     : "; " + cfg_.name + " stays stopped (" + st.error().message + ")";
    };
    switch (pg::classify_rewind_failure(text)) {
      case pg::RewindFailure::no_hints:
        put_back();
        return make_error(Errc::refused,
                          "rejoin " + cfg_.name + ": pg_rewind cannot rewind it: the cluster has neither data "
                          "checksums nor wal_log_hints=on (" + text + ")" + restarted,
                          rewind_hint());
      case pg::RewindFailure::wal_missing:
        put_back();
        return make_error(Errc::refused,
                          "rejoin " + cfg_.name + ": pg_rewind cannot rewind it: it diverged from " + primary.name +
                              " too long ago, and the WAL it needs (in " + cfg_.data_dir->string() +
                              "/pg_wal, back to the last checkpoint before the fork) is no longer there (" + text + ")" +
                              restarted,
                          rewind_hint());
      case pg::RewindFailure::other:
        break;
    }
    return make_error(out->timed_out ? Errc::timeout : Errc::io,
                      "rejoin " + cfg_.name + ": pg_rewind failed (exit " + std::to_string(out->exit_code) +
                          "): " + text,
                      "check that " + primary.name + " is reachable as a superuser (see drd's log for " +
                          "pg_rewind's output); if the data folder is damaged, use `drctl rejoin " + cfg_.name +
                          " --reclone`");
  }
  if (auto b = become_standby_of(primary, saved.value(), deadline); !b) return named(b.error(), "rejoin");
  last_action_ = "rewound with pg_rewind from " + primary.name + ", streaming";
  spdlog::info("rejoin {}: {}", cfg_.name, last_action_);
  return ok_status();
}

Status PostgresNode::reclone(const NodeConfig& primary, Millis timeout) {
  if (auto n = need_local("reclone"); !n) return n;
  const auto deadline = now() + timeout;
  tool_log_.clear();
  auto src = pg::tool_conninfo_for(primary, cfg_.name);
  if (!src) return named(src.error(), "reclone");
  auto pw = node_password(primary);
  if (!pw) return named(pw.error(), "reclone");
  std::map<std::string, std::string> env;
  if (!pw->empty()) env["PGPASSWORD"] = pw.value();

  const std::string d = cfg_.data_dir->string();
  auto state = data_dir_state(deadline);
  if (!state) return named(state.error(), "reclone");
  if (state.value() == pg::DataDirState::other)
    return make_error(Errc::refused,
                      "reclone " + cfg_.name + ": " + d + " is neither empty nor a PostgreSQL data folder (no PG_VERSION)",
                      "check data_dir in the configuration; move that folder away if it is really unused");
  if (state.value() != pg::DataDirState::cluster) return clone_fresh(primary, src.value(), env, deadline, pw.value());

  conn_.reset();
  if (auto s = stop_server(deadline); !s) return named(s.error(), "reclone");
  auto saved = save_config(deadline);
  if (!saved) return named(saved.error(), "reclone");
  const std::string aside = d + ".drd-old-" + std::to_string(std::time(nullptr));
  auto mv = tool({"mv", "--", d, aside}, deadline);
  if (!mv) return mv.error();
  if (!mv->success())
    return make_error(Errc::io, "reclone " + cfg_.name + ": cannot move " + d + " aside: " + mv->output,
                      "the data folder's parent must be writable by " + cfg_.os_user.value_or("drd's user"));
  auto bb = tool(basebackup_argv(src.value()), deadline, env);
  if (!bb || !bb->success()) {
    std::string why = bb ? pg::scrub(bb->output, {pw.value()}) : bb.error().message;
    auto back = tool({"sh", "-c", "rm -rf -- \"$1\" && mv -- \"$2\" \"$1\"", "sh", d, aside}, now() + 60s);
    std::string restored = back && back->success() ? "the old data folder was put back"
                                                   : "the old data folder is still at " + aside;
    return make_error(bb && bb->timed_out ? Errc::timeout : Errc::io,
                      "reclone " + cfg_.name + ": pg_basebackup failed: " + why + " (" + restored + ")");
  }
  if (auto b = become_standby_of(primary, saved.value(), deadline); !b) return named(b.error(), "reclone");
  last_action_ = "recloned from " + primary.name + " with pg_basebackup, streaming; old data kept at " + aside;
  spdlog::info("reclone {}: {}", cfg_.name, last_action_);
  return ok_status();
}

std::vector<std::string> PostgresNode::basebackup_argv(const std::string& source) const {
  // -R writes standby.signal (primary_conninfo is replaced by drd's own right after);
  // -X stream copies the WAL the copy needs; -c fast starts at once.
  return {"pg_basebackup", "-D", cfg_.data_dir->string(), "-R", "-X", "stream", "-c", "fast", "-d", source};
}

Status PostgresNode::clone_fresh(const NodeConfig& primary, const std::string& source,
                                 const std::map<std::string, std::string>& env, SteadyTime deadline,
                                 const std::string& password) {
  const std::string d = cfg_.data_dir->string();
  auto bb = tool(basebackup_argv(source), deadline, env);
  if (!bb || !bb->success()) {
    std::string why = bb ? trim_output(pg::scrub(bb->output, {password})) : bb.error().message;
    // Nothing of value was in the folder: remove the partial copy so a retry starts clean.
    auto rm = tool({"sh", "-c", "rm -rf -- \"$1\"", "sh", d}, now() + 60s);
    return make_error(bb && bb->timed_out ? Errc::timeout : Errc::io,
                      "clone " + cfg_.name + ": pg_basebackup into " + d + " failed: " + why +
                          (rm && rm->success() ? "" : " (the partial copy is still in " + d + ")"),
                      "check that the parent folder of " + d + " exists and is writable by " +
                          cfg_.os_user.value_or("drd's user") + ", and that " + primary.name +
                          " accepts replication connections (pg_hba.conf, max_wal_senders)");
  }
  // The copy carries the primary's own config files. This node must listen where
  // drd's configuration says it does: its URL's port goes in postgresql.auto.conf
  // (it overrides postgresql.conf). Everything else stays as on the primary.
  auto copied = save_config(deadline);
  if (!copied) return named(copied.error(), "clone");
  auto files = copied.value();
  if (auto params = pg::parse_conninfo(cfg_.pg_conninfo))
    if (auto port = pg::param(params.value(), "port"); port && port->find_first_not_of("0123456789") == std::string::npos)
      files["postgresql.auto.conf"] = pg::set_auto_conf(files["postgresql.auto.conf"], "port", *port);
  // A primary's synchronous_standby_names or fence must not be inherited.
  for (const char* k : {"synchronous_standby_names", "default_transaction_read_only"})
    files["postgresql.auto.conf"] = pg::set_auto_conf(files["postgresql.auto.conf"], k, std::nullopt);
  conn_.reset();
  if (auto b = become_standby_of(primary, files, deadline); !b) return named(b.error(), "clone");
  last_action_ = "cloned from " + primary.name + " with pg_basebackup into " + d + ", streaming";
  spdlog::info("clone {}: {}", cfg_.name, last_action_);
  return ok_status();
}

std::string PostgresNode::rewind_hint() const {
  return "rebuild it from the primary with `drctl rejoin " + cfg_.name +
         " --reclone` (a fresh pg_basebackup copy; the old data folder is kept aside); "
         "to make future rewinds possible set wal_log_hints = on (restart needed) and keep enough WAL (wal_keep_size)";
}

}  // namespace drd
