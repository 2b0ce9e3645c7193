#pragma once
// drctl's command line: global options, the command chosen, the JSON-RPC
// request it maps to, and how the reply is shown. parse_command_line() is
// pure except that verify/restore look at the filesystem (an argument naming
// an existing file is sent as its absolute path). Never throws, never exits.
#include <boost/json.hpp>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ctl/render.hpp"

namespace drd::ctl {

using Millis = std::chrono::milliseconds;

struct GlobalOptions {
  std::string socket;           // --socket
  std::string config;           // --config
  bool json = false;            // --json: print the result document as is
  Lang lang = Lang::en;         // --lang en|zh
  std::optional<Millis> timeout;  // --timeout; else the command's default
  bool no_color = false;        // --no-color
};

using Renderer = std::function<std::string(const boost::json::value&, const RenderOptions&)>;
using ExitRule = std::function<int(const boost::json::value&)>;

struct Invocation {
  GlobalOptions globals;
  std::string command;         // as typed: "backup"
  std::string method;          // JSON-RPC method; empty for `version` (local, plus a ping)
  boost::json::object params;
  Millis timeout{30'000};      // --timeout, else the command's default
  bool progress = false;       // may ask drd for "progress" notifications
  Renderer render;             // reply -> text (text mode only)
  ExitRule exit_rule;          // exit code for a successful reply; null = 0
};

struct ParseOutcome {
  std::optional<Invocation> invocation;  // set when there is something to run
  int exit_code = 0;                     // otherwise: 0 after --help/--version, 2 on a usage error
  std::string out, err;                  // what to print before exiting
  // A usage error on a line with --json: `out` also holds one JSON document,
  // {"error": {"message", "usage_error": true, "usage"?}}, like every other --json failure.
};

// The one-line JSON document drctl prints on stdout for a failure in --json mode:
// {"error": {"message": MESSAGE, ...extra}}.
std::string json_error_line(const std::string& message, boost::json::object extra = {});

// args excludes the program name.
ParseOutcome parse_command_line(const std::vector<std::string>& args);

// "30s", "1h", "500ms", or a plain number of seconds ("30", "0.5").
std::optional<Millis> parse_timeout(std::string_view s);

}  // namespace drd::ctl
