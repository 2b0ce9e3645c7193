#include "daemon/engines/postgres/postgres_identity.hpp"

#include <algorithm>
#include <map>
#include <sstream>

#include "daemon/engines/postgres/postgres_util.hpp"

namespace drd::pgid {

std::optional<History> parse_timeline_history(const std::string& text) {
  History out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    auto start = line.find_first_not_of(" \t\r");
    if (start == std::string::npos || line[start] == '#') continue;
    std::istringstream fields(line.substr(start));
    std::string tli, lsn;
    if (!(fields >> tli >> lsn)) return std::nullopt;
    Fork f;
    try {
      std::size_t used = 0;
      unsigned long v = std::stoul(tli, &used, 10);
      if (used != tli.size() || v == 0 || v > 0xffffffffUL) return std::nullopt;
      f.parent_timeline = static_cast<std::uint32_t>(v);
    } catch (...) {
      return std::nullopt;
    }
    auto l = pg::parse_lsn(lsn);
    if (!l) return std::nullopt;
    f.switch_lsn = *l;
    out.push_back(f);
  }
  return out;
}

std::optional<std::string> not_member_reason(const std::optional<std::string>& cluster_system_id,
                                             const std::optional<std::string>& node_system_id) {
  if (!cluster_system_id || !node_system_id || *cluster_system_id == *node_system_id) return std::nullopt;
  return "system identifier " + *node_system_id + " differs from the cluster's " + *cluster_system_id +
         ": not a member (another cluster, e.g. re-created with initdb); not a candidate";
}

ClusterIdentity cluster_identity(const std::optional<std::string>& stored, const std::vector<StartNode>& nodes) {
  ClusterIdentity out;
  if (stored) {
    out.system_id = stored;
    return out;
  }
  std::map<std::string, std::vector<std::string>> by_id;  // system identifier -> nodes reporting it
  std::size_t answered = 0;
  for (auto& n : nodes)
    if (n.reachable && n.system_id) {
      by_id[*n.system_id].push_back(n.name);
      ++answered;
    }
  if (by_id.empty()) return out;  // nobody answered yet: nothing to learn, nothing to hold
  for (auto& [id, names] : by_id)
    if (2 * names.size() > answered) {
      out.system_id = id;
      out.learned = true;
      return out;
    }
  out.hold = "the servers do not agree on the cluster's system identifier and drd has none recorded:";
  for (auto& [id, names] : by_id) {
    out.hold += " " + id + " (";
    for (std::size_t i = 0; i < names.size(); ++i) out.hold += (i ? ", " : "") + names[i];
    out.hold += ")";
  }
  out.hold += "; drd cannot tell which servers are its own and elects no primary: stop or remove the servers that "
              "do not belong to this cluster";
  return out;
}

