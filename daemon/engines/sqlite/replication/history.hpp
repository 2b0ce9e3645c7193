#pragma once
// The history a managed SQLite file carries inside itself, and the one rule every
// path that overwrites a copy obeys. Pure: no I/O (history_table.* reads and writes
// the table). Tested table-driven in tests/replication/history_test.cpp.
//
// Every database drd manages holds a small table, `_drd_history`, one row per term in
// which a file of this database became primary: the database id (random, made once),
// the term, the epoch at which the term began, and the current epoch. drd "stamps" the
// primary (adds one to the epoch of the last row) shortly after commits arrive, when it
// starts and when it stops, so the stamps travel to every standby with the WAL.
// Two files of one database can then be ordered without trusting any side file:
//   - another database id: nothing in common ("foreign");
//   - the terms one file went through are a prefix of the other's, and its epoch lies
//     before the point where the other left its last term: it is behind (a prefix);
//   - same last term, lower epoch: behind; higher: ahead;
//   - anything else: the two went different ways after a common point ("diverged").
// Granularity: two files at the same stamp are treated as equal; what was committed after
// the last stamp (at most one stamp interval) is the only thing this cannot order.
#include <cstdint>
#include <string>
#include <vector>

namespace drd::replication {

struct TermStart {
  std::int64_t term = 0;
  std::uint64_t start_epoch = 0;
  bool operator==(const TermStart&) const = default;
};

struct FileHistory {
  bool stamped = false;          // carries drd's table at all
  std::string db_id;
  std::vector<TermStart> terms;  // ascending by term
  std::uint64_t epoch = 0;       // the last stamp (in the last term)
  std::string last_node;         // the node that began the last term (for messages and attach)
  bool operator==(const FileHistory&) const = default;

  std::int64_t last_term() const { return terms.empty() ? 0 : terms.back().term; }
};

// How `target` relates to `source`.
enum class Lineage {
  same,              // the same stamp of the same history
  target_behind,     // source continues target: target holds a prefix of source's history
  target_ahead,      // target continues source: target holds more
  diverged,          // both continue a common point in different ways
  foreign,           // another database
  target_unstamped,  // target carries no history (a file drd never stamped)
  source_unstamped,  // source carries no history but target does
  both_unstamped,
};
const char* lineage_name(Lineage l);

Lineage compare_lineage(const FileHistory& source, const FileHistory& target);

// "db 3f2a…, term 4 (since epoch 120), epoch 133" or "no drd history".
std::string describe_history(const FileHistory& h);

// May drd overwrite `target` (a non-empty file) with a copy of `source`? Only when the
// target holds a prefix of the source's history (or the same point), or when an operator
// said so for this node (`discard`). `reason` says why not, naming both histories.
struct OverwriteVerdict {
  bool allowed = false;
  std::string reason;
};
OverwriteVerdict may_overwrite(const FileHistory& source, const FileHistory& target, bool discard);

// True when `a` holds strictly more of one history than `b` (b is behind a).
bool more_advanced(const FileHistory& a, const FileHistory& b);

}  // namespace drd::replication
