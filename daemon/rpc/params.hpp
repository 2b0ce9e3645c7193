#pragma once
// Control-socket parameters: the one parser every method uses (docs/rpc.md).
//
// One rule for all of them: a parameter that is absent or JSON null takes its default; a
// parameter of the wrong type is an error (-32602) that names it and the type it needs,
// never silently read as its default. Pure functions, no state.
#include <boost/json.hpp>

#include <cstdint>
#include <string>
#include <string_view>

#include "common/result.hpp"

namespace drd::rpc {

namespace json = boost::json;

// A string; absent or null gives "" (or the error "missing parameter" when `required`).
Result<std::string> text_param(const json::object& params, std::string_view key, bool required = false);
// true or false; absent or null gives false.
Result<bool> flag_param(const json::object& params, std::string_view key);
// An integer in [lo, hi]; absent or null gives `dflt`.
Result<std::int64_t> int_param(const json::object& params, std::string_view key, std::int64_t dflt,
                               std::int64_t lo, std::int64_t hi);

}  // namespace drd::rpc
