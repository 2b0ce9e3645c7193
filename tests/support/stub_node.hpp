#pragma once
// For in-process Daemon tests (tests/core/): a Node whose actions all succeed, so a test writes
// only its probe(), and a Notifier that says nothing. Header-only: the tests that use it link
// drd_core themselves.
#include "daemon/engines/node.hpp"
#include "daemon/observability/notifier.hpp"

namespace drd::test {

class StubNode : public Node {
 public:
  explicit StubNode(NodeConfig c) : cfg_(std::move(c)) {}
  const NodeConfig& config() const override { return cfg_; }
  Status promote(Millis) override { return ok_status(); }
  Status fence(Millis) override { return ok_status(); }
  Status unfence(Millis) override { return ok_status(); }
  Status follow(const NodeConfig&, Millis) override { return ok_status(); }

 private:
  NodeConfig cfg_;
};

class SilentNotifier : public Notifier {
 public:
  void notify(const std::string&) override {}
  long long watchdog_usec() const override { return 0; }
};

}  // namespace drd::test
