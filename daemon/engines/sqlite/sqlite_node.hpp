#pragma once
// SqliteNode: probes one SQLite database file.
// probe(): the file must exist (never created), open read-only, read the schema
// (touches page 1 and the WAL index), measure; `deep` adds PRAGMA quick_check, whose
// failure sticks to every later probe until a deep probe passes.
// A query running past `timeout` is interrupted through the progress handler;
// an open() that blocks in the kernel is cut off by the caller's deadline.
// Promotion, fencing and following are cluster-level for SQLite (the
// replicator owns the files), so those calls report what the cluster driver
// must do instead.
#include <mutex>

#include "daemon/engines/node.hpp"

namespace drd {

class SqliteNode : public Node {
 public:
  explicit SqliteNode(NodeConfig cfg) : cfg_(std::move(cfg)) {}
  const NodeConfig& config() const override { return cfg_; }
  ProbeResult probe(Millis timeout, bool deep) override;
  Status promote(Millis timeout) override;
  Status fence(Millis timeout) override;
  Status unfence(Millis timeout) override;
  Status follow(const NodeConfig& primary, Millis timeout) override;

 private:
  NodeConfig cfg_;
  // A failed quick_check stays the answer of every probe until a deep probe passes again:
  // a file with a corrupt page keeps answering `SELECT` while it hands out garbage.
  std::mutex mu_;
  std::string integrity_failure_;
};

}  // namespace drd
