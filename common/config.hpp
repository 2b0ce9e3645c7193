#pragma once
// The typed configuration drd runs on, loaded from the YAML described in
// docs/configuration.md. Loading never throws: every problem found is
// returned at once as "FILE:LINE:COL: message".
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/units.hpp"

namespace drd {

enum class Engine { sqlite, postgresql };
const char* engine_name(Engine e);

// The starting role hint from the config ("type:" in the seed).
enum class NodeType { primary, secondary };

struct NodeConfig {
  std::string key;       // the key under databases: (e.g. "secondary1")
  std::string name;      // defaults to key
  NodeType type = NodeType::secondary;
  int priority = 100;    // lower = preferred
  Engine engine = Engine::sqlite;
  std::string url;       // exactly as written (may hold a password: never print it)
  std::string safe_url;  // url with the password replaced by "***"

  // SQLite: absolute path of the database file.
  std::filesystem::path sqlite_path;

  // PostgreSQL: connection facts parsed from the URL, for building conninfo.
  std::string pg_conninfo;             // the URL to hand to libpq (password included)
  std::optional<std::filesystem::path> password_file;
  std::optional<std::filesystem::path> data_dir;
  std::optional<std::filesystem::path> bin_dir;
  std::optional<std::string> os_user;
  bool no_failover = false;            // never promote this node automatically

