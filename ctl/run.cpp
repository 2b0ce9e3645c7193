#include "drd_version.hpp"
#include "ctl/run.hpp"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "common/json_text.hpp"
#include "common/rpc.hpp"
#include "ctl/cli.hpp"
#include "ctl/json_access.hpp"
#include "ctl/socket_path.hpp"

namespace drd::ctl {

namespace json = boost::json;

namespace {

constexpr int kDone = 0, kFailed = 1, kUsage = 2, kUnreachable = 3;

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

void print_json(const json::value& v) { std::cout << serialize_plain(v) << "\n" << std::flush; }

std::string hint_of(const rpc::CallError& e) {
  std::string h = jv::str(e.data, "hint");
  if (!h.empty()) return h;
  if (e.code == rpc::permission_denied) return "run drctl as root or as a member of drd's control.admin_group";
  if (e.code == rpc::busy) return "another operation is running; retry when it has finished";
  if (e.code == rpc::method_not_found) return "the running drd does not know this command; is drctl newer than drd?";
  return {};
}

int report_error(const Invocation& inv, const rpc::CallError& e) {
  if (inv.globals.json) {
    json::object err{{"message", e.message}};
    if (e.unreachable) err["unreachable"] = true;
    else err["code"] = e.code;
    if (!e.data.is_null()) err["data"] = e.data;
    print_json(json::object{{"error", std::move(err)}});
  }
  if (e.unreachable) {
    std::string msg = "drctl: " + e.message;
    if (e.message.rfind("cannot reach drd", 0) == 0) {
      if (e.message.find("Permission denied") != std::string::npos)
        msg += " (run drctl as root or as a member of the socket's group)";
      else
        msg += " (is drd running? start it with `make run` or `systemctl start drd`)";
    }
    std::cerr << msg << "\n";
    return kUnreachable;
  }
  const std::string hint = hint_of(e);
  if (e.code == rpc::not_supported) {
    std::cerr << (e.message.empty() ? "this drd does not support " + inv.method + " yet" : e.message) << "\n";
  } else {
    std::cerr << "drctl: " << (e.message.empty() ? inv.method + " failed" : e.message) << "\n";
  }
  if (!hint.empty()) std::cerr << "hint: " << hint << "\n";
  return kFailed;
}

int run_version(const Invocation& inv, const std::string& socket, const RenderOptions&) {
  rpc::Client client(socket, std::min(inv.timeout, Millis(5000)));
  auto reply = client.call("ping");
  json::value drd_version = nullptr;
  std::string problem;
  if (auto* v = std::get_if<json::value>(&reply)) drd_version = json::value(jv::str(*v, "version", "unknown"));
  else problem = std::get<rpc::CallError>(reply).message;
  if (inv.globals.json) {
    print_json(json::object{{"drctl", drd::kVersion}, {"drd", drd_version}, {"socket", socket}});
  } else {
    std::cout << "drctl " << drd::kVersion << "\n";
    if (drd_version.is_string()) std::cout << "drd " << drd_version.as_string().c_str() << " at " << socket << "\n";
    else std::cout << "drd: not reachable (" << problem << ")\n";
  }
  return kDone;
}

// One line redrawn in place on stderr while drd reports progress.
class ProgressBar {
 public:
  void update(const json::object& note) {
    const json::value* params = note.if_contains("params");
    if (!params || jv::str(note, "method") != "progress") return;
    auto done = jv::num(*params, "done").value_or(0);
    auto total = jv::num(*params, "total");
    std::cerr << "\r\033[K" << progress_line(done, total, jv::str(*params, "phase")) << std::flush;
    drawn_ = true;
  }
  ~ProgressBar() {
    if (drawn_) std::cerr << "\r\033[K" << std::flush;
  }

 private:
  bool drawn_ = false;
};

int execute(Invocation& inv) {
  SocketInputs in;
  in.flag = inv.globals.socket;
  in.env = env("DRD_SOCKET");
  in.config_file = inv.globals.config;
  auto socket = resolve_socket(in);
  if (!socket) {
    if (inv.globals.json) {
      json::object extra{{"usage_error", true}};
      if (!socket.error().hint.empty()) extra["hint"] = socket.error().hint;
      std::cout << json_error_line(socket.error().message, std::move(extra)) << std::flush;
    }
    std::cerr << "drctl: " << socket.error().message << "\n";
    if (!socket.error().hint.empty()) std::cerr << "hint: " << socket.error().hint << "\n";
    return kUsage;
  }
  const bool tty_out = ::isatty(STDOUT_FILENO) == 1;
  const bool plain = inv.globals.no_color || !env("NO_COLOR").empty() || env("TERM") == "dumb";
  RenderOptions ro{inv.globals.lang, tty_out && !plain, tty_out && !plain};

  if (inv.method.empty()) return run_version(inv, socket->path, ro);

  rpc::Client client(socket->path, inv.timeout);
  const bool show_progress = inv.progress && ::isatty(STDERR_FILENO) == 1;
  if (show_progress) inv.params["progress"] = true;
  std::variant<json::value, rpc::CallError> reply;
  {
    ProgressBar bar;
    reply = client.call(inv.method, inv.params,
                        [&](const json::object& note) { if (show_progress) bar.update(note); });
  }
  if (auto* err = std::get_if<rpc::CallError>(&reply)) return report_error(inv, *err);

  const json::value& result = std::get<json::value>(reply);
  if (inv.globals.json) print_json(result);
  else if (inv.render) std::cout << inv.render(result, ro) << std::flush;
  else std::cout << serialize_plain(result) << "\n";
  return inv.exit_rule ? inv.exit_rule(result) : kDone;
}

}  // namespace

int run(int argc, char** argv) {
  std::vector<std::string> args(argv + (argc > 0 ? 1 : 0), argv + argc);
  ParseOutcome parsed = parse_command_line(args);
  std::cout << parsed.out << std::flush;
  std::cerr << parsed.err << std::flush;
  if (!parsed.invocation) return parsed.exit_code;
  try {
    return execute(*parsed.invocation);
  } catch (const std::exception& e) {  // a bug, not an expected failure: still say what happened
    if (parsed.invocation->globals.json)
      std::cout << json_error_line(std::string("internal error: ") + e.what()) << std::flush;
    std::cerr << "drctl: internal error: " << e.what() << "\n";
    return kFailed;
  }
}

}  // namespace drd::ctl
