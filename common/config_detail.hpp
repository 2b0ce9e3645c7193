#pragma once
// Internals of the config loader (common/config*.cpp), exposed only so the loader's
// pieces can be tested on their own. Pure functions: no I/O, no globals, thread-safe.
// Not part of the public configuration API — other areas use common/config.hpp.
#include <filesystem>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "common/config.hpp"

namespace drd::config_detail {

struct ParsedUrl {
  Engine engine = Engine::sqlite;
  // SQLite: the file as written in the URL, relative (to the config folder) or absolute.
  std::filesystem::path sqlite_file;
  // PostgreSQL: the libpq URI (SQLAlchemy "+driver" removed; password kept).
  std::string pg_conninfo;
  // PostgreSQL: "host:port/dbname" used to spot two nodes naming the same database.
  std::string pg_identity;
};

// Parses an SQLAlchemy-style database URL. On failure returns a message for the operator
// that never contains the password (the URL is echoed through redact_url).
std::variant<ParsedUrl, std::string> parse_database_url(const std::string& url);

// Levenshtein distance, ASCII case-insensitive.
std::size_t edit_distance(const std::string& a, const std::string& b);

// Checks a backup schedule: "every DURATION" or a 5-field cron expression.
// Returns an error message, or nullopt when it is well-formed.
std::optional<std::string> check_schedule(const std::string& expr);

// "HOST:PORT" or "[V6]:PORT" with a port 1..65535; returns an error message or nullopt.
std::optional<std::string> check_listen(const std::string& listen);

}  // namespace drd::config_detail
