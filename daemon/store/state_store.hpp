#pragma once
// The daemon's durable state: current primary and term, flags, fenced nodes,
// failover history, health samples, audit log (and the backup catalog table).
//
// ClusterStore is the part a distributed store (etcd) can later replace:
//  - cluster():              a snapshot read (primary, term)
//  - compare_and_set_primary: writes primary and term+1 only if the stored term
//                             still equals `expected_term` (false when it lost)
//  - append_history:          append-only
// SqliteStateStore implements it on a local SQLite file (WAL, synchronous=FULL)
// so every acknowledged change survives kill -9 and power loss. All methods are
// thread-safe (one internal mutex) and block only for a local disk write.
#include <sqlite3.h>

#include <cstdint>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/result.hpp"

namespace drd {

struct ClusterRecord {
  std::string primary;  // empty until the first election
  std::int64_t term = 0;
};

struct FailoverRecord {
  std::int64_t time_ms = 0;
  std::string from, to;
  std::string mode;    // auto | manual | switchover | startup
  std::string reason;
  std::int64_t duration_ms = 0;
  std::uint64_t lag_bytes = 0;  // the new primary was this far behind when the failover began
  std::int64_t term = 0;
  std::optional<std::uint64_t> position;  // the new primary's position when promoted (if known)
};

struct HealthSample {
  std::string node;
  std::int64_t time_ms = 0;
  bool ok = false;
  double response_ms = 0;
  std::string error;
};

struct AuditRecord {
  std::int64_t time_ms = 0;
  std::int64_t uid = -1, pid = -1;
  std::string method;
  std::string params;  // JSON, secrets removed
  bool ok = false;
  std::string result;  // short: the error message or "ok"
};

class ClusterStore {
 public:
  virtual ~ClusterStore() = default;
  virtual Result<ClusterRecord> cluster() = 0;
  virtual Result<bool> compare_and_set_primary(std::int64_t expected_term, const std::string& primary) = 0;
  // The same, and in the same transaction records `fence` as fenced: a crash cannot leave
  // the new primary recorded while the old one is not (found by the chaos suite: a restart
  // then showed the former primary as a standby that nothing replicated to).
  virtual Result<bool> claim_primary(std::int64_t expected_term, const std::string& primary,
                                     const std::string& fence) = 0;
  // Appending the history row of term T also clears a pending failover of term T
  // (atomically), so a crash never leaves both or neither.
  virtual Status append_history(const FailoverRecord& r) = 0;
  virtual Result<std::vector<FailoverRecord>> history(int limit, std::int64_t since_ms = 0) = 0;
  // Persistent switches: "monitoring", "auto_failover".
  virtual Result<std::optional<bool>> flag(const std::string& name) = 0;
  virtual Status set_flag(const std::string& name, bool value) = 0;
  // Nodes drd fenced and that must not be used until rejoined.
  virtual Result<std::vector<std::string>> fenced_nodes() = 0;
  virtual Status set_fenced(const std::string& node, bool fenced) = 0;
  // The failover in progress (time_ms = start, term = the term it claims),
  // written before the claim and cleared by its history row: a drd killed in
  // between finds it on restart and still records the failover. nullopt clears.
  virtual Status set_pending_failover(const std::optional<FailoverRecord>& r) = 0;
  virtual Result<std::optional<FailoverRecord>> pending_failover() = 0;
};

class SqliteStateStore : public ClusterStore {
 public:
  static constexpr int kSchemaVersion = 6;

  // Opens (creating the folder and file) and migrates to kSchemaVersion.
  static Result<std::unique_ptr<SqliteStateStore>> open(const std::filesystem::path& file);
  ~SqliteStateStore() override;

  Result<ClusterRecord> cluster() override;
  Result<bool> compare_and_set_primary(std::int64_t expected_term, const std::string& primary) override;
  Result<bool> claim_primary(std::int64_t expected_term, const std::string& primary,
                             const std::string& fence) override;
  Status append_history(const FailoverRecord& r) override;
  Result<std::vector<FailoverRecord>> history(int limit, std::int64_t since_ms = 0) override;
  Result<std::optional<bool>> flag(const std::string& name) override;
  Status set_flag(const std::string& name, bool value) override;
  Result<std::vector<std::string>> fenced_nodes() override;
  Status set_fenced(const std::string& node, bool fenced) override;
  Status set_pending_failover(const std::optional<FailoverRecord>& r) override;
  Result<std::optional<FailoverRecord>> pending_failover() override;

  // Facts drd learned about the cluster and checks at every start, by name (PostgreSQL:
  // "pg_system_identifier", the system identifier of the servers that belong to it).
  // Local to this drd, like the audit log. nullopt when never recorded.
  Result<std::optional<std::string>> cluster_fact(const std::string& name);
  Status set_cluster_fact(const std::string& name, const std::string& value);

  // One transaction: the raw samples plus their per-minute summary rows.
  Status add_health_samples(const std::vector<HealthSample>& samples);
  Result<std::vector<HealthSample>> health_samples(const std::string& node, std::int64_t since_ms);
  // Per-minute aggregates of samples already folded (older than the raw retention).
  struct HealthMinute {
    std::int64_t minute_ms = 0, count = 0, failures = 0;
    double min_ms = 0, avg_ms = 0, max_ms = 0, p95_ms = 0;
  };
  Result<std::vector<HealthMinute>> health_minutes(const std::string& node, std::int64_t since_ms);

  // Drops raw samples older than raw_before_ms (their per-minute rows stay) and
  // per-minute rows older than keep_after_ms. Bounded work per call (max_rows).
  Status prune_health(std::int64_t raw_before_ms, std::int64_t keep_after_ms, int max_rows = 20000);

  Status append_audit(const AuditRecord& r);
  Result<std::vector<AuditRecord>> audit(int limit);

  int schema_version();
  const std::filesystem::path& path() const { return path_; }
  // For modules that keep their own tables here (the backup catalog). Callers must
  // hold lock() while using it.
  sqlite3* raw() { return db_; }
  std::unique_lock<std::mutex> lock() { return std::unique_lock(mu_); }

 private:
  SqliteStateStore(std::filesystem::path path, sqlite3* db) : path_(std::move(path)), db_(db) {}
  Status migrate();
  Status exec(const char* sql);
  void rollback();  // best effort: the error that led here is the one reported
  std::filesystem::path path_;
  sqlite3* db_ = nullptr;
  std::mutex mu_;
};

}  // namespace drd
