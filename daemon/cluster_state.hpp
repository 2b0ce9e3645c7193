#pragma once
// ClusterState: what this drd holds as the cluster's state right now.
//
// Owns: the primary and its term, the fenced nodes, the monitoring and automatic-failover
// flags, why the primary is stopped on purpose (a restore onto it), and whether this drd
// leads the cluster (multi-host mode).
//
// Strand: the control strand only (monitoring() alone may be read from any thread: the
// probe strands ask it).
//
// Changed only through the named operations below, so every change has one name to search
// for. Persistence is the caller's: it writes the cluster store (SQLite or etcd) first and
// changes this only when the store took the change, so the two never disagree on a term.
// Calls nothing.
#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

namespace drd {

class ClusterState {
 public:
  const std::string& primary() const { return primary_; }
  std::int64_t term() const { return term_; }
  const std::vector<std::string>& fenced() const { return fenced_; }
  bool is_fenced(const std::string& node) const;
  bool monitoring() const { return monitoring_.load(); }
  bool auto_failover() const { return auto_failover_; }
  // Why the primary is stopped on purpose, "" when it is not (policy.hpp ClusterView).
  const std::string& primary_paused() const { return primary_paused_; }
  bool paused() const { return !primary_paused_.empty(); }
  bool leading() const { return leading_; }

  // The store's view, read at start or when this drd takes the lead in multi-host mode.
  void load(std::string primary, std::int64_t term, std::vector<std::string> fenced);
  // A follower drd mirrors the shared state; a term never goes back.
  void mirror(const std::string& primary, std::int64_t term, std::vector<std::string> fenced);
  // The store recorded `node` as the primary under the next term (first election, a claimed
  // failover, an aborted switchover handing the primary back).
  void primary_recorded(const std::string& node);
  void fence(const std::string& node);
  void unfence(const std::string& node);
  // Returns the previous value.
  bool set_monitoring(bool on) { return monitoring_.exchange(on); }
  void set_auto_failover(bool on) { auto_failover_ = on; }
  void pause_primary(std::string why) { primary_paused_ = std::move(why); }
  void resume_primary() { primary_paused_.clear(); }
  void set_leading(bool leading) { leading_ = leading; }

 private:
  std::string primary_;
  std::int64_t term_ = 0;
  std::vector<std::string> fenced_;
  std::atomic<bool> monitoring_{true};
  bool auto_failover_ = true;
  std::string primary_paused_;
  bool leading_ = false;
};

}  // namespace drd
