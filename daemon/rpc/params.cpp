#include "daemon/rpc/params.hpp"

#include <cstdint>

namespace drd::rpc {

namespace {

Error wrong_type(std::string_view key, std::string_view needs) {
  return make_error(Errc::invalid_argument, "parameter \"" + std::string(key) + "\" must be " + std::string(needs));
}

const json::value* given(const json::object& params, std::string_view key) {
  auto* v = params.if_contains(key);
  return v && !v->is_null() ? v : nullptr;
}

}  // namespace

Result<std::string> text_param(const json::object& params, std::string_view key, bool required) {
  auto* v = given(params, key);
  if (!v) {
    if (required) return make_error(Errc::invalid_argument, "missing parameter \"" + std::string(key) + "\"");
    return std::string();
  }
  if (!v->is_string()) return wrong_type(key, "a string");
  return std::string(v->as_string());
}

Result<bool> flag_param(const json::object& params, std::string_view key) {
  auto* v = given(params, key);
  if (!v) return false;
  if (!v->is_bool()) return wrong_type(key, "true or false");
  return v->as_bool();
}

Result<std::int64_t> int_param(const json::object& params, std::string_view key, std::int64_t dflt, std::int64_t lo,
                               std::int64_t hi) {
  auto* v = given(params, key);
  if (!v) return dflt;
  std::int64_t n = 0;
  auto range = [&] { return wrong_type(key, "between " + std::to_string(lo) + " and " + std::to_string(hi)); };
  if (v->is_int64()) n = v->as_int64();
  else if (v->is_uint64()) {
    if (v->as_uint64() > static_cast<std::uint64_t>(INT64_MAX)) return range();
    n = static_cast<std::int64_t>(v->as_uint64());
  } else return wrong_type(key, "an integer");
  if (n < lo || n > hi) return range();
  return n;
}

}  // namespace drd::rpc
