// libFuzzer target: JSON-RPC framing (common/rpc.hpp) on arbitrary bytes.
//
// Contract checked: parse_request never throws or crashes; a failure carries a JSON-RPC error
// code and a message. Every reply drd would send for the input (result_line for a request,
// error_line for a failure) is exactly one line — ending in '\n' with no other newline, so the
// line framing of the socket cannot be broken by what a client sent — and parses back to the
// same id, result, code and message. A parsed request, serialized again, parses to the same
// request.
#include <cmath>
#include <cstddef>
#include <limits>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

#include "common/rpc.hpp"
#include "tests/fuzz/fuzz_check.hpp"

namespace json = boost::json;
namespace rpc = drd::rpc;

namespace {

// One line per reply: a trailing '\n' and no other.
void check_one_line(const std::string& line) {
  FUZZ_CHECK(!line.empty() && line.back() == '\n', "reply does not end in a newline: " + line);
  FUZZ_CHECK(line.find('\n') == line.size() - 1, "reply spans several lines: " + line);
  FUZZ_CHECK(line.find('\r') == std::string::npos, "reply holds a raw carriage return: " + line);
}

json::object parse_reply(const std::string& line) {
  json::error_code ec;
  json::value v = json::parse(std::string_view(line).substr(0, line.size() - 1), ec);
  FUZZ_CHECK(!ec, "reply is not valid JSON (" + ec.message() + "): " + line);
  FUZZ_CHECK(v.is_object(), "reply is not an object: " + line);
  auto& o = v.as_object();
  FUZZ_CHECK(o.contains("jsonrpc") && o.at("jsonrpc") == "2.0", "reply lacks jsonrpc 2.0: " + line);
  return o;
}

// Equality up to the last bit or two of a double: Boost.JSON 1.81's number parser is not
// correctly rounded for every input (e.g. -4.5e300), so parse(serialize(d)) may differ from d
// by an ulp. That is a known library limitation (exact parsing arrived in later Boost) and
// harmless for drd, whose numeric parameters are integers; anything else must match exactly.
// JSON has one number type: drd writes a whole-valued double as a plain integer ("-1500",
// not "-1.5E3"), which reads back as an integer of the same value; that is the same number.
bool same(const json::value& a, const json::value& b) {
  if (a.is_number() && b.is_number() && (a.is_double() || b.is_double())) {
    const double x = a.to_number<double>(), y = b.to_number<double>();
    return x == y || std::fabs(x - y) <= 4 * std::numeric_limits<double>::epsilon() * std::fabs(x);
  }
  if (a.kind() != b.kind()) return a == b;
  if (a.is_array()) {
    auto &p = a.get_array(), &q = b.get_array();
    if (p.size() != q.size()) return false;
    for (std::size_t i = 0; i < p.size(); ++i)
      if (!same(p[i], q[i])) return false;
    return true;
  }
  if (a.is_object()) {
    auto &p = a.get_object(), &q = b.get_object();
    if (p.size() != q.size()) return false;
    for (auto& kv : p) {
      auto* other = q.if_contains(kv.key());
      if (!other || !same(kv.value(), *other)) return false;
    }
    return true;
  }
  return a == b;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  auto parsed = rpc::parse_request(input);

  if (auto* f = std::get_if<rpc::ParseFailure>(&parsed)) {
    FUZZ_CHECK(f->code == rpc::parse_error || f->code == rpc::invalid_request || f->code == rpc::invalid_params,
               "unexpected failure code " + std::to_string(f->code));
    FUZZ_CHECK(!f->message.empty(), "failure without a message");
    FUZZ_CHECK(f->id.is_null() || f->id.is_string() || f->id.is_int64() || f->id.is_uint64(),
               "failure id of a kind JSON-RPC does not allow");
    const std::string line = rpc::error_line(f->id, f->code, f->message);
    check_one_line(line);
    auto o = parse_reply(line);
    FUZZ_CHECK(o.at("id") == f->id, "error reply id differs");
    auto& err = o.at("error").as_object();
    FUZZ_CHECK(err.at("code").to_number<int>() == f->code, "error code differs");
    FUZZ_CHECK(err.at("message").as_string() == f->message, "error message differs");
    return 0;
  }

  auto& req = std::get<rpc::Request>(parsed);
  FUZZ_CHECK(!req.method.empty(), "request with an empty method");
  // drd answers: echo the params as the result, and an error naming the method (as the
  // control server's "unknown method 'X'" does).
  const std::string ok = rpc::result_line(req.id, req.params);
  check_one_line(ok);
  auto o = parse_reply(ok);
  FUZZ_CHECK(o.at("id") == req.id, "result reply id differs");
  FUZZ_CHECK(same(o.at("result"), json::value(req.params)), "result differs after a round trip");

  const std::string msg = "unknown method '" + req.method + "'";
  const std::string err = rpc::error_line(req.id, rpc::method_not_found, msg, json::value(req.params));
  check_one_line(err);
  auto e = parse_reply(err);
  FUZZ_CHECK(e.at("error").at("message").as_string() == msg, "error message differs after a round trip");

  // The request itself, serialized as drctl would send it, parses back unchanged.
  json::object again{{"jsonrpc", "2.0"}, {"method", req.method}, {"params", req.params}};
  if (!req.id.is_null()) again["id"] = req.id;
  const std::string line = json::serialize(again);
  FUZZ_CHECK(line.find('\n') == std::string::npos, "serialized request spans several lines");
  auto back = rpc::parse_request(line);
  if (line.size() <= rpc::kMaxMessageBytes) {
    auto* r2 = std::get_if<rpc::Request>(&back);
    FUZZ_CHECK(r2 != nullptr, "a re-serialized request no longer parses: " + line);
    FUZZ_CHECK(r2->method == req.method && r2->id == req.id && same(json::value(r2->params), json::value(req.params)),
               "request changed after a round trip: " + line);
  }
  return 0;
}
