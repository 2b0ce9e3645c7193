// Swapping a node's data folder for a copy prepared from a backup beside it (on the backup
// runtime's restore worker, see daemon/backup/service/backup_pg_standby.cpp and backup_pg_primary.cpp):
// PostgresNode::reseed_from (a standby, `drctl restore ID --node STANDBY`) and
// PostgresNode::replace_primary_data (the primary rolled back, `--node PRIMARY --force`). Like
// rejoin and reclone, every file action runs as os_user through the ProcessRunner.
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

// The primary removed WAL the standby still needs: no amount of waiting helps.
bool wal_gone(const std::string& log) { return log.find("has already been removed") != std::string::npos; }
}  // namespace

std::string PostgresNode::start_again(bool was_running) {
  if (!was_running) return cfg_.name + " was not running before and stays stopped";
  auto st = start_server(now() + 60s);
  return st ? cfg_.name + " was started again as it was" : cfg_.name + " stays stopped (" + st.error().message + ")";
}

std::string PostgresNode::server_log_tail() {
  const std::string d = cfg_.data_dir->string();
  auto t = tool({"sh", "-c", "tail -n 15 -- \"$1\"/drd-pg_ctl.log 2>/dev/null", "sh", d}, now() + 10s);
  return t && t->success() ? pg::scrub(t->output, secrets()) : std::string();
}

Result<PostgresNode::DataSwap> PostgresNode::swap_in(const std::string& what, const std::filesystem::path& prepared,
                                                     SteadyTime deadline, std::vector<std::string>& discard) {
  const std::string d = cfg_.data_dir->string(), p = prepared.string();
  // Folders to delete are handed back (discard): removing a whole data folder can take minutes,
  // and this runs on the cluster worker, which must stay free for ticks and failovers.
  auto check = tool({"sh", "-c", "test -f \"$1/PG_VERSION\" && test -f \"$1/global/pg_control\"", "sh", p}, deadline);
  if (!check || !check->success()) {
    discard.push_back(p);
    return make_error(Errc::io, what + ": the prepared copy " + p + " is missing or incomplete; nothing was changed");
  }
  conn_.reset();
  DataSwap swap;
  if (auto s = stop_server(deadline, &swap.was_running); !s) {
    discard.push_back(p);
    return make_error(s.error().code, what + ": " + s.error().message + "; the restored copy was discarded");
  }
  auto saved = save_config(deadline);
  if (!saved) {
    discard.push_back(p);
    return make_error(saved.error().code,
                      what + ": " + saved.error().message + "; nothing was changed, " + start_again(swap.was_running));
  }
  swap.saved = std::move(saved.value());
  swap.aside = d + ".drd-old-" + std::to_string(std::time(nullptr));
  auto mv = tool({"mv", "--", d, swap.aside}, deadline);
  if (!mv || !mv->success()) {
    discard.push_back(p);
    return make_error(Errc::io,
                      what + ": cannot move " + d + " aside: " + (mv ? mv->output : mv.error().message) +
                          "; nothing was changed, " + start_again(swap.was_running),
                      "the data folder's parent must be writable by " + cfg_.os_user.value_or("drd's user"));
  }
  auto in = tool({"mv", "--", p, d}, deadline);
  if (!in || !in->success()) {
    auto back = tool({"mv", "--", swap.aside, d}, now() + 60s);
    if (back && back->success()) discard.push_back(p);
    const std::string why = in ? in->output : in.error().message;
    if (!back || !back->success())
      return make_error(Errc::io, what + ": cannot rename " + p + " to " + d + " (" + why +
                                      ") nor move the old data folder back: it is at " + swap.aside);
    return make_error(Errc::io, what + ": cannot rename " + p + " to " + d + " (" + why + "); nothing was changed, " +
                                    start_again(swap.was_running));
  }
  // pg_basebackup copied the source's drd-pg_ctl.log: start this node's log afresh so the tail
  // quoted on failure is this start's.
  (void)tool({"rm", "-f", "--", d + "/drd-pg_ctl.log"}, deadline);
  return swap;
}

