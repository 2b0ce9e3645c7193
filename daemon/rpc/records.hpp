#pragma once
// The read-only answers built from drd's records alone: `history` (failovers), `health`
// (availability, percentiles and outages from the health samples) and `audit`. Pure reads of
// the stores, no daemon state: the method table's handlers call them on the control strand
// (`health` after the daemon flushed its pending samples). Errors name the bad parameter.
#include <boost/json.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "daemon/store/state_store.hpp"

namespace drd::rpc {

namespace json = boost::json;

// Two decimals, as every *_ms and *_pct field of the answers is written.
double round2(double v);

Result<json::value> history_answer(ClusterStore& cluster, const json::object& params);
// `nodes`: the configured node names in order; `now_ms`: the end of the window.
Result<json::value> health_answer(SqliteStateStore& samples, ClusterStore& cluster, const std::vector<std::string>& nodes,
                                  std::int64_t now_ms, const json::object& params);
Result<json::value> audit_answer(SqliteStateStore& store, const json::object& params);

}  // namespace drd::rpc
