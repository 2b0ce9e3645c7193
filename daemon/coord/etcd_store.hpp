#pragma once
// EtcdClusterStore: the ClusterStore (daemon/store/state_store.hpp) kept in etcd, shared by
// one drd per host (docs/multi-host.md). Keys under the configured prefix P:
//   P/state/term            decimal term
//   P/state/primary         node name
//   P/state/leader          the leading drd's name, on its lease
//   P/state/members/NAME    each drd's report (JSON), on its own lease
//   P/state/flags/NAME      "true" | "false"
//   P/state/fenced/NODE     "1"
//   P/history/TERM-TIME     one failover (JSON), TERM and TIME zero-padded so keys sort
// Every write is a transaction that also compares P/state/leader with this drd's
// name, and primary/history writes compare the term too: a drd that lost the lead
// (its lease expired, someone else took the key) has every write refused.
// Blocking (calls etcd); call from a worker thread. Thread-safe.
#include <functional>
#include <memory>
#include <string>

#include "daemon/coord/etcd_client.hpp"
#include "daemon/store/state_store.hpp"

namespace drd::coord {

class EtcdClusterStore : public ClusterStore {
 public:
  EtcdClusterStore(std::shared_ptr<EtcdClient> client, std::string prefix, std::string me);

  Result<ClusterRecord> cluster() override;
  Result<bool> compare_and_set_primary(std::int64_t expected_term, const std::string& primary) override;
  Result<bool> claim_primary(std::int64_t expected_term, const std::string& primary, const std::string& fence) override;
  Status append_history(const FailoverRecord& r) override;
  Result<std::vector<FailoverRecord>> history(int limit, std::int64_t since_ms = 0) override;
  Result<std::optional<bool>> flag(const std::string& name) override;
  Status set_flag(const std::string& name, bool value) override;
  Result<std::vector<std::string>> fenced_nodes() override;
  Status set_fenced(const std::string& node, bool fenced) override;
  Status set_pending_failover(const std::optional<FailoverRecord>& r) override;  // P/state/pending
  Result<std::optional<FailoverRecord>> pending_failover() override;

  std::string key(const std::string& rel) const { return prefix_ + "/" + rel; }
  const std::string& me() const { return me_; }
  // Called after each successful primary/term write (the coordinator's view must not
  // wait for its next read to know this drd's own node became, or stopped being, primary).
  std::function<void(const std::string& primary, std::int64_t term)> on_written;
  EtcdClient& client() { return *client_; }

 private:
  Compare i_lead() const;
  Status leader_write(std::vector<Compare> cmp, std::vector<TxnOp> ops, const std::string& what);

  std::shared_ptr<EtcdClient> client_;
  std::string prefix_, me_;
};

// JSON form of a failover record (etcd values, peer answers).
std::string history_to_json(const FailoverRecord& r);
std::optional<FailoverRecord> history_from_json(const std::string& text);

}  // namespace drd::coord