Error PostgresNode::swap_back(const std::string& what, const DataSwap& swap, const Error& failed,
                              const std::string& tail, std::vector<std::string>& discard, const std::string& hint) {
  const std::string d = cfg_.data_dir->string();
  conn_.reset();
  std::string outcome;
  // Never remove a folder a server still runs on: then the old one stays aside for the operator.
  auto stopped = stop_server(now() + 60s);
  const std::string failed_copy = d + ".drd-discard-" + std::to_string(std::time(nullptr));
  auto back = stopped ? tool({"sh", "-c", "mv -- \"$1\" \"$3\" && mv -- \"$2\" \"$1\"", "sh", d, swap.aside, failed_copy},
                             now() + 60s)
                      : Result<ProcessOutcome>(stopped.error());
  if (!stopped) {
    outcome = "the restored copy's server could not be stopped (" + stopped.error().message + "), so it still runs in " +
              d + "; the old data folder is at " + swap.aside;
  } else if (back && back->success()) {
    discard.push_back(failed_copy);
    outcome = "the old data folder was put back; " + start_again(swap.was_running);
  } else {
    outcome = "the old data folder could NOT be put back: it is at " + swap.aside + " (" +
              (back ? back->output : back.error().message) + ")";
  }
  std::string why = failed.message;
  while (!why.empty() && (why.back() == '\n' || why.back() == ' ')) why.pop_back();
  std::string msg = what + ": " + why + "; " + outcome;
  if (!tail.empty()) msg += "\nserver log of the restored copy (last lines):\n" + tail;
  spdlog::error("{}", msg);
  // start_server's hint names the copy's log file, which went with the copy (its tail is above).
  return make_error(failed.code, msg, failed.hint.find("drd-pg_ctl.log") == std::string::npos && !failed.hint.empty()
                                          ? failed.hint
                                          : hint);
}

Status PostgresNode::reseed_from(const NodeConfig& primary, const std::filesystem::path& prepared, Millis timeout,
                                 std::vector<std::string>& discard) {
  const std::string what = "restore onto " + cfg_.name;
  if (auto n = need_local(what + " (re-seed from a backup):"); !n) return n;
  const auto deadline = now() + timeout;
  tool_log_.clear();
  auto swapped = swap_in(what, prepared, deadline, discard);
  if (!swapped) return swapped.error();
  const DataSwap& swap = swapped.value();

  // From here a failure puts the old folder back.
  const std::string hint = "try a newer backup, or rebuild " + cfg_.name + " from the primary with `drctl rejoin " +
                           cfg_.name + " --reclone`";
  auto put_back = [&](const Error& failed, const std::string& tail) {
    return swap_back(what, swap, failed, tail, discard, hint);
  };
  auto conninfo = pg::primary_conninfo_for(primary, cfg_.name);
  if (!conninfo) return put_back(conninfo.error(), "");
  if (auto r = restore_config(swap.saved, conninfo.value(), deadline); !r) return put_back(r.error(), "");
  if (auto s = start_server(deadline); !s) return put_back(s.error(), server_log_tail());
  conn_.reset();
  // become_standby_of's wait, in short rounds: a standby that needs WAL the primary has removed
  // retries forever, and its log says so at once. pg_stat_wal_receiver can show "streaming"
  // for a moment before the primary finds that WAL missing, so streaming alone is not enough:
  // the copy must also receive everything the primary had written when streaming was first seen.
  std::optional<std::string> catch_up;  // the primary's LSN then
  std::string waiting = "not streaming yet";
  for (;;) {
    if (!catch_up) {
      auto w = wait_streaming_from(primary, std::min(deadline, now() + 3s));
      if (w) {
        auto lsn = remote_sql(primary, "SELECT pg_current_wal_lsn()::text", deadline);
        if (lsn && !lsn->empty() && !lsn->back().rows.empty() && lsn->back().rows[0][0])
          catch_up = *lsn->back().rows[0][0];
        else
          waiting = "cannot read " + primary.name + "'s WAL position: " + (lsn ? "no row" : lsn.error().message);
      } else {
        waiting = w.error().message;
      }
    } else {
      auto got = sql("SELECT coalesce(pg_last_wal_receive_lsn() >= '" + *catch_up + "'::pg_lsn, false)", deadline);
      const bool done = got && !got->empty() && !got->back().rows.empty() && got->back().rows[0][0] == std::string("t");
      if (done) break;
      waiting = "streaming from " + primary.name + " but not caught up to " + *catch_up + " yet";
      std::this_thread::sleep_for(200ms);
    }
    auto tail = server_log_tail();
    if (wal_gone(tail))
      return put_back(make_error(Errc::refused,
                                 "the restored copy needs WAL that " + primary.name +
                                     " has already removed and that drd's WAL archive does not hold",
                                 "turn on backup.pg_wal_archive (or keep more WAL on the primary: wal_keep_size), "
                                 "take a new backup, or rebuild the standby with `drctl rejoin " + cfg_.name +
                                     " --reclone`"),
                      tail);
    if (ms_left(deadline) <= 50)
      return put_back(make_error(Errc::timeout, cfg_.name + " did not stream from " + primary.name + " in time (" +
                                                    pg::scrub(waiting, secrets()) + ")"),
                      tail);
  }

  discard.push_back(swap.aside);  // a standby's data is a copy of the primary's
  last_action_ = "re-seeded from a backup, streaming from " + primary.name;
  spdlog::info("{}: {}", what, last_action_);
  return ok_status();
}

}  // namespace drd
