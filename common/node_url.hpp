#pragma once
// How a node's URL is shown to people (status, primary --url, the status page). Pure.
#include <string>

#include "common/config.hpp"

namespace drd {

// SQLite: the file's absolute path ("sqlite:////srv/app/a.db", four slashes) whatever the
// config wrote, since a path relative to the config folder means nothing to whoever reads it.
// PostgreSQL: safe_url. Never contains a password.
std::string display_url(const NodeConfig& node);

}  // namespace drd
