#pragma once
// JSON text for people and scripts: Boost.JSON writes doubles in exponent form
// ("2.92075E-1", "1.79662755E9"), which jq and most tools read but people do not, and which
// hides the resolution of timestamps. These write every number as a plain decimal.
// Pure, thread-safe.
#include <boost/json.hpp>
#include <string>

namespace drd {

// The shortest decimal that reads back as exactly `v`, without an exponent:
// 0.292075 -> "0.292075", 1796627550.123 -> "1796627550.123", 5.0 -> "5", -0.0 -> "0".
// Only beyond JavaScript's bounds (|v| >= 1e21 or < 1e-6) the shortest exponent form ("1e+21").
// Not finite: "null" (JSON has no NaN or infinity).
std::string plain_decimal(double v);

// json::serialize, except that doubles are written by plain_decimal.
std::string serialize_plain(const boost::json::value& v);

}  // namespace drd
