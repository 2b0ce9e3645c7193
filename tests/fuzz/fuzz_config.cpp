// libFuzzer target: the YAML configuration loader on arbitrary bytes.
//
// Contract checked (common/config.hpp): load_config_text never throws, crashes, hangs or
// leaks; it returns either a config or problems, never both and never neither; every problem
// names the file it came from ("fuzz.yaml..."), carries a non-negative position and a
// non-empty message, and problems come back sorted by position.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "common/config.hpp"
#include "tests/fuzz/fuzz_check.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size > 64 * 1024) return -1;  // configs are small; big inputs only slow the search down
  const std::string text(reinterpret_cast<const char*>(data), size);
  drd::ConfigLoadResult r = drd::load_config_text(text, "fuzz.yaml", "/tmp");

  FUZZ_CHECK(r.config.has_value() != !r.problems.empty(), "exactly one of config / problems must be set");
  int last_line = 0, last_col = 0;
  for (const auto& p : r.problems) {
    const std::string s = p.to_string();
    FUZZ_CHECK(s.rfind("fuzz.yaml", 0) == 0, "problem does not start with the file name: " + s);
    FUZZ_CHECK(p.line >= 0 && p.column >= 0, "negative position: " + s);
    FUZZ_CHECK(!p.message.empty(), "empty problem message: " + s);
    FUZZ_CHECK(p.line > last_line || (p.line == last_line && p.column >= last_col),
               "problems not sorted by position: " + s);
    last_line = p.line;
    last_col = p.column;
  }
  if (r.config) {
    // What the daemon relies on once a config loaded: nodes exist, names are unique and a
    // configured primary is found.
    FUZZ_CHECK(!r.config->nodes.empty(), "a loaded config has no nodes");
    FUZZ_CHECK(r.config->configured_primary() != nullptr, "a loaded config has no configured primary");
    for (const auto& n : r.config->nodes) {
      FUZZ_CHECK(r.config->find_node(n.name) != nullptr, "node not found by its own name: " + n.name);
      // safe_url must never carry what redact_url removes.
      FUZZ_CHECK(drd::redact_url(n.safe_url) == n.safe_url, "safe_url is not redacted: " + n.safe_url);
    }
  }
  return 0;
}
