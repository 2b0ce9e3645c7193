#include "daemon/engines/node_factory.hpp"

#include "daemon/engines/sqlite/sqlite_node.hpp"

#if __has_include("daemon/engines/postgres/postgres_node.hpp")
#include "daemon/engines/postgres/postgres_node.hpp"
#define DRD_HAVE_POSTGRES_NODE 1
#endif

namespace drd {

namespace {

// Until the PostgreSQL engine is linked in, such a node reports plainly why it cannot be probed.
class UnsupportedNode : public Node {
 public:
  explicit UnsupportedNode(NodeConfig c) : cfg_(std::move(c)) {}
  const NodeConfig& config() const override { return cfg_; }
  ProbeResult probe(Millis, bool) override {
    ProbeResult r;
    r.error = std::string(engine_name(cfg_.engine)) + " nodes are not supported by this drd yet";
    return r;
  }
  Status promote(Millis) override { return unsupported(); }
  Status fence(Millis) override { return unsupported(); }
  Status unfence(Millis) override { return unsupported(); }
  Status follow(const NodeConfig&, Millis) override { return unsupported(); }

 private:
  Status unsupported() const {
    return make_error(Errc::unsupported, std::string(engine_name(cfg_.engine)) + " nodes are not supported by this drd yet");
  }
  NodeConfig cfg_;
};

}  // namespace

std::unique_ptr<Node> make_node(const NodeConfig& cfg, ProcessRunner& runner) {
  (void)runner;
  if (cfg.engine == Engine::sqlite) return std::make_unique<SqliteNode>(cfg);
#ifdef DRD_HAVE_POSTGRES_NODE
  return std::make_unique<PostgresNode>(cfg, runner);
#else
  return std::make_unique<UnsupportedNode>(cfg);
#endif
}

}  // namespace drd