namespace {

std::string describe(const StartNode& n) {
  return n.name + " (timeline " + (n.timeline ? std::to_string(*n.timeline) : std::string("?")) + ", LSN " +
         (n.lsn ? pg::format_lsn(*n.lsn) : std::string("?")) + ")";
}

// Whether primary `a` may be kept over primary `b` without losing anything `a` lacks that
// the cluster acknowledged on the newer history; `why` says what blocks it, or what `b` keeps.
bool continues(const StartNode& a, const StartNode& b, std::string& why) {
  if (!a.timeline || !b.timeline) {
    why = "the timeline of " + (a.timeline ? b.name : a.name) + " is unknown";
    return false;
  }
  if (!a.history || !b.history) {
    why = "the timeline history of " + (a.history ? b.name : a.name) + " could not be read";
    return false;
  }
  if (*a.timeline > *b.timeline) {
    const History& ha = *a.history;
    const History& hb = *b.history;
    const bool prefix = hb.size() < ha.size() && std::equal(hb.begin(), hb.end(), ha.begin());
    if (!prefix || ha[hb.size()].parent_timeline != *b.timeline) {
      why = "the history of " + a.name + " does not pass through timeline " + std::to_string(*b.timeline) + " of " +
            b.name + ": their histories diverged";
      return false;
    }
    const std::uint64_t fork = ha[hb.size()].switch_lsn;
    why = a.name + " continues timeline " + std::to_string(*b.timeline) + " (it left it at " + pg::format_lsn(fork) + ")";
    if (b.lsn && *b.lsn > fork)
      why += "; " + b.name + " wrote " + std::to_string(*b.lsn - fork) +
             " bytes of WAL after that fork point, which stay on " + b.name + " (fenced, not rewound)";
    return true;
  }
  if (*a.timeline < *b.timeline) {
    why = a.name + " is on an older timeline than " + b.name;
    return false;
  }
  if (*a.history != *b.history) {
    why = a.name + " and " + b.name + " are both on timeline " + std::to_string(*a.timeline) +
          " with different histories: they diverged";
    return false;
  }
  if (!a.lsn || !b.lsn || *a.lsn == *b.lsn) {
    why = a.name + " and " + b.name + " are both on timeline " + std::to_string(*a.timeline) +
          (a.lsn && b.lsn ? " at the same LSN" : " and an LSN is unknown") + ": nothing tells which one to keep";
    return false;
  }
  if (*a.lsn < *b.lsn) {
    why = a.name + " is behind " + b.name + " on the same timeline";
    return false;
  }
  why = a.name + " is further than " + b.name + " on the same timeline " + std::to_string(*a.timeline) + " (" +
        std::to_string(*a.lsn - *b.lsn) + " bytes)";
  return true;
}

}  // namespace

PrimaryVerdict settle_primaries(const std::vector<StartNode>& nodes, const std::optional<std::string>& system_id) {
  PrimaryVerdict out;
  std::vector<const StartNode*> primaries;
  for (auto& n : nodes) {
    if (!n.reachable || n.in_recovery) continue;
    if (system_id && n.system_id && *n.system_id != *system_id) continue;  // not ours
    primaries.push_back(&n);
  }
  if (primaries.empty()) return out;
  if (primaries.size() == 1) {
    out.kind = PrimaryVerdict::Kind::one;
    out.primary = primaries.front()->name;
    out.reason = out.primary + " is the only primary among the servers (the others are standbys or do not answer)";
    return out;
  }
  // The best-looking one first (newest timeline, then furthest LSN); only it can continue all.
  std::stable_sort(primaries.begin(), primaries.end(), [](const StartNode* a, const StartNode* b) {
    return std::make_pair(a->timeline.value_or(0), a->lsn.value_or(0)) >
           std::make_pair(b->timeline.value_or(0), b->lsn.value_or(0));
  });
  std::string all;
  for (std::size_t i = 0; i < primaries.size(); ++i) all += (i ? ", " : "") + describe(*primaries[i]);
  const StartNode& best = *primaries.front();
  std::vector<std::string> notes;
  for (std::size_t i = 1; i < primaries.size(); ++i) {
    std::string why;
    if (!continues(best, *primaries[i], why)) {
      out.kind = PrimaryVerdict::Kind::needs_operator;
      out.reason = "several servers are primaries: " + all + "; " + why +
                   ". drd elects none of them and waits for an operator: keep the one whose data you want, stop "
                   "the other (or make it a standby); drd carries on by itself";
      return out;
    }
    notes.push_back(why);
    out.fence.push_back(primaries[i]->name);
  }
  out.kind = PrimaryVerdict::Kind::winner;
  out.primary = best.name;
  out.reason = "several servers are primaries: " + all + "; keeping " + best.name + ", fencing the other" +
               (out.fence.size() > 1 ? "s" : "") + ":";
  for (std::size_t i = 0; i < notes.size(); ++i) out.reason += (i ? "; " : " ") + notes[i];
  return out;
}

}  // namespace drd::pgid
