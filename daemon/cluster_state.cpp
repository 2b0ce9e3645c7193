#include "daemon/cluster_state.hpp"

#include <algorithm>

namespace drd {

bool ClusterState::is_fenced(const std::string& node) const {
  return std::find(fenced_.begin(), fenced_.end(), node) != fenced_.end();
}

void ClusterState::load(std::string primary, std::int64_t term, std::vector<std::string> fenced) {
  primary_ = std::move(primary);
  term_ = term;
  fenced_ = std::move(fenced);
}

void ClusterState::mirror(const std::string& primary, std::int64_t term, std::vector<std::string> fenced) {
  if (term >= term_) {
    primary_ = primary;
    term_ = term;
  }
  fenced_ = std::move(fenced);
}

void ClusterState::primary_recorded(const std::string& node) {
  primary_ = node;
  ++term_;
}

void ClusterState::fence(const std::string& node) {
  if (!is_fenced(node)) fenced_.push_back(node);
}

void ClusterState::unfence(const std::string& node) {
  fenced_.erase(std::remove(fenced_.begin(), fenced_.end(), node), fenced_.end());
}

}  // namespace drd
