#pragma once
// Hard fence of a PostgreSQL server on this host that does not answer.
//
// A primary that is frozen (SIGSTOP, a paused VM) or cut off from the network is
// not fenced by SQL during a failover: it cannot be reached. When it wakes up or
// the partition heals it is still a writable primary until drd's next probe
// fences it, and a client whose session survived can commit there (the chaos
// suite observed this). When the server runs on drd's own host, drd can close
// that window at failover time: SIGKILL to the postmaster and to every process
// it forked (a backend whose postmaster died can still finish a commit).
//
// Only a server proven local is touched: the data folder's postmaster.pid must
// name a live process whose working directory is that data folder (the
// postmaster chdirs there), so a remote server that merely shares the path, or
// a stale pid file, is left alone.
#include <filesystem>
#include <vector>

#include "common/result.hpp"

namespace drd::pg {

struct LocalKill {
  bool local = false;     // a live postmaster of this data folder runs on this host
  int killed = 0;         // processes sent SIGKILL (postmaster included)
  int pid = 0;            // the postmaster's pid
  std::vector<int> tree;  // the postmaster and every process it forked, frozen (SIGSTOP)
};

// Freezes the server: SIGSTOP to the postmaster, then to every process it forked, so it
// cannot answer anyone (not even after a partition heals) while the target is promoted.
// Error only when the server is local but cannot be signalled (EPERM: drd runs as
// another user than the server and not as root).
Result<LocalKill> freeze_local_server(const std::filesystem::path& data_dir);
// SIGKILL to every process of a frozen server; sets `killed`.
void kill_frozen_server(LocalKill& k);
// Both.
Result<LocalKill> kill_local_server(const std::filesystem::path& data_dir);

}  // namespace drd::pg
