// Manifest JSON and UTC time formatting: pure.
#include <catch2/catch.hpp>

#include "daemon/backup/manifest.hpp"

using namespace drd;
using namespace drd::backup;

TEST_CASE("manifest JSON round trips and rejects damage", "[manifest]") {
  Manifest m;
  m.id = "20261124T052920Z-primary-3fa1";
  m.name = "nightly";
  m.node = "primary";
  m.engine = "sqlite";
  m.kind = "incremental";
  m.parent = "20261123T000000Z-primary-0001";
  m.created_at = parse_time_utc("2026-11-24T05:29:20.123Z").value();
  m.source_position = "pages=10 page_size=4096";
  m.source_bytes = 1ull << 40;
  m.size_bytes = 12345;
  m.plaintext_sha256 = std::string(64, 'a');
  m.file_sha256 = std::string(64, 'b');
  m.compression_level = 9;
  m.encrypted = true;
  m.key_id = "0011223344556677";
  m.data_file = m.id + ".drdbk";
  m.content = "sqlite-db";
  std::string j = manifest_to_json(m);
  auto back = manifest_from_json(j, "x");
  REQUIRE(back.ok());
  CHECK(manifest_to_json(back.value()) == j);
  CHECK(back->created_at == m.created_at);
  CHECK(back->source_bytes == m.source_bytes);
  CHECK(back->parent == m.parent);
  CHECK_THAT(j, Catch::Contains("\"compression\":{\"algorithm\":\"zstd\",\"level\":9}"));

  auto bad = manifest_from_json("{\"id\":\"x\"}", "/b/x.manifest.json");
  REQUIRE_FALSE(bad.ok());
  CHECK_THAT(bad.error().message, Catch::Contains("/b/x.manifest.json") && Catch::Contains("file_sha256"));
  CHECK_FALSE(manifest_from_json("[1]", "x").ok());
  std::string escape = j;
  escape.replace(escape.find(m.data_file), m.data_file.size(), "../etc/passwd");
  CHECK_FALSE(manifest_from_json(escape, "x").ok());
  std::string future = j;
  future.replace(future.find("\"format_version\":1"), 18, "\"format_version\":2");
  CHECK(manifest_from_json(future, "x").error().code == Errc::unsupported);
}

TEST_CASE("UTC time format and ids", "[manifest]") {
  auto t = parse_time_utc("2024-02-29T23:59:59Z");
  REQUIRE(t.ok());
  CHECK(format_time_utc(t.value()) == "2024-02-29T23:59:59.000Z");
  CHECK(format_time_utc(parse_time_utc("2026-01-02T03:04:05.5+00:00").value()) == "2026-01-02T03:04:05.500Z");
  CHECK_FALSE(parse_time_utc("2026-01-02 03:04").ok());
  CHECK_FALSE(parse_time_utc("2026-01-02T03:04:05+02:00").ok());
  CHECK_FALSE(parse_time_utc("2026-13-02T03:04:05Z").ok());
  std::string id = new_backup_id(t.value(), "my node/1");
  CHECK(id.rfind("20240229T235959Z-my_node_1-", 0) == 0);
  CHECK(id.size() == std::string("20240229T235959Z-my_node_1-").size() + 4);
}
