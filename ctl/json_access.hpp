#pragma once
// Tolerant readers for the daemon's result JSON. drd is written against
// docs/rpc.md, but drctl must never crash on a missing or oddly typed field:
// it shows "-" instead. Header-only, pure.
#include <boost/json.hpp>

#include <cstdio>
#include <optional>
#include <string>
#include <string_view>

namespace drd::ctl::jv {

namespace json = boost::json;

inline const json::value* field(const json::value& v, std::string_view key) {
  if (!v.is_object()) return nullptr;
  return v.as_object().if_contains(key);
}

inline std::string str(const json::value& v, std::string_view key, std::string def = {}) {
  const json::value* f = field(v, key);
  if (!f) return def;
  if (f->is_string()) return std::string(f->as_string());
  if (f->is_null()) return def;
  if (f->is_bool()) return f->as_bool() ? "true" : "false";
  if (f->is_double()) {  // boost::json would write 250.5 as "2.505E2"
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.6g", f->as_double());
    return buf;
  }
  return json::serialize(*f);
}

inline std::optional<double> num(const json::value& v, std::string_view key) {
  const json::value* f = field(v, key);
  if (!f) return std::nullopt;
  if (f->is_int64()) return static_cast<double>(f->as_int64());
  if (f->is_uint64()) return static_cast<double>(f->as_uint64());
  if (f->is_double()) return f->as_double();
  return std::nullopt;
}

inline std::optional<bool> boolean(const json::value& v, std::string_view key) {
  const json::value* f = field(v, key);
  if (f && f->is_bool()) return f->as_bool();
  return std::nullopt;
}

inline const json::array& arr(const json::value& v, std::string_view key) {
  static const json::array empty;
  const json::value* f = field(v, key);
  return f && f->is_array() ? f->as_array() : empty;
}

inline const json::array& as_arr(const json::value& v) {
  static const json::array empty;
  return v.is_array() ? v.as_array() : empty;
}

}  // namespace drd::ctl::jv
