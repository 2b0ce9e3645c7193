#include "daemon/coord/etcd_store.hpp"

#include <algorithm>
#include <boost/json.hpp>
#include <cstdio>

namespace drd::coord {

namespace json = boost::json;

std::string history_to_json(const FailoverRecord& r) {
  json::object o{{"time_ms", r.time_ms}, {"from", r.from}, {"to", r.to}, {"mode", r.mode},
                 {"reason", r.reason}, {"duration_ms", r.duration_ms}, {"lag_bytes", r.lag_bytes}, {"term", r.term}};
  if (r.position) o["position"] = *r.position;
  return json::serialize(o);
}

std::optional<FailoverRecord> history_from_json(const std::string& text) {
  boost::system::error_code ec;
  auto v = json::parse(text, ec);
  if (ec || !v.is_object()) return std::nullopt;
  auto& o = v.as_object();
  auto i64 = [&](const char* k) -> std::int64_t {
    auto* x = o.if_contains(k);
    if (!x) return 0;
    if (x->is_int64()) return x->as_int64();
    if (x->is_uint64()) return static_cast<std::int64_t>(x->as_uint64());
    return 0;
  };
  auto s = [&](const char* k) {
    auto* x = o.if_contains(k);
    return x && x->is_string() ? std::string(x->as_string()) : std::string();
  };
  FailoverRecord r;
  r.time_ms = i64("time_ms");
  r.from = s("from");
  r.to = s("to");
  r.mode = s("mode");
  r.reason = s("reason");
  r.duration_ms = i64("duration_ms");
  r.lag_bytes = static_cast<std::uint64_t>(i64("lag_bytes"));
  r.term = i64("term");
  if (o.if_contains("position")) r.position = static_cast<std::uint64_t>(i64("position"));
  return r;
}

EtcdClusterStore::EtcdClusterStore(std::shared_ptr<EtcdClient> client, std::string prefix, std::string me)
    : client_(std::move(client)), prefix_(std::move(prefix)), me_(std::move(me)) {}

Compare EtcdClusterStore::i_lead() const {
  return Compare{key("state/leader"), Compare::Target::value, Compare::Op::equal, me_, 0};
}

Status EtcdClusterStore::leader_write(std::vector<Compare> cmp, std::vector<TxnOp> ops, const std::string& what) {
  cmp.push_back(i_lead());
  auto r = client_->txn(cmp, ops);
  if (!r) {
    Error e = r.error();
    e.message = "cannot " + what + " in etcd: " + e.message;
    return e;
  }
  if (!r->succeeded)
    return make_error(Errc::conflict, "cannot " + what + ": this drd (" + me_ + ") no longer leads the cluster");
  return ok_status();
}

Result<ClusterRecord> EtcdClusterStore::cluster() {
  // One transaction without compares: a consistent snapshot of both keys.
  auto r = client_->txn({}, {TxnOp{TxnOp::Kind::range, key("state/term"), {}, 0, false},
                             TxnOp{TxnOp::Kind::range, key("state/primary"), {}, 0, false}});
  if (!r) return r.error();
  ClusterRecord c;
  if (r->ranges.size() == 2) {
    if (!r->ranges[0].empty()) c.term = std::atoll(r->ranges[0][0].value.c_str());
    if (!r->ranges[1].empty()) c.primary = r->ranges[1][0].value;
  }
  return c;
}

Result<bool> EtcdClusterStore::compare_and_set_primary(std::int64_t expected_term, const std::string& primary) {
  return claim_primary(expected_term, primary, "");
}

// One transaction: the new primary, term + 1 and (unless empty) `fence` recorded fenced.
Result<bool> EtcdClusterStore::claim_primary(std::int64_t expected_term, const std::string& primary,
                                             const std::string& fence) {
  std::vector<Compare> cmp;
  if (expected_term == 0) cmp.push_back(Compare{key("state/term"), Compare::Target::version, Compare::Op::equal, {}, 0});
  else cmp.push_back(Compare{key("state/term"), Compare::Target::value, Compare::Op::equal, std::to_string(expected_term), 0});
  cmp.push_back(i_lead());
  std::vector<TxnOp> ops{TxnOp{TxnOp::Kind::put, key("state/term"), std::to_string(expected_term + 1), 0, false},
                         TxnOp{TxnOp::Kind::put, key("state/primary"), primary, 0, false}};
  if (!fence.empty()) ops.push_back(TxnOp{TxnOp::Kind::put, key("state/fenced/" + fence), "1", 0, false});
  auto r = client_->txn(cmp, ops);
  if (!r) return r.error();
  if (r->succeeded && on_written) on_written(primary, expected_term + 1);
  return r->succeeded;
}

Status EtcdClusterStore::append_history(const FailoverRecord& rec) {
  char name[64];
  std::snprintf(name, sizeof name, "history/%012lld-%015lld", static_cast<long long>(rec.term),
                static_cast<long long>(rec.time_ms));
  // Written only while the term is still the one the failover made.
  // The history row clears the pending failover in the same transaction (only the leader
  // writes either, and only for the current term).
  return leader_write({Compare{key("state/term"), Compare::Target::value, Compare::Op::equal, std::to_string(rec.term), 0}},
                      {TxnOp{TxnOp::Kind::put, key(name), history_to_json(rec), 0, false},
                       TxnOp{TxnOp::Kind::del, key("state/pending"), {}, 0, false}},
                      "record failover history");
}

Status EtcdClusterStore::set_pending_failover(const std::optional<FailoverRecord>& r) {
  if (!r) return leader_write({}, {TxnOp{TxnOp::Kind::del, key("state/pending"), {}, 0, false}}, "clear the pending failover");
  return leader_write({}, {TxnOp{TxnOp::Kind::put, key("state/pending"), history_to_json(*r), 0, false}},
                      "record the pending failover");
}

Result<std::optional<FailoverRecord>> EtcdClusterStore::pending_failover() {
  auto kvs = client_->range(key("state/pending"));
  if (!kvs) return kvs.error();
  if (kvs->empty()) return std::optional<FailoverRecord>{};
  return history_from_json(kvs->front().value);
}

Result<std::vector<FailoverRecord>> EtcdClusterStore::history(int limit, std::int64_t since_ms) {
  auto kvs = client_->range(key("history/"), true);
  if (!kvs) return kvs.error();
  std::vector<FailoverRecord> out;
  for (auto& kv : *kvs)
    if (auto r = history_from_json(kv.value); r && r->time_ms >= since_ms) out.push_back(*r);
  // Newest first, as the local store returns them.
  std::sort(out.begin(), out.end(), [](auto& a, auto& b) { return std::pair(a.term, a.time_ms) > std::pair(b.term, b.time_ms); });
  if (limit >= 0 && out.size() > static_cast<std::size_t>(limit)) out.resize(static_cast<std::size_t>(limit));
  return out;
}

Result<std::optional<bool>> EtcdClusterStore::flag(const std::string& name) {
  auto kvs = client_->range(key("state/flags/" + name));
  if (!kvs) return kvs.error();
  if (kvs->empty()) return std::optional<bool>{};
  return std::optional<bool>{kvs->front().value == "true"};
}

Status EtcdClusterStore::set_flag(const std::string& name, bool value) {
  return leader_write({}, {TxnOp{TxnOp::Kind::put, key("state/flags/" + name), value ? "true" : "false", 0, false}},
                      "set " + name);
}

Result<std::vector<std::string>> EtcdClusterStore::fenced_nodes() {
  auto kvs = client_->range(key("state/fenced/"), true);
  if (!kvs) return kvs.error();
  std::vector<std::string> out;
  const std::string pre = key("state/fenced/");
  for (auto& kv : *kvs) out.push_back(kv.key.substr(pre.size()));
  return out;
}

Status EtcdClusterStore::set_fenced(const std::string& node, bool fenced) {
  TxnOp op{fenced ? TxnOp::Kind::put : TxnOp::Kind::del, key("state/fenced/" + node), "1", 0, false};
  return leader_write({}, {op}, std::string(fenced ? "record " : "clear ") + node + " as fenced");
}

}  // namespace drd::coord
