#include "daemon/engines/cluster_factory.hpp"

#include "daemon/engines/postgres/postgres_cluster.hpp"
#include "daemon/engines/sqlite/sqlite_cluster.hpp"

namespace drd {

std::unique_ptr<ClusterDriver> make_cluster_driver(const Config& cfg, ProcessRunner& runner) {
  if (cfg.nodes.empty()) return nullptr;
  if (cfg.nodes.front().engine == Engine::sqlite) return std::make_unique<SqliteCluster>(cfg);
  if (cfg.nodes.front().engine == Engine::postgresql) return std::make_unique<PostgresCluster>(cfg, runner);
  return nullptr;
}

}  // namespace drd
