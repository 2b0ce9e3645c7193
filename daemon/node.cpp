#include "daemon/node.hpp"

namespace drd {

const char* role_name(Role r) {
  switch (r) {
    case Role::primary: return "primary";
    case Role::standby: return "standby";
    case Role::unknown: return "unknown";
  }
  return "unknown";
}

}  // namespace drd
