#pragma once
#include <memory>

#include "common/config.hpp"
#include "common/process.hpp"
#include "daemon/failover/cluster_driver.hpp"

namespace drd {
// The cluster driver for the configured engine, or nullptr when this build
// has none (then failover answers "not supported yet").
std::unique_ptr<ClusterDriver> make_cluster_driver(const Config& cfg, ProcessRunner& runner);
}  // namespace drd
