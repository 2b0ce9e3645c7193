#include "daemon/store/state_store.hpp"

#include <algorithm>
#include <map>

#include "daemon/backup/catalog.hpp"
#include "daemon/store/sqlite_stmt.hpp"

namespace drd {

namespace {

// Each migration moves the schema from version i to i+1. Never edit a shipped
// one: append a new step instead.
const char* const kMigrations[] = {
    // 0 -> 1
    R"sql(
CREATE TABLE cluster (id INTEGER PRIMARY KEY CHECK (id = 1),
                      primary_node TEXT NOT NULL DEFAULT '',
                      term INTEGER NOT NULL DEFAULT 0,
                      updated_ms INTEGER NOT NULL DEFAULT 0);
INSERT INTO cluster (id) VALUES (1);
CREATE TABLE flags (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE fenced (node TEXT PRIMARY KEY, since_ms INTEGER NOT NULL);
CREATE TABLE history (id INTEGER PRIMARY KEY AUTOINCREMENT, time_ms INTEGER NOT NULL,
                      from_node TEXT NOT NULL, to_node TEXT NOT NULL, mode TEXT NOT NULL,
                      reason TEXT NOT NULL, duration_ms INTEGER NOT NULL,
                      lag_bytes INTEGER NOT NULL, term INTEGER NOT NULL);
CREATE TABLE audit (id INTEGER PRIMARY KEY AUTOINCREMENT, time_ms INTEGER NOT NULL,
                    uid INTEGER NOT NULL, pid INTEGER NOT NULL, method TEXT NOT NULL,
                    params TEXT NOT NULL, ok INTEGER NOT NULL, result TEXT NOT NULL);
)sql",
    // 1 -> 2: health history (raw samples, then per-minute aggregates)
    R"sql(
CREATE TABLE health_samples (node TEXT NOT NULL, time_ms INTEGER NOT NULL, ok INTEGER NOT NULL,
                             response_ms REAL NOT NULL, error TEXT NOT NULL DEFAULT '');
CREATE INDEX health_samples_time ON health_samples (time_ms);
CREATE INDEX health_samples_node_time ON health_samples (node, time_ms);
CREATE TABLE health_minutes (node TEXT NOT NULL, minute_ms INTEGER NOT NULL,
                             count INTEGER NOT NULL, failures INTEGER NOT NULL,
                             min_ms REAL NOT NULL, avg_ms REAL NOT NULL, max_ms REAL NOT NULL,
                             p95_ms REAL NOT NULL, PRIMARY KEY (node, minute_ms)) WITHOUT ROWID;
)sql",
    // 2 -> 3: the backup catalog (its schema belongs to daemon/backup/catalog.cpp)
    nullptr,
    // 3 -> 4: the failover in progress (at most one row)
    R"sql(
CREATE TABLE pending_failover (id INTEGER PRIMARY KEY CHECK (id = 1), time_ms INTEGER NOT NULL,
                               from_node TEXT NOT NULL, to_node TEXT NOT NULL, mode TEXT NOT NULL,
                               reason TEXT NOT NULL, term INTEGER NOT NULL);
)sql",
    // 4 -> 5: facts drd learned about the cluster and compares on every start
    // (PostgreSQL: the system identifier of the servers that belong to it)
    R"sql(
CREATE TABLE cluster_facts (name TEXT PRIMARY KEY, value TEXT NOT NULL, since_ms INTEGER NOT NULL);
)sql",
    // 5 -> 6: the new primary's position when it was promoted (NULL: unknown, older rows)
    R"sql(
ALTER TABLE history ADD COLUMN position INTEGER;
)sql",
};
static_assert(std::size(kMigrations) == SqliteStateStore::kSchemaVersion);

Error db_error(sqlite3* db, const std::string& what) {
  return make_error(Errc::io, what + ": " + sqlite3_errmsg(db));
}

}  // namespace

Result<std::unique_ptr<SqliteStateStore>> SqliteStateStore::open(const std::filesystem::path& file) {
  std::error_code ec;
  std::filesystem::create_directories(file.parent_path(), ec);
  if (ec) return make_error(Errc::io, "cannot create state folder " + file.parent_path().string() + ": " + ec.message());
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(file.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    sqlite3_close(db);
    return make_error(Errc::io, "cannot open state database " + file.string() + ": " + msg);
  }
  sqlite3_busy_timeout(db, 5000);
  std::unique_ptr<SqliteStateStore> s(new SqliteStateStore(file, db));
  // FULL: a term or history row we acknowledged must survive a power cut.
  for (const char* pragma : {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL", "PRAGMA foreign_keys=ON"}) {
    if (auto st = s->exec(pragma); !st) return st.error();
  }
  if (auto st = s->migrate(); !st) return st.error();
  return s;
}

SqliteStateStore::~SqliteStateStore() { sqlite3_close(db_); }

void SqliteStateStore::rollback() { sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr); }

