#include <catch2/catch.hpp>

#include <cmath>
#include <limits>

#include "common/json_text.hpp"
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

TEST_CASE("plain_decimal writes the shortest exact decimal, never an exponent", "[json-text]") {
  struct Row {
    double v;
    const char* text;
  };
  const Row rows[] = {{0.292075, "0.292075"},
                      {1796627550.123, "1796627550.123"},
                      {1796627550.0, "1796627550"},
                      {5.0, "5"},
                      {-0.0, "0"},
                      {0.0, "0"},
                      {-2.5, "-2.5"},
                      {0.000001, "0.000001"},
                      {123456789012345678901.0, "123456789012345683968"},  // the double's exact value
                      {1e-7, "1e-07"},  // beyond JavaScript's bounds: the exponent form stays
                      {1e21, "1e+21"},
                      {1.7e308, "1.7e+308"},
                      {0.1 + 0.2, "0.30000000000000004"}};
  for (auto r : rows) {
    INFO(r.text);
    CHECK(plain_decimal(r.v) == r.text);
  }
  CHECK(plain_decimal(std::numeric_limits<double>::infinity()) == "null");
  CHECK(plain_decimal(std::nan("")) == "null");
}

TEST_CASE("serialize_plain is json::serialize with plain-decimal doubles", "[json-text]") {
  namespace json = boost::json;
  json::value v = json::object{{"a", 0.292075},
                               {"b", json::array{1, -2, 3.5, 1.79662755e9, nullptr, true}},
                               {"s \"q\"", "x\ny"},
                               {"u", std::uint64_t(18446744073709551615ull)},
                               {"nested", json::object{{"t", 1796627550.123}}}};
  const std::string text = serialize_plain(v);
  CHECK(text ==
        R"({"a":0.292075,"b":[1,-2,3.5,1796627550,null,true],"s \"q\"":"x\ny","u":18446744073709551615,)"
        R"("nested":{"t":1796627550.123}})");
  CHECK(json::serialize(v).find('E') != std::string::npos);  // what Boost.JSON alone writes
}
