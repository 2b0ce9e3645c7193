#pragma once
// A real drd process on real SQLite files in a temporary folder.
#include <boost/json.hpp>
#include <map>
#include <memory>
#include <string>

#include "common/rpc.hpp"
#include "tests/support/process.hpp"
#include "tests/support/temp_dir.hpp"

namespace drd::test {

struct DrdOptions {
  int standbys = 2;
  std::string interval = "100ms";
  std::string timeout = "500ms";
  int threshold = 3;
  std::string quick_check_interval;  // monitoring.quick_check_interval when set
  std::string extra_yaml;        // appended inside disaster_recovery:
  bool auto_failover = true;
};

class DrdFixture {
 public:
  explicit DrdFixture(DrdOptions opts = {});
  ~DrdFixture();

  void write_config();  // from opts_ (call after changing opts_ for a reload)
  // Starts drd (with `env` added to its environment, e.g. DRD_TEST_CRASH_AT) and waits
  // until it answers ping.
  void start(const std::map<std::string, std::string>& env = {});
  int stop(int sig = 15);  // signal, wait, return exit code
  boost::json::value call(const std::string& method, boost::json::object params = {});
  rpc::CallError call_error(const std::string& method, boost::json::object params = {});
  RunResult drctl(std::vector<std::string> args);
  boost::json::object node_status(const std::string& name);

  std::filesystem::path dir() const { return dir_.path(); }
  std::filesystem::path db(const std::string& node) const;
  std::filesystem::path config_path() const { return dir_ / "drd.yaml"; }
  std::filesystem::path socket() const { return dir_ / "state" / "drd.sock"; }
  std::string log() const { return drd_ ? drd_->log() : ""; }
  Background* process() { return drd_.get(); }
  DrdOptions opts;

 private:
  TempDir dir_;
  std::unique_ptr<Background> drd_;
};

// Creates an image-metadata table with `rows` rows.
void make_sqlite_db(const std::filesystem::path& file, int rows);
// Rows in images, or -1 when the file cannot be read.
long long count_rows(const std::filesystem::path& file);
// Runs `sql` on `file` like an application: reopen and retry while it fails (busy, being
// switched), for about two seconds, then FAIL with every attempt's error. Never creates the
// file: through a link that still names a primary renamed away, that would make an empty
// database there.
void app_exec(const std::filesystem::path& file, const std::string& sql);

}  // namespace drd::test