Status SqliteStateStore::exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "unknown error";
    sqlite3_free(err);
    return make_error(Errc::io, "state database " + path_.string() + ": " + msg);
  }
  return ok_status();
}

int SqliteStateStore::schema_version() {
  Stmt q(db_, "PRAGMA user_version");
  return q.step() == SQLITE_ROW ? static_cast<int>(q.i64(0)) : -1;
}

Status SqliteStateStore::migrate() {
  std::lock_guard g(mu_);
  int v = schema_version();
  if (v > kSchemaVersion)
    return make_error(Errc::invalid_argument,
                      "state database " + path_.string() + " has schema version " + std::to_string(v) +
                          ", newer than this drd understands (" + std::to_string(kSchemaVersion) + ")",
                      "run the drd version that wrote it, or move the file away to start afresh");
  for (; v < kSchemaVersion; ++v) {
    // Each step and its version bump commit together: a crash leaves the old version.
    const char* step = kMigrations[v] ? kMigrations[v] : backup::catalog_schema_sql();
    std::string sql = std::string("BEGIN IMMEDIATE;") + step + "PRAGMA user_version=" +
                      std::to_string(v + 1) + ";COMMIT;";
    if (auto st = exec(sql.c_str()); !st) {
      rollback();
      return st;
    }
  }
  return ok_status();
}

Result<ClusterRecord> SqliteStateStore::cluster() {
  std::lock_guard g(mu_);
  Stmt q(db_, "SELECT primary_node, term FROM cluster WHERE id = 1");
  if (q.step() != SQLITE_ROW) return db_error(db_, "reading cluster record");
  return ClusterRecord{q.text(0), q.i64(1)};
}

Result<bool> SqliteStateStore::compare_and_set_primary(std::int64_t expected_term, const std::string& primary) {
  std::lock_guard g(mu_);
  Stmt u(db_, "UPDATE cluster SET primary_node = ?1, term = term + 1, "
              "updated_ms = CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER) "
              "WHERE id = 1 AND term = ?2");
  u.bind(1, primary).bind(2, expected_term);
  if (u.step() != SQLITE_DONE) return db_error(db_, "updating cluster record");
  return sqlite3_changes(db_) == 1;
}

Result<bool> SqliteStateStore::claim_primary(std::int64_t expected_term, const std::string& primary,
                                             const std::string& fence) {
  if (fence.empty()) return compare_and_set_primary(expected_term, primary);
  std::lock_guard g(mu_);  // held throughout: no other statement lands inside this transaction
  if (sqlite3_exec(db_, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) != SQLITE_OK)
    return db_error(db_, "starting the claim of " + primary);
  Stmt u(db_, "UPDATE cluster SET primary_node = ?1, term = term + 1, "
              "updated_ms = CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER) "
              "WHERE id = 1 AND term = ?2");
  u.bind(1, primary).bind(2, expected_term);
  if (u.step() != SQLITE_DONE) {
    auto e = db_error(db_, "updating cluster record");
    rollback();
    return e;
  }
  if (sqlite3_changes(db_) != 1) {
    rollback();
    return false;
  }
  Stmt f(db_, "INSERT OR IGNORE INTO fenced (node, since_ms) VALUES (?1, "
              "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER))");
  f.bind(1, fence);
  if (f.step() != SQLITE_DONE) {
    auto e = db_error(db_, "recording fence of " + fence);
    rollback();
    return e;
  }
  if (sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK) {
    auto e = db_error(db_, "committing the claim of " + primary);
    rollback();
    return e;
  }
  return true;
}