  int line = 0, column = 0;            // where it was declared, for later messages
};

struct MonitoringConfig {
  bool enabled = true;
  Millis interval{1000};
  Millis timeout{1000};
  int failure_threshold = 3;
  Millis quick_check_interval{60'000};  // cadence of PRAGMA quick_check on SQLite nodes
  Millis history_retention{7LL * 86'400'000};
  Millis raw_retention{86'400'000};     // raw samples kept this long, then per-minute aggregates
};

struct FailoverConfig {
  bool auto_failover = true;
  std::uint64_t max_lag_bytes = 16ull << 20;
  bool synchronous = false;
  Millis synchronous_degrade_after{10'000};
  // PostgreSQL: how long a primary that said it is shutting down or starting up (or whose
  // postmaster on this host lives while nothing listens) is waited for before a failover.
  // 0 = no grace (failure_threshold alone decides, as before).
  Millis restart_grace{60'000};
};

struct ScheduleConfig {
  std::string expression;  // "every 6h" or a 5-field cron expression; empty = none
};

struct BackupConfig {
  bool enabled = false;
  std::filesystem::path directory;
  std::string schedule;                     // "every 6h" or cron; empty = manual only
  std::string compression_algorithm = "zstd";
  int compression_level = 3;
  int compression_threads = 0;              // 0 = one per core
  std::optional<std::filesystem::path> key_file;  // AES-256-GCM when set
  int keep_last = 7, keep_daily = 7, keep_weekly = 4, keep_monthly = 6;
  bool prefer_standby = false;              // back up a healthy standby to spare the primary
  std::string verify_schedule;              // optional scheduled verification of the newest backup
  // SQLite WAL archiving after each full backup of the primary (point-in-time restore).
  bool incremental = true;
  std::uint64_t segment_max_bytes = 16u << 20;  // cut a WAL segment at this many frame bytes
  Millis segment_max_age{60'000};               // ... or when its oldest commit is this old
  // PostgreSQL continuous WAL archiving (pg_receivewal on the primary) once a physical full
  // backup exists; the spool is where pg_receivewal writes (default <directory>/pg-wal-spool,
  // must be reachable by the node's os_user).
  bool pg_wal_archive = false;
  std::optional<std::filesystem::path> pg_wal_spool;
};

struct AlertChannelConfig {
  std::string name;
  std::string type;  // webhook | exec | email | log
  std::string url;                 // webhook
  std::vector<std::string> command;  // exec (argv)
  std::string to;                  // email
  Millis timeout{5000};
  int retries = 3;
  int line = 0, column = 0;
};

struct AlertRuleConfig {
  std::string name;
  std::string metric;   // up, response_time_ms, lag_bytes, lag_ms, backup_age, backup_age_s,
                        // backup_failed, failover, disk_free_pct, memory_rss_bytes, sync_degraded
  // op/threshold: required, except for the event metrics failover, backup_failed and sync_degraded where
  // they default to "> 0" (fire whenever it happens).
  std::string op;       // > >= < <= == !=
  double threshold = 0;
  Millis for_duration{0};
  std::string severity = "warning";  // info | warning | critical
  std::vector<std::string> nodes;    // empty = every node
  std::vector<std::string> channels;
  Millis repeat_interval{3'600'000};
  int line = 0, column = 0;
};

struct AlertsConfig {
  std::vector<AlertChannelConfig> channels;
  std::vector<AlertRuleConfig> rules;
};

struct HttpConfig {
  std::string listen;  // "127.0.0.1:8008"; empty = off
  std::optional<std::filesystem::path> token_file;
};

// Where the cluster's primary, term, history, flags and fenced nodes live
// (docs/multi-host.md). "local": the SQLite state file (one drd for the cluster).
// "etcd": an etcd v3 cluster shared by one drd per host; one of them leads.
struct StoreConfig {
  std::string type = "local";           // local | etcd
  std::vector<std::string> endpoints;   // http://HOST:PORT or https://HOST:PORT
  std::string prefix = "/drd/default";  // every key lives under it
  Millis ttl{3000};                     // leader lease; also bounds self-fencing
  std::optional<std::filesystem::path> ca_file, cert_file, key_file;  // TLS (https endpoints)
  std::string username;                 // etcd auth; the password is read from password_file
  std::optional<std::filesystem::path> password_file;
  std::string peer_listen;              // HOST:PORT other drd reach this one on; empty = no peers
  std::optional<std::filesystem::path> peer_token_file;  // shared bearer token for the peer endpoint
  bool failsafe = true;                 // keep the primary writable while every peer confirms it
  int line = 0, column = 0;
};

struct ControlConfig {
  std::filesystem::path socket;
  std::string admin_group;  // members may call state-changing methods; root always may
  std::string socket_group; // group owning the socket (read-only access); empty = drd's own
};

struct Config {
  std::filesystem::path file;  // the file it was loaded from (absolute)
  // Relative paths resolve against this (absolute): the base_dir key resolved against the
  // file's folder, or that folder when base_dir is not set.
  std::filesystem::path base_dir;
  bool enabled = true;
  std::filesystem::path state_dir;
  std::optional<std::filesystem::path> current_link;  // SQLite: symlink to the current primary
  ControlConfig control;
  std::vector<NodeConfig> nodes;   // in declaration order
  MonitoringConfig monitoring;
  FailoverConfig failover;
  BackupConfig backup;
  AlertsConfig alerts;
  HttpConfig http;
  StoreConfig store;
  std::string local;  // the node on this drd's host (required with store.type etcd)

  const NodeConfig* find_node(std::string_view name) const;
  // The node whose type is primary (the loader guarantees at most one); when none is typed
  // primary (the seed's url-only examples), the lowest priority number, then the first
  // declared. Null only for a Config without nodes (never one returned by the loader).
  const NodeConfig* configured_primary() const;
};

struct ConfigProblem {
  std::string file;
  int line = 0, column = 0;  // 1-based; 0 when the problem is about the whole file
  std::string message;
  std::string to_string() const;  // "FILE:LINE:COL: message"
};

struct ConfigLoadResult {
  std::optional<Config> config;        // set only when problems is empty
  std::vector<ConfigProblem> problems;
};

// Loads and validates. Relative paths resolve against base_dir (default: the file's folder;
// a relative base_dir is itself relative to the file's folder). Only the
// `disaster_recovery:` top-level section is read (others belong to the application sharing
// the file). Never throws; pure apart from reading `file` (secret files named in it are not
// read or checked here — the daemon does that when it uses them). Thread-safe.
// Problems come back sorted by position; a missing file is one problem with line 0.
ConfigLoadResult load_config(const std::filesystem::path& file);
// Same, from text (tests and fuzzing); `name` is used in messages and `base_dir` stands for
// the file's folder.
ConfigLoadResult load_config_text(const std::string& text, const std::string& name,
                                  const std::filesystem::path& base_dir);

// Replaces a password in a URL ("postgresql://u:secret@h/db" -> "postgresql://u:***@h/db")
// and any password=... conninfo parameter.
std::string redact_url(const std::string& url);

// The closest candidate by edit distance, if close enough to be a likely typo.
std::optional<std::string> nearest_key(const std::string& key, const std::vector<std::string>& known);

}  // namespace drd
