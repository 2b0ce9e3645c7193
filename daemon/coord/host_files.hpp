#pragma once
// Multi-host mode: only the drd on a database's own host may touch that server's files.
// Every host carries the same `databases:` list (docs/multi-host.md), so a data_dir or
// bin_dir given for another host's node names a path on *that* host: used here it would
// be pg_ctl, pg_rewind or a SIGKILL aimed at whatever happens to live at that path on
// this one. Those fields are dropped for every node but `local`; the leader then acts on
// remote servers through SQL only (promote, read-only fence, primary_conninfo).
#include <string>
#include <vector>

#include "common/config.hpp"

namespace drd::coord {

// Clears data_dir, bin_dir and os_user of every node other than cfg.local when the store
// is etcd; returns the names of the nodes changed (for one log line). Pure.
std::vector<std::string> keep_local_files_only(Config& cfg);

}  // namespace drd::coord
