#pragma once
// Where drctl finds drd's control socket. The order is part of the user
// contract (docs/drctl.md): --socket, $DRD_SOCKET, control.socket of
// --config FILE, the same of /etc/drd/drd.yaml if that file exists, and
// finally /run/drd/drd.sock.
//
// Pure apart from reading the config file named in the inputs; never throws.
// A config file that is named but cannot be read or parsed is an error rather
// than a silent fallback, because talking to the wrong daemon is worse than
// stopping.
#include <filesystem>
#include <string>

#include "common/result.hpp"

namespace drd::ctl {

struct SocketInputs {
  std::string flag;         // --socket; empty = not given
  std::string env;          // $DRD_SOCKET; empty = unset
  std::string config_file;  // --config; empty = not given
  std::filesystem::path system_config = "/etc/drd/drd.yaml";
  std::filesystem::path fallback = "/run/drd/drd.sock";
};

struct SocketChoice {
  std::string path;
  std::string origin;  // "--socket", "$DRD_SOCKET", the config file, or "default"
};

Result<SocketChoice> resolve_socket(const SocketInputs& in);

// The socket a config file names: disaster_recovery.control.socket, else
// disaster_recovery.state_dir (default "./var/drd") + "/drd.sock"; relative
// paths are taken from the config file's folder.
Result<std::string> socket_from_config(const std::filesystem::path& config_file);

}  // namespace drd::ctl
