// The rule every path that overwrites a SQLite copy obeys (daemon/engines/sqlite/replication/history.hpp):
// two histories in, a relation and a verdict out.
#include <catch2/catch.hpp>

#include "daemon/engines/sqlite/replication/history.hpp"

using namespace drd::replication;

namespace {

FileHistory h(std::string id, std::vector<TermStart> terms, std::uint64_t epoch) {
  FileHistory f;
  f.stamped = true;
  f.db_id = std::move(id);
  f.terms = std::move(terms);
  f.epoch = epoch;
  return f;
}

const FileHistory none{};

}  // namespace

TEST_CASE("history lineage: every relation of two copies", "[history]") {
  // One database: term 1 from epoch 1; promoted at epoch 40 (term 3 begins at 41); again at 90.
  const auto t1_30 = h("aa", {{1, 1}}, 30);
  const auto t1_40 = h("aa", {{1, 1}}, 40);
  const auto t1_41 = h("aa", {{1, 1}}, 41);  // the former primary stamped once more after the fork
  const auto t3_60 = h("aa", {{1, 1}, {3, 41}}, 60);
  const auto t3_95 = h("aa", {{1, 1}, {3, 41}}, 95);
  const auto t5_100 = h("aa", {{1, 1}, {3, 41}, {5, 91}}, 100);
  const auto t4_70 = h("aa", {{1, 1}, {4, 41}}, 70);  // another branch from the same fork point
  const auto other = h("bb", {{1, 1}}, 500);

  struct Row {
    const char* what;
    FileHistory source, target;
    Lineage expect;
    bool overwrite;
  };
  const std::vector<Row> rows = {
      {"same stamp", t1_40, t1_40, Lineage::same, true},
      {"same term, target older", t1_40, t1_30, Lineage::target_behind, true},
      {"same term, target newer (an older copy put at the primary's path)", t1_30, t1_40, Lineage::target_ahead, false},
      {"target stopped before the fork", t3_60, t1_40, Lineage::target_behind, true},
      {"target stamped past the fork (a former primary that went on)", t3_60, t1_41, Lineage::diverged, false},
      {"target went through more terms", t1_40, t3_60, Lineage::target_ahead, false},
      {"source two terms ahead, target in the middle term", t5_100, t3_60, Lineage::target_behind, true},
      {"target in the middle term past the next fork", t5_100, t3_95, Lineage::diverged, false},
      {"two branches of one fork", t3_60, t4_70, Lineage::diverged, false},
      {"two branches, other way round", t4_70, t3_60, Lineage::diverged, false},
      {"another database", t1_40, other, Lineage::foreign, false},
      {"target without history (data drd never stamped)", t1_40, none, Lineage::target_unstamped, false},
      {"source without history (an empty file at the primary's path)", none, t1_40, Lineage::source_unstamped, false},
      {"neither stamped (history management off)", none, none, Lineage::both_unstamped, true},
  };
  for (auto& r : rows) {
    INFO(r.what);
    CHECK(compare_lineage(r.source, r.target) == r.expect);
    auto v = may_overwrite(r.source, r.target, false);
    CHECK(v.allowed == r.overwrite);
    if (!v.allowed) {
      CHECK(v.reason.find("source:") != std::string::npos);  // names both histories
      CHECK(may_overwrite(r.source, r.target, true).allowed);  // the operator's --discard
    }
  }
}

TEST_CASE("history lineage is antisymmetric where it orders", "[history]") {
  const auto a = h("aa", {{1, 1}}, 10), b = h("aa", {{1, 1}, {2, 11}}, 12);
  CHECK(compare_lineage(a, b) == Lineage::target_ahead);
  CHECK(compare_lineage(b, a) == Lineage::target_behind);
  CHECK(more_advanced(b, a));
  CHECK_FALSE(more_advanced(a, b));
  CHECK_FALSE(more_advanced(a, a));
}

TEST_CASE("history descriptions name database, term and epoch", "[history]") {
  CHECK(describe_history(none) == "no drd history");
  CHECK(describe_history(h("0123456789abcdef", {{1, 1}, {3, 41}}, 60)) == "db 01234567, term 3 (since epoch 41), epoch 60");
}
