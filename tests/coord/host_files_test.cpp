// Multi-host mode drops the file-level settings of other hosts' databases
// (daemon/coord/host_files.cpp).
#include <catch2/catch.hpp>

#include "daemon/coord/host_files.hpp"

using namespace drd;

namespace {

Config pg_config(const std::string& store_type, const std::string& local) {
  Config c;
  c.store.type = store_type;
  c.local = local;
  for (const char* name : {"db1", "db2", "db3"}) {
    NodeConfig n;
    n.key = n.name = name;
    n.engine = Engine::postgresql;
    n.data_dir = std::string("/var/lib/postgresql/15/") + name;
    n.bin_dir = "/usr/lib/postgresql/15/bin";
    n.os_user = "postgres";
    c.nodes.push_back(n);
  }
  return c;
}

}  // namespace

TEST_CASE("etcd mode: only the local node keeps data_dir, bin_dir and os_user", "[coord][host_files]") {
  struct Row {
    std::string store, local;
    std::vector<std::string> changed;
  };
  for (const Row& row : std::vector<Row>{{"etcd", "db2", {"db1", "db3"}},
                                          {"etcd", "db1", {"db2", "db3"}},
                                          {"local", "db2", {}},   // one drd for every database: it uses them all
                                          {"local", "", {}}}) {
    INFO(row.store << " local=" << row.local);
    Config c = pg_config(row.store, row.local);
    CHECK(coord::keep_local_files_only(c) == row.changed);
    for (auto& n : c.nodes) {
      const bool kept = row.store != "etcd" || n.name == row.local;
      CHECK(n.data_dir.has_value() == kept);
      CHECK(n.bin_dir.has_value() == kept);
      CHECK(n.os_user.has_value() == kept);
    }
  }
  // Nothing to drop: nothing reported.
  Config c = pg_config("etcd", "db1");
  coord::keep_local_files_only(c);
  CHECK(coord::keep_local_files_only(c).empty());
}
