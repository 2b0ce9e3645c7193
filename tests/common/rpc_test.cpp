#include <catch2/catch.hpp>

#include "common/rpc.hpp"

using namespace drd;
namespace json = boost::json;

TEST_CASE("JSON-RPC requests parse or fail with the right code", "[rpc]") {
  struct Row { std::string line; int code; };  // code 0 = parses
  const Row rows[] = {
      {R"({"jsonrpc":"2.0","id":1,"method":"status"})", 0},
      {R"({"jsonrpc":"2.0","id":"a","method":"history","params":{"limit":5}})", 0},
      {R"({"jsonrpc":"2.0","method":"ping"})", 0},
      {R"({"jsonrpc":"2.0","id":null,"method":"ping","params":null})", 0},
      {"not json", rpc::parse_error},
      {"", rpc::parse_error},
      {"[1,2,3]", rpc::invalid_request},
      {R"({"id":1,"method":"status"})", rpc::invalid_request},
      {R"({"jsonrpc":"1.0","id":1,"method":"status"})", rpc::invalid_request},
      {R"({"jsonrpc":"2.0","id":1})", rpc::invalid_request},
      {R"({"jsonrpc":"2.0","id":1,"method":""})", rpc::invalid_request},
      {R"({"jsonrpc":"2.0","id":1,"method":7})", rpc::invalid_request},
      {R"({"jsonrpc":"2.0","id":{"x":1},"method":"status"})", rpc::invalid_request},
      {R"({"jsonrpc":"2.0","id":1,"method":"status","params":[1]})", rpc::invalid_params},
  };
  for (auto& r : rows) {
    INFO(r.line);
    auto p = rpc::parse_request(r.line);
    if (r.code == 0) {
      CHECK(std::holds_alternative<rpc::Request>(p));
    } else {
      REQUIRE(std::holds_alternative<rpc::ParseFailure>(p));
      CHECK(std::get<rpc::ParseFailure>(p).code == r.code);
    }
  }
}

TEST_CASE("a request over 1 MiB is refused before parsing", "[rpc]") {
  std::string big = R"({"jsonrpc":"2.0","id":1,"method":"status","params":{"x":")" + std::string(rpc::kMaxMessageBytes, 'a') + "\"}}";
  auto p = rpc::parse_request(big);
  REQUIRE(std::holds_alternative<rpc::ParseFailure>(p));
  CHECK(std::get<rpc::ParseFailure>(p).code == rpc::invalid_request);
}

// Regression (tests/fuzz/fuzz_rpc): 1e400 parsed to an infinity, which a reply or the audit
// log then serialized as "Infinity" — not JSON.
TEST_CASE("numbers beyond a double's range are refused, so nothing echoed becomes invalid JSON", "[rpc]") {
  for (const char* line : {R"({"jsonrpc":"2.0","id":1,"method":"backup.create","params":{"n":-1.5e600}})",
                           R"({"jsonrpc":"2.0","id":1,"method":"status","params":{"a":[1,{"b":1e309}]}})",
                           R"({"jsonrpc":"2.0","id":1,"method":"status","x":1e999})"}) {
    INFO(line);
    auto p = rpc::parse_request(line);
    REQUIRE(std::holds_alternative<rpc::ParseFailure>(p));
    CHECK(std::get<rpc::ParseFailure>(p).code == rpc::parse_error);
    CHECK_THAT(std::get<rpc::ParseFailure>(p).message, Catch::Contains("out of range"));
  }
  // The largest finite doubles still parse, and echo back as parsable JSON.
  auto p = rpc::parse_request(R"({"jsonrpc":"2.0","id":1,"method":"status","params":{"n":1.7e308,"m":-4.9e-324}})");
  REQUIRE(std::holds_alternative<rpc::Request>(p));
  auto line = rpc::result_line(1, std::get<rpc::Request>(p).params);
  CHECK(json::parse(line).at("result").at("n").as_double() == 1.7e308);
}

TEST_CASE("replies are one line of JSON-RPC 2.0 carrying the id", "[rpc]") {
  auto ok = rpc::result_line(json::value(7), json::object{{"pong", true}});
  CHECK(ok.back() == '\n');
  CHECK(ok.find('\n') == ok.size() - 1);
  auto v = json::parse(ok).as_object();
  CHECK(v.at("id").as_int64() == 7);
  CHECK(v.at("result").at("pong").as_bool());

  auto err = rpc::error_line(json::value("x"), make_error(Errc::refused, "no", "try --force"));
  auto e = json::parse(err).as_object();
  CHECK(e.at("error").at("code").as_int64() == rpc::operation_failed);
  CHECK(e.at("error").at("data").at("hint").as_string() == "try --force");
  CHECK(rpc::code_for(Errc::unsupported) == rpc::not_supported);
  CHECK(rpc::code_for(Errc::permission_denied) == rpc::permission_denied);
}

TEST_CASE("the client reports an unreachable socket as such", "[rpc]") {
  rpc::Client c("/nonexistent/drd.sock", std::chrono::milliseconds(200));
  auto r = c.call("status");
  REQUIRE(std::holds_alternative<rpc::CallError>(r));
  CHECK(std::get<rpc::CallError>(r).unreachable);
  CHECK_THAT(std::get<rpc::CallError>(r).message, Catch::Contains("/nonexistent/drd.sock"));
}

TEST_CASE("replies and notifications write doubles as plain decimals", "[rpc][json-text]") {
  auto ok = rpc::result_line(json::value(1), json::object{{"response_time_ms", 0.292075}, {"t", 1796627550.5}});
  CHECK(ok == R"({"jsonrpc":"2.0","id":1,"result":{"response_time_ms":0.292075,"t":1796627550.5}})" "\n");
  auto note = rpc::notification_line("progress", json::object{{"done", 0.25}});
  CHECK(note == R"({"jsonrpc":"2.0","method":"progress","params":{"done":0.25}})" "\n");
}