Status SqliteStateStore::append_history(const FailoverRecord& r) {
  std::lock_guard g(mu_);
  if (auto st = exec("BEGIN IMMEDIATE"); !st) return st;
  Stmt i(db_, "INSERT INTO history (time_ms, from_node, to_node, mode, reason, duration_ms, lag_bytes, term, position) "
              "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)");
  i.bind(1, r.time_ms).bind(2, r.from).bind(3, r.to).bind(4, r.mode).bind(5, r.reason)
      .bind(6, r.duration_ms).bind(7, static_cast<std::int64_t>(r.lag_bytes)).bind(8, r.term);
  if (r.position) i.bind(9, static_cast<std::int64_t>(*r.position));
  if (i.step() != SQLITE_DONE) {
    auto e = db_error(db_, "appending failover history");
    rollback();
    return e;
  }
  Stmt d(db_, "DELETE FROM pending_failover WHERE term = ?1");
  d.bind(1, r.term);
  if (d.step() != SQLITE_DONE) {
    auto e = db_error(db_, "clearing the pending failover");
    rollback();
    return e;
  }
  if (auto st = exec("COMMIT"); !st) {
    rollback();
    return st;
  }
  return ok_status();
}

Result<std::vector<FailoverRecord>> SqliteStateStore::history(int limit, std::int64_t since_ms) {
  std::lock_guard g(mu_);
  Stmt q(db_, "SELECT time_ms, from_node, to_node, mode, reason, duration_ms, lag_bytes, term, position "
              "FROM history WHERE time_ms >= ?2 ORDER BY id DESC LIMIT ?1");
  q.bind(1, static_cast<std::int64_t>(limit)).bind(2, since_ms);
  std::vector<FailoverRecord> out;
  int rc;
  while ((rc = q.step()) == SQLITE_ROW) {
    out.push_back({q.i64(0), q.text(1), q.text(2), q.text(3), q.text(4), q.i64(5),
                   static_cast<std::uint64_t>(q.i64(6)), q.i64(7)});
    if (!q.is_null(8)) out.back().position = static_cast<std::uint64_t>(q.i64(8));
  }
  if (rc != SQLITE_DONE) return db_error(db_, "reading failover history");
  return out;
}

Status SqliteStateStore::set_pending_failover(const std::optional<FailoverRecord>& r) {
  std::lock_guard g(mu_);
  if (!r) {
    Stmt d(db_, "DELETE FROM pending_failover");
    if (d.step() != SQLITE_DONE) return db_error(db_, "clearing the pending failover");
    return ok_status();
  }
  Stmt u(db_, "INSERT OR REPLACE INTO pending_failover (id, time_ms, from_node, to_node, mode, reason, term) "
              "VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6)");
  u.bind(1, r->time_ms).bind(2, r->from).bind(3, r->to).bind(4, r->mode).bind(5, r->reason).bind(6, r->term);
  if (u.step() != SQLITE_DONE) return db_error(db_, "recording the pending failover");
  return ok_status();
}

Result<std::optional<FailoverRecord>> SqliteStateStore::pending_failover() {
  std::lock_guard g(mu_);
  Stmt q(db_, "SELECT time_ms, from_node, to_node, mode, reason, term FROM pending_failover WHERE id = 1");
  int rc = q.step();
  if (rc == SQLITE_DONE) return std::optional<FailoverRecord>();
  if (rc != SQLITE_ROW) return db_error(db_, "reading the pending failover");
  FailoverRecord r;
  r.time_ms = q.i64(0);
  r.from = q.text(1);
  r.to = q.text(2);
  r.mode = q.text(3);
  r.reason = q.text(4);
  r.term = q.i64(5);
  return std::optional<FailoverRecord>(std::move(r));
}

Result<std::optional<bool>> SqliteStateStore::flag(const std::string& name) {
  std::lock_guard g(mu_);
  Stmt q(db_, "SELECT value FROM flags WHERE name = ?1");
  q.bind(1, name);
  int rc = q.step();
  if (rc == SQLITE_ROW) return std::optional<bool>(q.i64(0) != 0);
  if (rc == SQLITE_DONE) return std::optional<bool>();
  return db_error(db_, "reading flag " + name);
}

Status SqliteStateStore::set_flag(const std::string& name, bool value) {
  std::lock_guard g(mu_);
  Stmt u(db_, "INSERT INTO flags (name, value) VALUES (?1, ?2) "
              "ON CONFLICT (name) DO UPDATE SET value = excluded.value");
  u.bind(1, name).bind(2, static_cast<std::int64_t>(value));
  if (u.step() != SQLITE_DONE) return db_error(db_, "writing flag " + name);
  return ok_status();
}

