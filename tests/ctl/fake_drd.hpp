#pragma once
// Test helpers for running the real drctl binary end to end:
// FakeDrd listens on a Unix socket in a background thread and answers each
// JSON-RPC request with canned lines; run_drctl() spawns build/bin/drctl with
// its output captured. Handlers may be changed at any time (mutex-guarded).
#include <boost/json.hpp>

#include <atomic>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/rpc.hpp"

namespace drd::test {

class FakeDrd {
 public:
  // Lines to send back, each ending in '\n'; an empty list never answers.
  using Handler = std::function<std::vector<std::string>(const rpc::Request&)>;

  explicit FakeDrd(std::filesystem::path socket);  // throws if it cannot listen
  ~FakeDrd();
  FakeDrd(const FakeDrd&) = delete;
  FakeDrd& operator=(const FakeDrd&) = delete;

  void on(const std::string& method, Handler h);
  void reply(const std::string& method, boost::json::value result);
  void fail(const std::string& method, int code, const std::string& message, boost::json::value data = nullptr);
  std::vector<rpc::Request> requests() const;
  std::string path() const { return path_.string(); }

 private:
  void serve();
  void serve_connection(int fd);
  std::filesystem::path path_;
  int listen_fd_ = -1;
  std::atomic<bool> stop_{false};
  mutable std::mutex mu_;
  std::map<std::string, Handler> handlers_;
  std::vector<rpc::Request> requests_;
  std::thread thread_;
};

struct Run {
  int rc = -1;
  std::string out, err;
};

// Runs build/bin/drctl with args; $DRD_SOCKET and $NO_COLOR are removed from
// its environment and `env` ("NAME=value") added.
Run run_drctl(const std::vector<std::string>& args, const std::vector<std::string>& env = {});

}  // namespace drd::test
