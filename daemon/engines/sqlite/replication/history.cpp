#include "daemon/engines/sqlite/replication/history.hpp"

#include <algorithm>

namespace drd::replication {

namespace {

bool is_prefix(const std::vector<TermStart>& shorter, const std::vector<TermStart>& longer) {
  return shorter.size() <= longer.size() && std::equal(shorter.begin(), shorter.end(), longer.begin());
}

// `behind` went through fewer terms than `ahead`. It is a prefix of `ahead` when its terms are
// the first ones of `ahead` and its last stamp lies before `ahead` left that term (the next
// term of `ahead` began at an epoch `behind` never reached).
bool prefix_across_terms(const FileHistory& behind, const FileHistory& ahead) {
  if (!is_prefix(behind.terms, ahead.terms) || behind.terms.size() >= ahead.terms.size()) return false;
  return behind.epoch < ahead.terms[behind.terms.size()].start_epoch;
}

std::string short_id(const std::string& id) { return id.size() > 8 ? id.substr(0, 8) : id; }

}  // namespace

const char* lineage_name(Lineage l) {
  switch (l) {
    case Lineage::same: return "same";
    case Lineage::target_behind: return "behind";
    case Lineage::target_ahead: return "ahead";
    case Lineage::diverged: return "diverged";
    case Lineage::foreign: return "foreign";
    case Lineage::target_unstamped: return "unstamped";
    case Lineage::source_unstamped: return "source unstamped";
    case Lineage::both_unstamped: return "both unstamped";
  }
  return "?";
}

Lineage compare_lineage(const FileHistory& source, const FileHistory& target) {
  if (!source.stamped && !target.stamped) return Lineage::both_unstamped;
  if (!target.stamped) return Lineage::target_unstamped;
  if (!source.stamped) return Lineage::source_unstamped;
  if (source.db_id != target.db_id) return Lineage::foreign;
  const auto ts = source.last_term(), tt = target.last_term();
  if (ts == tt) {
    if (source.terms != target.terms) return Lineage::diverged;
    if (source.epoch == target.epoch) return Lineage::same;
    return target.epoch < source.epoch ? Lineage::target_behind : Lineage::target_ahead;
  }
  if (tt < ts) return prefix_across_terms(target, source) ? Lineage::target_behind : Lineage::diverged;
  return prefix_across_terms(source, target) ? Lineage::target_ahead : Lineage::diverged;
}

std::string describe_history(const FileHistory& h) {
  if (!h.stamped) return "no drd history";
  std::string s = "db " + short_id(h.db_id) + ", term " + std::to_string(h.last_term());
  if (!h.terms.empty()) s += " (since epoch " + std::to_string(h.terms.back().start_epoch) + ")";
  return s + ", epoch " + std::to_string(h.epoch);
}

OverwriteVerdict may_overwrite(const FileHistory& source, const FileHistory& target, bool discard) {
  if (discard) return {true, "the operator discarded this copy"};
  const Lineage l = compare_lineage(source, target);
  const std::string both = " (it: " + describe_history(target) + "; source: " + describe_history(source) + ")";
  switch (l) {
    case Lineage::same:
    case Lineage::target_behind:
    case Lineage::both_unstamped:
      return {true, ""};
    case Lineage::target_ahead:
      return {false, "it holds a longer history than the source" + both};
    case Lineage::diverged:
      return {false, "its history diverges from the source's" + both};
    case Lineage::foreign:
      return {false, "it is another database" + both};
    case Lineage::target_unstamped:
      return {false, "it holds data without a drd history, so drd cannot tell whether the source continues it" + both};
    case Lineage::source_unstamped:
      return {false, "the source carries no drd history while it does (a new or replaced file at the source's path?)" +
                         both};
  }
  return {false, "unknown relation"};
}

bool more_advanced(const FileHistory& a, const FileHistory& b) {
  return compare_lineage(a, b) == Lineage::target_behind;
}

}  // namespace drd::replication
