#include <catch2/catch.hpp>

#include "daemon/monitor/health_report.hpp"

using namespace drd;

namespace {
HealthSample ok(std::int64_t t, double ms) { return {"n", t, true, ms, ""}; }
HealthSample bad(std::int64_t t) { return {"n", t, false, 0, "down"}; }
}  // namespace

TEST_CASE("health analysis over raw samples: availability, percentiles, outages", "[health]") {
  std::vector<HealthSample> raw;
  for (int i = 0; i < 100; ++i) raw.push_back(ok(i * 1000, i + 1));  // 1..100 ms
  raw.push_back(bad(100000));
  raw.push_back(bad(101000));
  raw.push_back(ok(102000, 5));
  raw.push_back(bad(103000));
  auto r = analyse_health({}, raw);
  CHECK(r.samples == 104);
  CHECK(r.failures == 3);
  CHECK(r.availability_pct == Approx(100.0 * 101 / 104));
  CHECK(r.p50_ms == 50);
  CHECK(r.p95_ms == 95);
  CHECK(r.p99_ms == 99);
  REQUIRE(r.outages.size() == 2);
  CHECK(r.outages[0].start_ms == 100000);
  CHECK(r.outages[0].end_ms == 102000);
  CHECK(r.outages[1].start_ms == 103000);
  CHECK_FALSE(r.outages[1].end_ms.has_value());  // still down
}

TEST_CASE("health analysis weighs aggregated minutes by their successful probes", "[health]") {
  std::vector<SqliteStateStore::HealthMinute> minutes = {
      {0, 60, 0, 1, 10, 20, 15},       // 60 good probes around 10 ms
      {60000, 60, 60, 0, 0, 0, 0},     // a whole minute down
      {120000, 60, 30, 1, 100, 200, 150},
  };
  auto r = analyse_health(minutes, {ok(180000, 1)});
  CHECK(r.samples == 181);
  CHECK(r.failures == 90);
  CHECK(r.p50_ms == 10);    // 60 of the 91 good probes are the 10 ms minute
  CHECK(r.p95_ms == 100);
  REQUIRE(r.outages.size() == 1);
  CHECK(r.outages[0].start_ms == 60000);
  CHECK(r.outages[0].end_ms == 120000);
}

TEST_CASE("no samples means no availability claim", "[health]") {
  auto r = analyse_health({}, {});
  CHECK(r.samples == 0);
  CHECK(r.availability_pct == 0);
  CHECK(r.p99_ms == 0);
  CHECK(r.outages.empty());
}
