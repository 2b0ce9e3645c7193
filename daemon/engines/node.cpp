#include "daemon/engines/node.hpp"

namespace drd {

const char* role_name(Role r) {
  switch (r) {
    case Role::primary: return "primary";
    case Role::standby: return "standby";
    case Role::unknown: return "unknown";
  }
  return "unknown";
}

const char* server_state_name(ServerState s) {
  switch (s) {
    case ServerState::answering: return "answering";
    case ServerState::saturated: return "saturated";
    case ServerState::shutting_down: return "shutting_down";
    case ServerState::starting_up: return "starting_up";
    case ServerState::refuses_drd: return "refuses_drd";
    case ServerState::no_answer: return "no_answer";
    case ServerState::crashed: return "crashed";
  }
  return "no_answer";
}

}  // namespace drd
