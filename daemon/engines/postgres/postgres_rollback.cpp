// PostgresNode::replace_primary_data: the swap half of rolling the live primary back to a
// physical backup (`drctl restore ID --node PRIMARY --force`; the copy was recovered and
// promoted off the cluster worker, see daemon/backup/service/backup_pg_primary.cpp).
#include <spdlog/spdlog.h>

#include "daemon/engines/postgres/postgres_node.hpp"

namespace drd {

using namespace std::chrono_literals;

Status PostgresNode::replace_primary_data(const std::filesystem::path& prepared, std::uint32_t timeline,
                                          Millis timeout, std::vector<std::string>& discard) {
  const std::string what = "restore onto the primary " + cfg_.name;
  if (auto n = need_local(what + ":"); !n) return n;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  tool_log_.clear();
  auto swapped = swap_in(what, prepared, deadline, discard);
  if (!swapped) return swapped.error();
  const DataSwap& swap = swapped.value();

  // From here a failure puts the old folder back: the primary as it was.
  const std::string hint = "the primary runs on its old data again; restore the backup with --target PATH, start a "
                           "server there and check it";
  auto put_back = [&](const Error& failed, const std::string& tail) {
    return swap_back(what, swap, failed, tail, discard, hint);
  };
  // Its own configuration (port, settings, pg_hba), as a primary.
  if (auto w = write_config(swap.saved, deadline); !w) return put_back(w.error(), "");
  const std::string d = cfg_.data_dir->string();
  auto rm = tool({"rm", "-f", "--", d + "/standby.signal", d + "/recovery.signal"}, deadline);
  if (!rm || !rm->success())
    return put_back(make_error(Errc::io, "cannot remove standby.signal from the copy: " + (rm ? rm->output : rm.error().message)),
                    "");
  if (auto s = start_server(deadline); !s) return put_back(s.error(), server_log_tail());
  conn_.reset();
  if (auto w = wait_writable(deadline); !w) return put_back(w.error(), server_log_tail());
  auto tl = fresh_sql("SELECT timeline_id::text FROM pg_control_checkpoint()", deadline);
  std::string got = tl && !tl->empty() && !tl->back().rows.empty() && tl->back().rows[0][0] ? *tl->back().rows[0][0] : "";
  if (got != std::to_string(timeline))
    return put_back(make_error(Errc::io, "the restored primary runs on timeline " + (got.empty() ? "(unknown)" : got) +
                                             ", not the new timeline " + std::to_string(timeline)),
                    server_log_tail());

  discard.push_back(swap.aside);  // the safety backup taken before holds it
  last_action_ = "rolled back to a backup, writable on timeline " + std::to_string(timeline);
  spdlog::info("{}: {}", what, last_action_);
  return ok_status();
}

}  // namespace drd
