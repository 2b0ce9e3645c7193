#include <catch2/catch.hpp>

#include "common/units.hpp"

using namespace drd;

TEST_CASE("durations parse with every unit", "[units]") {
  struct Row { const char* text; long long ms; };
  const Row rows[] = {{"200ms", 200}, {"1s", 1000}, {"1.5s", 1500}, {"5m", 300000},
                      {"6h", 21600000}, {"7d", 604800000}, {"1h30m", 5400000}, {" 2s ", 2000}};
  for (auto r : rows) {
    INFO(r.text);
    auto d = parse_duration(r.text);
    REQUIRE(d);
    CHECK(d->count() == r.ms);
  }
}

TEST_CASE("bad durations are refused", "[units]") {
  for (auto s : {"", "5", "abc", "5x", "-1s", "s", "1.2.3s"}) {
    INFO(s);
    CHECK_FALSE(parse_duration(s));
  }
}

TEST_CASE("durations format to their shortest exact form", "[units]") {
  CHECK(format_duration(Millis(1500)) == "1.5s");
  CHECK(format_duration(Millis(3600000)) == "1h");
  CHECK(format_duration(Millis(250)) == "250ms");
  CHECK(format_duration(Millis(60000)) == "1m");
}

TEST_CASE("sizes parse in powers of 1024", "[units]") {
  CHECK(parse_size("16MB") == 16ull << 20);
  CHECK(parse_size("512KiB") == 512ull << 10);
  CHECK(parse_size("1GB") == 1ull << 30);
  CHECK(parse_size("100") == 100u);
  CHECK_FALSE(parse_size("12 parsecs"));
  CHECK_FALSE(parse_size("MB"));
}
