#pragma once
// A temporary folder removed (recursively) when the object goes away.
// Set DRD_KEEP_TEST_DIRS=1 to keep them for a post-mortem.
#include <filesystem>
#include <string>

namespace drd::test {

class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "drd-test");
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& rel) const { return path_ / rel; }

 private:
  std::filesystem::path path_;
};

// Writes `text` to `file`, creating folders as needed.
void write_file(const std::filesystem::path& file, const std::string& text);
std::string read_file(const std::filesystem::path& file);

}  // namespace drd::test
