// verify_pg_backup: checks of a PostgreSQL backup down to a running restored copy.
#include <cstring>

#include "daemon/backup/pg_internal.hpp"

namespace drd::backup {

namespace fs = std::filesystem;

namespace {

struct Report {
  VerifyReport rep;
  bool add(std::string name, bool ok, std::string detail) {
    rep.checks.push_back(Check{std::move(name), ok, std::move(detail)});
    return ok;
  }
};

// A stream error is either a checksum mismatch or a decrypt/decompress failure; the tool's own
// failures are reported by the caller under the step's name.
void add_stream_error(Report& r, const Error& e) {
  const auto& msg = e.message;
  if (msg.find("plaintext_sha256") != std::string::npos) r.add("plaintext_sha256", false, msg);
  else r.add("decrypt", false, msg);
}

bool is_stream_error(const Error& e) { return e.code == Errc::corrupt || e.code == Errc::invalid_argument; }

void verify_physical(Report& r, const BackupRef& ref, const MasterKey* key, const fs::path& scratch,
                     ProcessRunner& runner, const PgTools& tools, const std::string& superuser) {
  fs::path data = scratch / "data";
  if (auto s = pgi::make_owned_dir(data, tools); !s) {
    r.add("test_restore", false, s.error().message);
    return;
  }
  auto rs = pgi::stream_backup_into(ref, key, runner, tools, {"tar", "-x", "-f", "-", "-C", data.string()}, {});
  if (!rs) {
    if (is_stream_error(rs.error())) add_stream_error(r, rs.error());
    else r.add("test_restore", false, rs.error().message);
    return;
  }
  r.add("decrypt", true, "every chunk authenticated and decompressed");
  if (ref.manifest) r.add("plaintext_sha256", true, ref.manifest->plaintext_sha256);
  r.add("test_restore", true, std::to_string(rs->plaintext_bytes) + " bytes of tar extracted into a scratch data folder");
  std::error_code ec;
  if (!fs::exists(data / "backup_manifest", ec)) {
    r.add("pg_verifybackup", false, "the backup holds no backup_manifest to check against");
  } else {
    auto v = pgi::run_tool(runner, tools, {tools.program("pg_verifybackup"), data.string()}, tools.timeout);
    if (!r.add("pg_verifybackup", v.ok(), v ? "every file and the WAL range match backup_manifest" : v.error().message))
      return;  // starting a copy that fails its own manifest proves nothing
  }
  (void)pgi::make_owned_dir(data / "pg_wal" / "archive_status", tools);  // the server checks it
  auto server = pgi::ScratchServer::start(data, scratch, runner, tools);
  if (!r.add("start_server", server.ok(),
             server ? "started on 127.0.0.1:" + std::to_string(server.value()->port()) + ", recovered to consistency"
                    : server.error().message))
    return;
  auto q = server.value()->query(superuser, "template1",
                                 "SELECT pg_is_in_recovery(), (SELECT count(*) FROM pg_database WHERE datallowconn)");
  bool ok = q && q->rfind("f|", 0) == 0;
  r.add("query", ok, q ? (ok ? "accepts queries: " + q->substr(2) + " databases" : "unexpected answer '" + *q + "'")
                       : q.error().message);
}

void verify_logical(Report& r, const BackupRef& ref, const MasterKey* key, const fs::path& scratch,
                    ProcessRunner& runner, const PgTools& tools, const std::string& superuser) {
  std::string listing;
  auto rs = pgi::stream_backup_into(ref, key, runner, tools, {tools.program("pg_restore"), "--list"}, {}, &listing,
                                     true);
  if (!rs) {
    if (is_stream_error(rs.error())) add_stream_error(r, rs.error());
    else r.add("pg_restore_list", false, rs.error().message);
    return;
  }
  r.add("decrypt", true, "every chunk authenticated and decompressed");
  if (ref.manifest) r.add("plaintext_sha256", true, ref.manifest->plaintext_sha256);
  std::size_t entries = 0;
  for (std::size_t at = 0; at < listing.size();) {
    auto nl = listing.find('\n', at);
    std::string line = listing.substr(at, nl == std::string::npos ? std::string::npos : nl - at);
    if (!line.empty() && line[0] != ';') ++entries;
    at = nl == std::string::npos ? listing.size() : nl + 1;
  }
  r.add("pg_restore_list", true, std::to_string(entries) + " archive entries");
  // A scratch cluster to restore into: trust on loopback only, no fsync (it is thrown away).
  fs::path data = scratch / "cluster";
  auto init = pgi::run_tool(runner, tools,
                            {tools.program("initdb"), "-D", data.string(), "-A", "trust", "-U", superuser, "--no-sync",
                             "--no-instructions", "-E", "UTF8", "--locale=C"},
                            Millis{300'000});
  if (!r.add("scratch_cluster", init.ok(), init ? "initdb done" : init.error().message)) return;
  auto server = pgi::ScratchServer::start(data, scratch, runner, tools);
  if (!r.add("start_server", server.ok(),
             server ? "scratch cluster on 127.0.0.1:" + std::to_string(server.value()->port()) : server.error().message))
    return;
  if (auto c = server.value()->query(superuser, "postgres", "CREATE DATABASE drd_verify"); !c) {
    r.add("test_restore", false, c.error().message);
    return;
  }
  PgTools into = tools;
  into.conninfo = server.value()->conninfo(superuser, "drd_verify");
  into.env.erase("PGPASSWORD");
  // Roles of the source do not exist here: ownership and grants are left out.
  auto restored = pgi::stream_backup_into(ref, key, runner, into,
                                          {tools.program("pg_restore"), "-d", into.conninfo, "--single-transaction",
                                           "--exit-on-error", "--no-owner", "--no-privileges"},
                                          {});
  if (!r.add("test_restore", restored.ok(), restored ? "pg_restore into a scratch database succeeded" : restored.error().message))
    return;
  auto q = server.value()->query(
      superuser, "drd_verify",
      "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r','p') AND "
      "n.nspname NOT IN ('pg_catalog','information_schema') AND n.nspname NOT LIKE 'pg_toast%'");
  r.add("query", q.ok(), q ? *q + " tables restored" : q.error().message);
}

}  // namespace

VerifyReport verify_pg_backup(const BackupRef& ref, const MasterKey* key, const fs::path& scratch_dir,
                              ProcessRunner& runner, const PgTools& tools, const std::string& superuser) {
  Report r;
  const Manifest* m = ref.manifest ? &*ref.manifest : nullptr;
  r.rep.id = m ? m->id : ref.data.filename().string();
  if (m) r.add("manifest", true, "format " + std::to_string(m->format_version) + ", " + m->engine + " " + m->kind);
  else r.add("manifest", false, "no manifest beside " + ref.data.string() + ": checksums cannot be compared");
  std::error_code ec;
  auto size = fs::file_size(ref.data, ec);
  if (ec) {
    r.add("data_file", false, ref.data.string() + ": " + ec.message());
    return r.rep;
  }
  if (m) {
    r.add("data_file", size == m->size_bytes,
          std::to_string(size) + " bytes" + (size == m->size_bytes ? "" : ", manifest says " + std::to_string(m->size_bytes)));
    Error err;
    std::string sha = sha256_hex_of_file(ref.data, &err);
    r.add("file_sha256", sha == m->file_sha256,
          sha.empty() ? err.message : sha == m->file_sha256 ? sha : "got " + sha + ", manifest says " + m->file_sha256);
  }
  auto scratch = pgi::make_scratch(scratch_dir, runner, tools);
  if (!scratch) {
    r.add("test_restore", false, scratch.error().message);
  } else {
    if (m && m->content == "pg-dump") verify_logical(r, ref, key, *scratch, runner, tools, superuser);
    else verify_physical(r, ref, key, *scratch, runner, tools, superuser);
    fs::remove_all(*scratch, ec);  // after the scratch server (if any) was stopped
  }
  r.rep.ok = !r.rep.checks.empty();
  for (auto& c : r.rep.checks) r.rep.ok = r.rep.ok && c.ok;
  return r.rep;
}

}  // namespace drd::backup
