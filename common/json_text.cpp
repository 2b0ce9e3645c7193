#include "common/json_text.hpp"

#include <charconv>
#include <cmath>

namespace drd {

namespace json = boost::json;

std::string plain_decimal(double v) {
  if (!std::isfinite(v)) return "null";
  if (v == 0) return "0";  // also -0.0
  // Beyond what a plain decimal can carry faithfully (JSON parsers, Boost.JSON's too, round
  // 300-digit numbers differently) the exponent form stays, at the bounds JavaScript uses:
  // |v| >= 1e21 or < 1e-6. No value drd reports comes near them.
  const double a = std::fabs(v);
  const auto format = a >= 1e21 || a < 1e-6 ? std::chars_format::scientific : std::chars_format::fixed;
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof buf, v, format);
  if (r.ec != std::errc()) return "null";
  return std::string(buf, r.ptr);
}

namespace {

void write(const json::value& v, std::string& out) {
  switch (v.kind()) {
    case json::kind::double_: out += plain_decimal(v.get_double()); return;
    case json::kind::array: {
      out += '[';
      bool first = true;
      for (auto& e : v.get_array()) {
        if (!first) out += ',';
        first = false;
        write(e, out);
      }
      out += ']';
      return;
    }
    case json::kind::object: {
      out += '{';
      bool first = true;
      for (auto& kv : v.get_object()) {
        if (!first) out += ',';
        first = false;
        out += json::serialize(json::string_view(kv.key()));
        out += ':';
        write(kv.value(), out);
      }
      out += '}';
      return;
    }
    default: out += json::serialize(v); return;
  }
}

}  // namespace

std::string serialize_plain(const json::value& v) {
  std::string out;
  write(v, out);
  return out;
}

}  // namespace drd
