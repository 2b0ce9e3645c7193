#include <catch2/catch.hpp>

#include "daemon/engines/sqlite/replication/position_file.hpp"

using namespace drd::replication;

TEST_CASE("standby positions round-trip through their text form", "[position]") {
  StandbyPosition p;
  p.primary = "/var/data/images primary.db";
  p.has_header = true;
  p.chain.big_endian = false;
  p.chain.page_size = 4096;
  p.chain.salt1 = 0xfffffffeu;
  p.chain.salt2 = 17;
  p.chain.frames = 1234;
  p.chain.checksum = {0xdeadbeefu, 42};
  p.applied_bytes = 123456789012ull;
  auto back = parse_position(encode_position(p));
  REQUIRE(back.ok());
  CHECK(back->primary == p.primary);
  CHECK(back->has_header);
  CHECK_FALSE(back->chain.big_endian);
  CHECK(back->chain.page_size == 4096);
  CHECK(back->chain.salt1 == p.chain.salt1);
  CHECK(back->chain.salt2 == 17);
  CHECK(back->chain.frames == 1234);
  CHECK(back->chain.checksum == p.chain.checksum);
  CHECK(back->applied_bytes == p.applied_bytes);
}

TEST_CASE("malformed position files are rejected with the reason", "[position]") {
  StandbyPosition p;
  p.primary = "/p.db";
  p.chain.page_size = 4096;
  const std::string good = encode_position(p);
  struct Case {
    const char* name;
    std::string text;
    const char* why;
  };
  auto replace = [&](const std::string& from, const std::string& to) {
    std::string s = good;
    s.replace(s.find(from), from.size(), to);
    return s;
  };
  const Case cases[] = {
      {"empty", "", "does not start"},
      {"wrong magic", "drd-sqlite-position 2\n", "does not start"},
      {"missing frames", replace("frames 0\n", ""), "frames"},
      {"negative salt", replace("salt1 0", "salt1 -1"), "salt1"},
      {"salt too big", replace("salt2 0", "salt2 4294967296"), "salt2"},
      {"trailing junk", replace("frames 0", "frames 0x"), "frames"},
  };
  for (const auto& c : cases) {
    INFO(c.name);
    auto r = parse_position(c.text);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().message.find(c.why) != std::string::npos);
  }
}

TEST_CASE("a position carries the standby file's stamp, and older files without one still parse", "[position]") {
  StandbyPosition p;
  p.primary = "/p.db";
  p.chain.page_size = 4096;
  p.file = FileStamp{64769, 1234567, 8192, 1765000000123456789};
  auto back = parse_position(encode_position(p));
  REQUIRE(back.ok());
  REQUIRE(back->file);
  CHECK(*back->file == *p.file);
  p.file.reset();
  auto old = parse_position(encode_position(p));
  REQUIRE(old.ok());
  CHECK_FALSE(old->file);
  auto half = parse_position(encode_position(p) + "file_dev 1\n");
  REQUIRE_FALSE(half.ok());
  CHECK(half.error().message.find("file_ino") != std::string::npos);
}
