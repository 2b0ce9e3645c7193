#include "common/node_url.hpp"

namespace drd {

std::string display_url(const NodeConfig& node) {
  if (node.engine != Engine::sqlite || node.sqlite_path.empty() || !node.sqlite_path.is_absolute())
    return node.safe_url;
  return redact_url("sqlite:///" + node.sqlite_path.string());
}

}  // namespace drd
