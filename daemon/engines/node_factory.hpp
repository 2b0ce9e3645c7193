#pragma once
#include <memory>

#include "common/config.hpp"
#include "common/process.hpp"
#include "daemon/engines/node.hpp"

namespace drd {
// The Node implementation for the node's engine.
std::unique_ptr<Node> make_node(const NodeConfig& cfg, ProcessRunner& runner);
}  // namespace drd
