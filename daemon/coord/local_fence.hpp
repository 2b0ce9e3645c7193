#pragma once
// LocalFence: makes this host's database unwritable (and undoes it) without the
// cluster driver, which only the leading drd runs.
//  - SQLite: a connection that holds the write lock (BEGIN IMMEDIATE), so every
//    writer gets SQLITE_BUSY; released by unfence() or when drd exits (the OS
//    drops the lock with the process — a dead drd fences nothing, which is why the
//    leader checks writability before it fails over a host whose drd is gone).
//  - PostgreSQL: the engine's Node::fence()/unfence() (default_transaction_read_only
//    and ending sessions; stopping the server when it is local and that fails). A server
//    left stopped also gets default_transaction_read_only in postgresql.auto.conf, so
//    starting it again (a host coming back) does not bring back a writable primary.
// Blocking; called from the coordinator's watch thread only.
#include <sqlite3.h>

#include <memory>

#include "common/config.hpp"
#include "common/process.hpp"
#include "daemon/engines/node.hpp"

namespace drd::coord {

class LocalFence {
 public:
  LocalFence(const NodeConfig& node, ProcessRunner& runner);
  ~LocalFence();  // keeps nothing: an SQLite lock ends with the connection
  Status fence(Millis timeout);
  Status unfence(Millis timeout);
  bool holding() const { return holding_; }

 private:
  NodeConfig cfg_;
  ProcessRunner& runner_;
  std::unique_ptr<Node> node_;  // PostgreSQL
  sqlite3* db_ = nullptr;       // SQLite lock holder
  bool holding_ = false;
};

// True when someone holds the SQLite file's write lock for all of `wait` (a drd's
// self-fence, or a writer that long); false when the lock could be taken (and was
// released at once).
Result<bool> sqlite_write_locked(const std::filesystem::path& file, Millis wait);

}  // namespace drd::coord
