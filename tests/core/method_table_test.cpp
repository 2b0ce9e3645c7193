// The control socket's one method table (daemon/rpc/method_table.hpp) against docs/rpc.md,
// and the one parameter parser (daemon/rpc/params.hpp).
#include <catch2/catch.hpp>

#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include "daemon/rpc/method_table.hpp"
#include "daemon/rpc/params.hpp"

using namespace drd;
namespace json = boost::json;

namespace {

// docs/rpc.md's "Methods" table: method name -> the "ro" column.
std::map<std::string, bool> documented_methods() {
  std::ifstream in(std::string(DRD_SOURCE_DIR) + "/docs/rpc.md");
  REQUIRE(in);
  std::map<std::string, bool> out;
  std::string line;
  bool in_table = false;
  while (std::getline(in, line)) {
    if (line.rfind("## Methods", 0) == 0) in_table = true;
    else if (in_table && line.rfind("#", 0) == 0) break;
    if (!in_table || line.rfind("| `", 0) != 0) continue;
    auto second_bar = line.find('|', 1);
    auto third_bar = line.find('|', second_bar + 1);
    std::string names = line.substr(1, second_bar - 1);
    std::string ro = line.substr(second_bar + 1, third_bar - second_bar - 1);
    bool read_only = ro.find("ro") != std::string::npos;
    std::regex tick("`([a-z_.]+)`");
    for (std::sregex_iterator it(names.begin(), names.end(), tick), end; it != end; ++it) out[(*it)[1]] = read_only;
  }
  return out;
}

}  // namespace

TEST_CASE("the method table and docs/rpc.md list the same methods with the same access", "[rpc][docs]") {
  auto documented = documented_methods();
  REQUIRE(documented.size() >= 20);
  std::set<std::string> in_table;
  for (const auto& m : rpc::methods()) {
    INFO(m.name);
    CHECK(in_table.insert(std::string(m.name)).second);  // no method twice
    REQUIRE(documented.count(std::string(m.name)) == 1);
    CHECK(documented[std::string(m.name)] == m.read_only);
    CHECK(m.handler != nullptr);
  }
  for (const auto& [name, ro] : documented) {
    INFO(name);
    CHECK(in_table.count(name) == 1);
  }
}

TEST_CASE("method table: lookups, access and forwarding", "[rpc]") {
  REQUIRE(rpc::find_method("status") != nullptr);
  CHECK(rpc::find_method("status")->read_only);
  CHECK_FALSE(rpc::find_method("status")->forwardable);  // each drd answers for itself
  REQUIRE(rpc::find_method("failover") != nullptr);
  CHECK_FALSE(rpc::find_method("failover")->read_only);
  CHECK(rpc::find_method("failover")->forwardable);
  CHECK(rpc::find_method("backup.list")->forwardable);    // the leader's catalog
  CHECK_FALSE(rpc::find_method("reload")->forwardable);   // each drd reads its own file
  CHECK(rpc::find_method("frobnicate") == nullptr);
  CHECK(rpc::find_method("") == nullptr);
  CHECK(rpc::find_method("Status") == nullptr);
  // Every state-changing method is audited and needs admin: none may be read-only by accident.
  for (auto m : {"failover", "switchover", "rejoin", "clone", "reload", "backup.create", "backup.verify", "restore",
                 "monitoring.start", "monitoring.stop", "auto_failover.enable", "auto_failover.disable"}) {
    INFO(m);
    REQUIRE(rpc::find_method(m) != nullptr);
    CHECK_FALSE(rpc::find_method(m)->read_only);
  }
}

TEST_CASE("parameters: one rule, a wrong type is an error naming the parameter", "[rpc]") {
  auto p = json::parse(R"({"force": "yes", "node": 7, "limit": "10", "ok": true, "none": null,
                          "name": "db", "big": 18446744073709551615, "neg": -3})").as_object();
  auto text = [](auto r) -> Result<std::string> {
    if (!r) return r.error();
    if constexpr (std::is_same_v<std::decay_t<decltype(*r)>, std::string>) return *r;
    else if constexpr (std::is_same_v<std::decay_t<decltype(*r)>, bool>) return std::string(*r ? "true" : "false");
    else return std::to_string(*r);
  };
  std::vector<std::pair<Result<std::string>, std::string>> rows = {
      {text(rpc::flag_param(p, "force")), "error: parameter \"force\" must be true or false"},
      {text(rpc::flag_param(p, "ok")), "true"},
      {text(rpc::flag_param(p, "none")), "false"},
      {text(rpc::flag_param(p, "absent")), "false"},
      {text(rpc::text_param(p, "node")), "error: parameter \"node\" must be a string"},
      {text(rpc::text_param(p, "name")), "db"},
      {text(rpc::text_param(p, "none")), ""},
      {text(rpc::text_param(p, "absent", true)), "error: missing parameter \"absent\""},
      {text(rpc::text_param(p, "none", true)), "error: missing parameter \"none\""},
      {text(rpc::int_param(p, "limit", 50, 1, 100)), "error: parameter \"limit\" must be an integer"},
      {text(rpc::int_param(p, "absent", 50, 1, 100)), "50"},
      {text(rpc::int_param(p, "neg", 50, 1, 100)), "error: parameter \"neg\" must be between 1 and 100"},
      {text(rpc::int_param(p, "big", 50, 1, 100)), "error: parameter \"big\" must be between 1 and 100"},
      {text(rpc::int_param(p, "neg", 0, -5, 5)), "-3"},
  };
  for (auto& [got, want] : rows) {
    INFO(want);
    std::string as_text = got ? *got : "error: " + got.error().message;
    CHECK(as_text == want);
    if (!got) CHECK(got.error().code == Errc::invalid_argument);
  }
}
