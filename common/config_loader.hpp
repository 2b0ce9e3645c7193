#pragma once
// The YAML walker behind load_config(): private to common/config*.cpp.
//
// One Loader reads one document. It never throws and never stops at the first problem:
// every reader records what is wrong (with the YAML position) and returns nullopt, and the
// caller keeps the default. Secrets are never read here (password/key/token files are only
// resolved as paths) and URLs are echoed only through redact_url().
// Not thread-safe; use one Loader per load.
#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "common/config.hpp"

namespace drd::config_detail {

struct Where {
  int line = 0, column = 0;  // 1-based; 0 = the whole file
};
Where where(const YAML::Node& n);

class Loader {
 public:
  Loader(std::string file_name, std::filesystem::path base_dir);

  // Walks the parsed document into `cfg`. Problems go to problems().
  void load(const YAML::Node& doc, Config& cfg);
  void add(Where w, std::string message);
  std::vector<ConfigProblem>& problems() { return problems_; }

  // ---- readers: absent or null values return nullopt without a problem ----
  // True when `n` is a mapping (a null section counts as an empty one); reports unknown and
  // duplicate keys, suggesting the nearest known key.
  bool section(const YAML::Node& n, const std::string& path, const std::vector<std::string>& known);
  std::optional<std::string> str(const YAML::Node& v, const std::string& path);
  std::optional<bool> boolean(const YAML::Node& v, const std::string& path);
  std::optional<long long> integer(const YAML::Node& v, const std::string& path, long long lo, long long hi);
  std::optional<double> number(const YAML::Node& v, const std::string& path);
  std::optional<Millis> duration(const YAML::Node& v, const std::string& path, Millis min = Millis(0),
                                 const char* min_text = nullptr);
  std::optional<std::uint64_t> size(const YAML::Node& v, const std::string& path);
  // A path resolved against base_dir and lexically normalised; "~..." is refused.
  std::optional<std::filesystem::path> path(const YAML::Node& v, const std::string& path);
  // A scalar or a list of scalars.
  std::optional<std::vector<std::string>> str_list(const YAML::Node& v, const std::string& path);
  // One of `allowed` (compared as written); reports a suggestion otherwise.
  std::optional<std::string> one_of(const YAML::Node& v, const std::string& path,
                                    const std::vector<std::string>& allowed);

  std::filesystem::path resolve(const std::filesystem::path& p) const;

  // ---- sections (config_sections.cpp, config_databases.cpp) ----
  void load_databases(const YAML::Node& n, Config& cfg, Where section_key);
  void load_monitoring(const YAML::Node& n, MonitoringConfig& m);
  void load_failover(const YAML::Node& n, FailoverConfig& f);
  void load_backup(const YAML::Node& n, BackupConfig& b);
  void load_alerts(const YAML::Node& n, Config& cfg);
  void load_http(const YAML::Node& n, HttpConfig& h);
  void load_store(const YAML::Node& n, const YAML::Node& local, Config& cfg);  // config_store.cpp

 private:
  std::string file_;
  std::filesystem::path base_;
  std::vector<ConfigProblem> problems_;
};

// The value stored under `key` in mapping `m` (first occurrence), or an undefined node.
YAML::Node child(const YAML::Node& m, const std::string& key);
// Present = defined and not null.
bool present(const YAML::Node& n);
// "'value'" for scalars (truncated), "a list" / "a mapping" otherwise.
std::string describe(const YAML::Node& n);
std::string join(const std::string& path, const std::string& key);
// Lexically normal, without a trailing separator.
std::filesystem::path normal(const std::filesystem::path& p);

}  // namespace drd::config_detail