Result<std::optional<std::string>> SqliteStateStore::cluster_fact(const std::string& name) {
  std::lock_guard g(mu_);
  Stmt q(db_, "SELECT value FROM cluster_facts WHERE name = ?1");
  q.bind(1, name);
  int rc = q.step();
  if (rc == SQLITE_ROW) return std::optional<std::string>(q.text(0));
  if (rc == SQLITE_DONE) return std::optional<std::string>();
  return db_error(db_, "reading cluster fact " + name);
}

Status SqliteStateStore::set_cluster_fact(const std::string& name, const std::string& value) {
  std::lock_guard g(mu_);
  Stmt u(db_, "INSERT INTO cluster_facts (name, value, since_ms) VALUES (?1, ?2, "
              "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)) "
              "ON CONFLICT (name) DO UPDATE SET value = excluded.value, since_ms = excluded.since_ms");
  u.bind(1, name).bind(2, value);
  if (u.step() != SQLITE_DONE) return db_error(db_, "writing cluster fact " + name);
  return ok_status();
}

Result<std::vector<std::string>> SqliteStateStore::fenced_nodes() {
  std::lock_guard g(mu_);
  Stmt q(db_, "SELECT node FROM fenced ORDER BY node");
  std::vector<std::string> out;
  int rc;
  while ((rc = q.step()) == SQLITE_ROW) out.push_back(q.text(0));
  if (rc != SQLITE_DONE) return db_error(db_, "reading fenced nodes");
  return out;
}

Status SqliteStateStore::set_fenced(const std::string& node, bool fenced) {
  std::lock_guard g(mu_);
  Stmt u(db_, fenced ? "INSERT OR IGNORE INTO fenced (node, since_ms) VALUES (?1, "
                       "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER))"
                     : "DELETE FROM fenced WHERE node = ?1");
  u.bind(1, node);
  if (u.step() != SQLITE_DONE) return db_error(db_, "recording fence of " + node);
  return ok_status();
}

namespace {

// Per-minute summary of a batch of samples, merged into health_minutes.
struct MinuteAgg {
  std::int64_t count = 0, failures = 0;
  std::vector<double> ms;
};

}  // namespace

Status SqliteStateStore::add_health_samples(const std::vector<HealthSample>& samples) {
  if (samples.empty()) return ok_status();
  std::lock_guard g(mu_);
  std::map<std::pair<std::string, std::int64_t>, MinuteAgg> aggs;
  for (auto& smp : samples) {
    auto& a = aggs[{smp.node, smp.time_ms - smp.time_ms % 60000}];
    a.count++;
    if (smp.ok) a.ms.push_back(smp.response_ms);
    else a.failures++;
  }
  if (auto st = exec("BEGIN"); !st) return st;
  Stmt i(db_, "INSERT INTO health_samples (node, time_ms, ok, response_ms, error) VALUES (?1, ?2, ?3, ?4, ?5)");
  for (auto& smp : samples) {
    i.bind(1, smp.node).bind(2, smp.time_ms).bind(3, static_cast<std::int64_t>(smp.ok)).bind(4, smp.response_ms).bind(5, smp.error);
    if (i.step() != SQLITE_DONE) {
      rollback();
      return db_error(db_, "recording health samples");
    }
    i.reset();
  }
  // The per-minute rows are kept current as samples arrive, so long windows never
  // need to scan raw samples; a minute split across batches is merged.
  Stmt up(db_, "INSERT INTO health_minutes (node, minute_ms, count, failures, min_ms, avg_ms, max_ms, p95_ms) "
               "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (node, minute_ms) DO UPDATE SET "
               "avg_ms = CASE WHEN count - failures + ?3 - ?4 > 0 THEN "
               "(avg_ms * (count - failures) + excluded.avg_ms * (?3 - ?4)) / (count - failures + ?3 - ?4) ELSE 0 END, "
               "min_ms = CASE WHEN count - failures = 0 THEN excluded.min_ms WHEN ?3 - ?4 = 0 THEN min_ms "
               "ELSE MIN(min_ms, excluded.min_ms) END, "
               "max_ms = MAX(max_ms, excluded.max_ms), p95_ms = MAX(p95_ms, excluded.p95_ms), "
               "count = count + excluded.count, failures = failures + excluded.failures");
  for (auto& [key, a] : aggs) {
    std::sort(a.ms.begin(), a.ms.end());
    double mn = a.ms.empty() ? 0 : a.ms.front(), mx = a.ms.empty() ? 0 : a.ms.back(), sum = 0;
    for (double v : a.ms) sum += v;
    double avg = a.ms.empty() ? 0 : sum / static_cast<double>(a.ms.size());
    double p95 = a.ms.empty() ? 0
                              : a.ms[std::min(a.ms.size() - 1, static_cast<std::size_t>(0.95 * static_cast<double>(a.ms.size())))];
    up.bind(1, key.first).bind(2, key.second).bind(3, a.count).bind(4, a.failures).bind(5, mn).bind(6, avg).bind(7, mx).bind(8, p95);
    if (up.step() != SQLITE_DONE) {
      rollback();
      return db_error(db_, "aggregating health samples");
    }
    up.reset();
  }
  return exec("COMMIT");
}

