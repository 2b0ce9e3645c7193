#include "daemon/cluster_factory.hpp"

#include "daemon/engines/sqlite_cluster.hpp"

namespace drd {

std::unique_ptr<ClusterDriver> make_cluster_driver(const Config& cfg, ProcessRunner& runner) {
  (void)runner;
  if (cfg.nodes.empty()) return nullptr;
  if (cfg.nodes.front().engine == Engine::sqlite) return std::make_unique<SqliteCluster>(cfg);
  return nullptr;
}

}  // namespace drd
