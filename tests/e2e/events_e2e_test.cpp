// What drd logs: changes, named for what happened; no heartbeats.
#include <catch2/catch.hpp>

#include <filesystem>
#include <thread>

#include "tests/e2e/drd_fixture.hpp"

using namespace drd::test;

namespace {

std::size_t count(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto p = text.find(what); p != std::string::npos; p = text.find(what, p + what.size())) ++n;
  return n;
}

}  // namespace

TEST_CASE("after a failover, status names why the cluster is degraded", "[e2e][events]") {
  DrdFixture f;
  f.start();
  std::filesystem::rename(f.db("primary"), f.dir() / "away.db");
  CHECK(eventually([&] { return f.call("status").at("primary").as_string() == "secondary1"; }));
  CHECK(eventually([&] { return f.call("status").at("failover_state").as_string() == "degraded"; }));
  auto st = f.call("status");
  INFO(boost::json::serialize(st));
  CHECK_THAT(std::string(st.at("failover_reason").as_string()), Catch::Contains("primary is down and fenced"));
  auto text = f.drctl({"status"});
  CHECK_THAT(text.out, Catch::Contains("Reason: primary is down and fenced (old primary: drctl rejoin primary)"));
}
