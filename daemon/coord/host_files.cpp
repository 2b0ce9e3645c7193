#include "daemon/coord/host_files.hpp"

namespace drd::coord {

std::vector<std::string> keep_local_files_only(Config& cfg) {
  std::vector<std::string> changed;
  if (cfg.store.type != "etcd") return changed;
  const NodeConfig* local = cfg.find_node(cfg.local);
  for (auto& n : cfg.nodes) {
    if (&n == local) continue;
    if (!n.data_dir && !n.bin_dir && !n.os_user) continue;
    n.data_dir.reset();
    n.bin_dir.reset();
    n.os_user.reset();
    changed.push_back(n.name);
  }
  return changed;
}

}  // namespace drd::coord
