#include "daemon/engines/postgres/postgres_cluster_logic.hpp"

namespace drd::pgha {

namespace {
const ReplicaStat* row_for(const ProbeResult& p, const std::string& name) {
  for (auto& r : p.replicas)
    if (r.application_name == name) return &r;
  return nullptr;
}
const ProbeResult* find(const Probes& probes, const std::string& name) {
  auto it = probes.find(name);
  return it == probes.end() ? nullptr : &it->second;
}
}  // namespace

bool streams(const ProbeResult& primary_probe, const std::string& name) {
  auto* r = row_for(primary_probe, name);
  return r && r->state == "streaming";
}

std::map<std::string, ReplicaInfo> replica_snapshot(const std::vector<std::string>& names, const std::string& primary,
                                                    const Probes& probes, const std::set<std::string>& fenced,
                                                    const std::map<std::string, std::string>& fence_notes,
                                                    const std::map<std::string, ReplicaInfo>& previous) {
  std::map<std::string, ReplicaInfo> out;
  const ProbeResult* prim = find(probes, primary);
  const bool prim_ok = prim && prim->ok && prim->role == Role::primary;
  for (auto& name : names) {
    if (name == primary) continue;
    const ProbeResult* self = find(probes, name);
    const bool self_ok = self && self->ok;
    std::optional<std::uint64_t> own_pos;
    if (self_ok && self->role == Role::standby) own_pos = self->receive_lsn ? self->receive_lsn : self->replay_lsn;
    if (fenced.count(name)) {
      ReplicaInfo info;
      auto n = fence_notes.find(name);
      info.note = n != fence_notes.end() ? n->second : "fenced";
      info.position = own_pos;
      out[name] = info;
      continue;
    }
    ReplicaInfo info;
    if (auto p = previous.find(name); p != previous.end()) info = p->second;
    if (prim_ok) {
      const std::uint64_t cur = prim->current_lsn.value_or(0);
      if (const ReplicaStat* r = row_for(*prim, name)) {
        info.streaming = r->state == "streaming";
        info.sync = r->sync_state == "sync";
        info.lag_bytes = cur > r->flush_lsn ? cur - r->flush_lsn : 0;
        info.lag_ms = r->replay_lag_ms;
        info.position = r->flush_lsn ? std::optional<std::uint64_t>(r->flush_lsn) : std::nullopt;
        info.note = r->state + (r->sync_state.empty() ? "" : " (" + r->sync_state + ")");
        if (r->has_replay_lsn) info.replay_lag_bytes = cur > r->replay_lsn ? cur - r->replay_lsn : 0;
      } else {
        info.streaming = false;
        info.sync = false;
        info.note = "not streaming from " + primary;
        if (own_pos) info.lag_bytes = cur > *own_pos ? cur - *own_pos : 0;
        if (self_ok && self->replay_delay_ms) info.lag_ms = *self->replay_delay_ms;
        if (self_ok && self->role == Role::standby && self->replay_lsn)
          info.replay_lag_bytes = cur > *self->replay_lsn ? cur - *self->replay_lsn : 0;
      }
    } else {
      info.streaming = false;
      info.note = "primary " + primary + " not answering; last known lag kept";
    }
    if (own_pos) info.position = own_pos;
    if (self_ok && self->role == Role::standby) info.replay_paused = self->replay_paused;
    if (info.replay_paused) info.note += "; WAL replay paused";
    if (self && !self->ok) info.note += "; unreachable: " + self->error;
    else if (self_ok && self->role == Role::primary) info.note = self->writable ? "second primary" : "read-only primary (needs rejoin)";
    out[name] = info;
  }
  return out;
}

std::vector<std::string> second_primaries(const std::string& primary, const Probes& probes) {
  std::vector<std::string> out;
  for (auto& [name, p] : probes)
    if (name != primary && p.ok && p.role == Role::primary && p.writable) out.push_back(name);
  return out;
}

std::vector<std::string> standbys_not_streaming(const std::vector<std::string>& names, const std::string& primary,
                                                const Probes& probes, const std::set<std::string>& fenced) {
  std::vector<std::string> out;
  const ProbeResult* prim = find(probes, primary);
  if (!prim || !prim->ok || prim->role != Role::primary) return out;
  for (auto& name : names) {
    if (name == primary || fenced.count(name)) continue;
    const ProbeResult* self = find(probes, name);
    if (!self || !self->ok || self->role != Role::standby) continue;
    if (!streams(*prim, name)) out.push_back(name);
  }
  return out;
}

std::optional<std::string> switchover_refusal(const std::string& target, bool replay_paused,
                                              std::optional<std::uint64_t> replay_lag_bytes, std::uint64_t max_lag_bytes) {
  const std::string lag = replay_lag_bytes ? std::to_string(*replay_lag_bytes) + " bytes" : std::string("unknown");
  if (replay_paused)
    return "WAL replay is paused on " + target + " (replay lag " + lag +
           "): it would never catch up with the fenced primary";
  if (replay_lag_bytes && *replay_lag_bytes > max_lag_bytes)
    return target + " has not replayed " + lag + " of the primary's WAL (more than max_lag " +
           std::to_string(max_lag_bytes) + " bytes): the primary would stay read-only while it catches up";
  return std::nullopt;
}

std::string synchronous_standby_names(const std::vector<std::string>& names) {
  if (names.empty()) return "";
  std::string out = "FIRST 1 (";
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (i) out += ", ";
    out += '"';
    for (char c : names[i]) {
      if (c == '"') out += '"';
      out += c;
    }
    out += '"';
  }
  return out + ")";
}

SyncAction next_sync_action(SyncState& s, bool any_streaming, SteadyTime now, Millis degrade_after) {
  if (any_streaming) {
    s.none_streaming_since.reset();
    if (s.degraded) {
      s.degraded = false;
      return SyncAction::restore;
    }
    return SyncAction::none;
  }
  if (!s.none_streaming_since) s.none_streaming_since = now;
  if (!s.degraded && now - *s.none_streaming_since >= degrade_after) {
    s.degraded = true;
    return SyncAction::degrade;
  }
  return SyncAction::none;
}

}  // namespace drd::pgha