Result<std::vector<HealthSample>> SqliteStateStore::health_samples(const std::string& node, std::int64_t since_ms) {
  std::lock_guard g(mu_);
  Stmt q(db_, "SELECT node, time_ms, ok, response_ms, error FROM health_samples "
              "WHERE node = ?1 AND time_ms >= ?2 ORDER BY time_ms");
  q.bind(1, node).bind(2, since_ms);
  std::vector<HealthSample> out;
  int rc;
  while ((rc = q.step()) == SQLITE_ROW) out.push_back({q.text(0), q.i64(1), q.i64(2) != 0, q.dbl(3), q.text(4)});
  if (rc != SQLITE_DONE) return db_error(db_, "reading health samples");
  return out;
}

Result<std::vector<SqliteStateStore::HealthMinute>> SqliteStateStore::health_minutes(const std::string& node,
                                                                                 std::int64_t since_ms) {
  std::lock_guard g(mu_);
  Stmt q(db_, "SELECT minute_ms, count, failures, min_ms, avg_ms, max_ms, p95_ms FROM health_minutes "
              "WHERE node = ?1 AND minute_ms >= ?2 ORDER BY minute_ms");
  q.bind(1, node).bind(2, since_ms);
  std::vector<HealthMinute> out;
  int rc;
  while ((rc = q.step()) == SQLITE_ROW)
    out.push_back({q.i64(0), q.i64(1), q.i64(2), q.dbl(3), q.dbl(4), q.dbl(5), q.dbl(6)});
  if (rc != SQLITE_DONE) return db_error(db_, "reading health aggregates");
  return out;
}

Status SqliteStateStore::prune_health(std::int64_t raw_before_ms, std::int64_t keep_after_ms, int max_rows) {
  std::lock_guard g(mu_);
  // Raw samples are already summarised in health_minutes (add_health_samples), so
  // old ones are simply dropped, a bounded batch at a time so this never stalls.
  Stmt del(db_, "DELETE FROM health_samples WHERE rowid IN "
                "(SELECT rowid FROM health_samples WHERE time_ms < ?1 ORDER BY time_ms LIMIT ?2)");
  del.bind(1, raw_before_ms).bind(2, static_cast<std::int64_t>(max_rows));
  if (del.step() != SQLITE_DONE) return db_error(db_, "pruning health samples");
  Stmt old(db_, "DELETE FROM health_minutes WHERE minute_ms < ?1");
  old.bind(1, keep_after_ms);
  if (old.step() != SQLITE_DONE) return db_error(db_, "pruning health aggregates");
  return ok_status();
}

Status SqliteStateStore::append_audit(const AuditRecord& r) {
  std::lock_guard g(mu_);
  Stmt i(db_, "INSERT INTO audit (time_ms, uid, pid, method, params, ok, result) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)");
  i.bind(1, r.time_ms).bind(2, r.uid).bind(3, r.pid).bind(4, r.method).bind(5, r.params)
      .bind(6, static_cast<std::int64_t>(r.ok)).bind(7, r.result);
  if (i.step() != SQLITE_DONE) return db_error(db_, "writing audit log");
  return ok_status();
}

Result<std::vector<AuditRecord>> SqliteStateStore::audit(int limit) {
  std::lock_guard g(mu_);
  Stmt q(db_, "SELECT time_ms, uid, pid, method, params, ok, result FROM audit ORDER BY id DESC LIMIT ?1");
  q.bind(1, static_cast<std::int64_t>(limit));
  std::vector<AuditRecord> out;
  int rc;
  while ((rc = q.step()) == SQLITE_ROW)
    out.push_back({q.i64(0), q.i64(1), q.i64(2), q.text(3), q.text(4), q.i64(5) != 0, q.text(6)});
  if (rc != SQLITE_DONE) return db_error(db_, "reading audit log");
  return out;
}

}  // namespace drd
