#include "ctl/socket_path.hpp"

#include <yaml-cpp/yaml.h>

#include "common/config_paths.hpp"

#include <system_error>

namespace drd::ctl {

namespace fs = std::filesystem;

namespace {

std::string where(const fs::path& file, const YAML::Mark& m) {
  if (m.is_null()) return file.string();
  return file.string() + ":" + std::to_string(m.line + 1) + ":" + std::to_string(m.column + 1);
}

// Reads an optional string scalar at node[key]; an error names the file and line.
Result<std::string> scalar(const YAML::Node& node, const char* key, const fs::path& file,
                           const std::string& dotted) {
  YAML::Node v = node[key];
  if (!v || v.IsNull()) return std::string();
  if (!v.IsScalar())
    return make_error(Errc::invalid_argument, where(file, v.Mark()) + ": " + dotted + " must be a path");
  return v.Scalar();
}

}  // namespace

Result<std::string> socket_from_config(const fs::path& config_file) {
  std::error_code ec;
  if (!fs::exists(config_file, ec))
    return make_error(Errc::not_found, "config file " + config_file.string() + " does not exist",
                      "pass --socket PATH or a readable --config FILE");
  YAML::Node root;
  try {
    root = YAML::LoadFile(config_file.string());
  } catch (const YAML::ParserException& e) {
    return make_error(Errc::invalid_argument, where(config_file, e.mark) + ": " + e.msg);
  } catch (const YAML::Exception& e) {
    return make_error(Errc::io, "cannot read config file " + config_file.string() + ": " + e.what());
  }
  fs::path folder = fs::absolute(config_file, ec).parent_path();
  std::string socket, state_dir, base_dir;
  if (root.IsMap()) {
    YAML::Node dr = root["disaster_recovery"];
    if (dr && !dr.IsNull()) {
      if (!dr.IsMap())
        return make_error(Errc::invalid_argument,
                          where(config_file, dr.Mark()) + ": disaster_recovery must be a mapping");
      YAML::Node control = dr["control"];
      if (control && control.IsMap()) {
        auto s = scalar(control, "socket", config_file, "disaster_recovery.control.socket");
        if (!s) return s.error();
        socket = *s;
      }
      auto sd = scalar(dr, "state_dir", config_file, "disaster_recovery.state_dir");
      if (!sd) return sd.error();
      state_dir = *sd;
      auto bd = scalar(dr, "base_dir", config_file, "disaster_recovery.base_dir");
      if (!bd) return bd.error();
      base_dir = *bd;
    }
  } else if (root && !root.IsNull()) {
    return make_error(Errc::invalid_argument, config_file.string() + ": the top level must be a mapping");
  }
  fs::path p = !socket.empty() ? fs::path(socket)
                               : fs::path(state_dir.empty() ? "./var/drd" : state_dir) / "drd.sock";
  // As drd resolves it: relative paths against base_dir, itself relative to the file's folder.
  return resolve_config_path(resolve_base_dir(folder, base_dir), p).string();
}

Result<SocketChoice> resolve_socket(const SocketInputs& in) {
  if (!in.flag.empty()) return SocketChoice{in.flag, "--socket"};
  if (!in.env.empty()) return SocketChoice{in.env, "$DRD_SOCKET"};
  if (!in.config_file.empty()) {
    auto s = socket_from_config(in.config_file);
    if (!s) return s.error();
    return SocketChoice{*s, in.config_file};
  }
  std::error_code ec;
  if (fs::exists(in.system_config, ec)) {
    auto s = socket_from_config(in.system_config);
    if (!s) {
      Error e = s.error();
      if (e.hint.empty()) e.hint = "fix " + in.system_config.string() + " or pass --socket PATH";
      return e;
    }
    return SocketChoice{*s, in.system_config.string()};
  }
  return SocketChoice{in.fallback.string(), "default"};
}

}  // namespace drd::ctl
