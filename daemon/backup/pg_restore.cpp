// Restoring PostgreSQL backups (see pg_backup.hpp) and the helpers verify shares.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <fstream>

#include "daemon/backup/pg_internal.hpp"

namespace drd::backup {

namespace fs = std::filesystem;

namespace pgi {

namespace {
std::string base_name(const std::string& prog) { return fs::path(prog).filename().string(); }
std::string exit_text(const ProcessOutcome& o) {
  if (o.timed_out) return "timed out";
  if (o.signal) return "was killed by signal " + std::to_string(o.signal);
  return "exited with status " + std::to_string(o.exit_code);
}
}  // namespace

Result<ProcessOutcome> run_tool(ProcessRunner& runner, const PgTools& tools, std::vector<std::string> argv,
                                Millis timeout) {
  ProcessSpec spec;
  spec.argv = std::move(argv);
  if (!tools.os_user.empty()) spec.user = tools.os_user;
  spec.env = tools.env;
  spec.timeout = timeout;
  spec.max_output = 64 << 10;
  auto o = runner.run(spec);
  if (!o) return make_error(o.error().code, "cannot run " + base_name(spec.argv[0]) + ": " + o.error().message);
  if (!o->success())
    return make_error(Errc::io, base_name(spec.argv[0]) + " " + exit_text(*o) + ": " +
                                    tool_output_tail(o->output, tools.secrets));
  return o;
}

Result<ReadStats> stream_backup_into(const BackupRef& ref, const MasterKey* key, ProcessRunner& runner,
                                     const PgTools& tools, std::vector<std::string> argv, const Progress& progress,
                                     std::string* output, bool stops_early) {
  auto reader = BackupReader::open(ref.data, key);  // wrong key / not a backup: nothing started
  if (!reader) return reader.error();
  ProcessSpec spec;
  spec.argv = std::move(argv);
  if (!tools.os_user.empty()) spec.user = tools.os_user;
  spec.env = tools.env;
  spec.timeout = tools.timeout;
  spec.max_output = 64 << 10;
  const std::string name = base_name(spec.argv[0]);
  auto child = runner.spawn(spec, PipeOptions{true, false, tools.idle_timeout});
  if (!child) return make_error(child.error().code, "cannot start " + name + ": " + child.error().message);
  std::uint64_t total = ref.manifest ? ref.manifest->source_bytes : 0, done = 0;
  bool tool_failed = false, tool_done = false;
  auto rs = reader.value()->read_all([&](const std::uint8_t* p, std::size_t n) -> Status {
    if (tool_done) return ok_status();
    if (auto s = child.value()->write(reinterpret_cast<const char*>(p), n); !s) {
      if (stops_early) {
        tool_done = true;
        return ok_status();
      }
      tool_failed = true;
      return s;
    }
    done += n;
    if (progress) progress(done, total, "restore");
    return ok_status();
  });
  if (!rs && !tool_failed) {  // our side failed (a damaged chunk): the tool must not finish
    child.value()->kill();
    return rs.error();
  }
  auto o = child.value()->wait();
  if (output) *output = o.output;
  if (!o.success())
    return make_error(Errc::io, name + " " + exit_text(o) + ": " + tool_output_tail(o.output, tools.secrets));
  if (!rs) return rs.error();
  if (ref.manifest && rs->plaintext_sha256 != ref.manifest->plaintext_sha256)
    return make_error(Errc::corrupt, "restored bytes of " + ref.data.string() +
                                         " do not match the manifest's plaintext_sha256 (got " + rs->plaintext_sha256 +
                                         ", manifest says " + ref.manifest->plaintext_sha256 + ")");
  return rs;
}

Status make_owned_dir(const fs::path& dir, const PgTools& tools) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return make_error(Errc::io, "cannot create " + dir.string() + ": " + ec.message());
  ::chmod(dir.c_str(), 0700);
  if (tools.os_user.empty()) return ok_status();
  passwd* pw = ::getpwnam(tools.os_user.c_str());
  if (!pw) return make_error(Errc::not_found, "OS user '" + tools.os_user + "' does not exist");
  if (::chown(dir.c_str(), pw->pw_uid, pw->pw_gid) != 0)
    return make_error(Errc::io, "cannot give " + dir.string() + " to " + tools.os_user + ": " + std::strerror(errno));
  return ok_status();
}

Result<fs::path> make_scratch(const fs::path& parent, ProcessRunner& runner, const PgTools& tools) {
  auto try_under = [&](const fs::path& p) -> Result<fs::path> {
    std::error_code ec;
    fs::create_directories(p, ec);
    std::string tmpl = (p / "drd-verify-XXXXXX").string();
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    if (!::mkdtemp(buf.data()))
      return make_error(Errc::io, "cannot create a scratch folder under " + p.string() + ": " + std::strerror(errno));
    fs::path dir(buf.data());
    if (auto s = make_owned_dir(dir, tools); !s) {
      fs::remove_all(dir, ec);
      return s.error();
    }
    if (!tools.os_user.empty()) {  // can the server's user reach it (every parent searchable)?
      if (!run_tool(runner, tools, {"/usr/bin/test", "-w", dir.string()}, Millis{10'000})) {
        fs::remove_all(dir, ec);
        return make_error(Errc::permission_denied, tools.os_user + " cannot reach " + p.string());
      }
    }
    return dir;
  };
  auto d = try_under(parent);
  if (d) return d;
  return try_under(fs::temp_directory_path());
}

int free_loopback_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0)
    port = ntohs(addr.sin_port);
  ::close(fd);
  return port;
}

Result<std::unique_ptr<ScratchServer>> ScratchServer::start(const fs::path& data_dir, const fs::path& socket_dir,
                                                            ProcessRunner& runner, const PgTools& tools) {
  std::unique_ptr<ScratchServer> s(new ScratchServer(runner, tools));
  s->data_dir_ = data_dir;
  // Whatever the backed-up server allowed, only local trust here: this copy is ours alone and
  // deleted afterwards, and the test query must not need the source's passwords.
  {
    std::ofstream hba(data_dir / "pg_hba.conf", std::ios::trunc);
    hba << "local all all trust\nhost all all 127.0.0.1/32 trust\n";
    if (!hba) return make_error(Errc::io, "cannot write " + (data_dir / "pg_hba.conf").string());
  }
  for (int attempt = 0; attempt < 3; ++attempt) {
    s->port_ = free_loopback_port();
    if (!s->port_) return make_error(Errc::io, "no free loopback port for a scratch server");
    std::string opts = "-p " + std::to_string(s->port_) + " -c listen_addresses=127.0.0.1 -k " + socket_dir.string() +
                       " -c archive_mode=off -c synchronous_standby_names= -c logging_collector=off";
    auto r = run_tool(runner, tools,
                      {tools.program("pg_ctl"), "start", "-w", "-t", "300", "-D", data_dir.string(), "-l",
                       (socket_dir / "server.log").string(), "-o", opts},
                      Millis{320'000});
    if (r) return s;
    // A port taken between our probe and the bind is worth another try; anything else is not.
    std::ifstream log(socket_dir / "server.log");
    std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
    if (text.find("could not bind") == std::string::npos || attempt == 2) {
      s->port_ = 0;  // nothing to stop
      return make_error(r.error().code, r.error().message + "; server log: " + tool_output_tail(text, tools.secrets));
    }
  }
  return make_error(Errc::internal, "unreachable");
}

ScratchServer::~ScratchServer() {
  if (!port_) return;
  if (run_tool(runner_, tools_, {tools_.program("pg_ctl"), "stop", "-w", "-t", "60", "-m", "fast", "-D", data_dir_.string()},
               Millis{70'000}))
    return;
  // It would not stop: kill it by the PID it wrote, after checking that PID is a postgres.
  std::ifstream pidf(data_dir_ / "postmaster.pid");
  long pid = 0;
  if (pidf >> pid && pid > 1) {
    std::ifstream comm("/proc/" + std::to_string(pid) + "/comm");
    std::string name;
    if (comm >> name && name.rfind("postgres", 0) == 0) ::kill(static_cast<pid_t>(pid), SIGKILL);
  }
}

std::string ScratchServer::conninfo(const std::string& user, const std::string& db) const {
  return "host=127.0.0.1 port=" + std::to_string(port_) + " user=" + user + " dbname=" + db;
}

Result<std::string> ScratchServer::query(const std::string& user, const std::string& db, const std::string& sql) {
  auto o = run_tool(runner_, tools_, {tools_.program("psql"), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d",
                                      conninfo(user, db), "-c", sql},
                    Millis{60'000});
  if (!o) return o.error();
  std::string out = o->output;
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

}  // namespace pgi

namespace {

bool dir_is_empty(const fs::path& p) {
  std::error_code ec;
  return fs::is_empty(p, ec) && !ec;
}

}  // namespace

Result<PgRestoreResult> restore_pg_physical(const BackupRef& ref, const fs::path& target, const RestoreOptions& opts,
                                            ProcessRunner& runner, const PgTools& tools, const Progress& progress) {
  if (ref.manifest && ref.manifest->content != "pg-tar")
    return make_error(Errc::invalid_argument, "backup " + ref.manifest->id + " is not a PostgreSQL base backup (" +
                                                  ref.manifest->content + ")");
  std::error_code ec;
  const bool exists = fs::exists(target, ec);
  if (exists) {
    if (!fs::is_directory(target, ec))
      return make_error(Errc::refused, "restore target " + target.string() + " exists and is not a folder");
    if (fs::exists(target / "postmaster.pid", ec))
      return make_error(Errc::refused, "restore target " + target.string() + " holds postmaster.pid: a server may be using it",
                        "stop that server (and remove a stale postmaster.pid) first");
    if (!dir_is_empty(target) && !opts.allow_overwrite)
      return make_error(Errc::refused, "restore target " + target.string() + " is not empty",
                        "choose a new folder, or pass --force to replace it");
  }
  fs::path tmp = target;
  tmp += ".restore-tmp";
  fs::remove_all(tmp, ec);  // a leftover of an interrupted restore
  FolderGuard cleanup{tmp};
  if (auto s = pgi::make_owned_dir(tmp, tools); !s) return s.error();
  auto rs = pgi::stream_backup_into(ref, opts.key, runner, tools, {"tar", "-x", "-f", "-", "-C", tmp.string()}, progress);
  if (!rs) return make_error(rs.error().code, "restore into " + target.string() + " failed (target untouched): " +
                                                  rs.error().message);
  for (const char* must : {"PG_VERSION", "backup_label", "global/pg_control"})
    if (!fs::exists(tmp / must, ec))
      return make_error(Errc::corrupt, "restored data lacks " + std::string(must) + "; not a usable base backup");
  // pg_basebackup -Ft leaves empty WAL folders out of nothing, but be sure the server finds them.
  if (auto s = pgi::make_owned_dir(tmp / "pg_wal" / "archive_status", tools); !s) return s.error();
  std::string detail = std::to_string(rs->plaintext_bytes) + " bytes restored";
  if (fs::exists(tmp / "backup_manifest", ec)) {
    auto v = pgi::run_tool(runner, tools, {tools.program("pg_verifybackup"), tmp.string()}, tools.timeout);
    if (!v) return make_error(Errc::corrupt, "restored data failed pg_verifybackup (target untouched): " + v.error().message);
    detail += "; pg_verifybackup ok";
  }
  if (auto st = replace_folder(tmp, target); !st) return st.error();
  cleanup.dismiss();
  PgRestoreResult r;
  r.restored_to = target;
  r.bytes = rs->plaintext_bytes;
  r.detail = detail + "; start it with pg_ctl -D " + target.string() +
             " (it replays the included WAL to the backup's end point, then accepts writes)";
  return r;
}

Result<PgRestoreResult> restore_pg_logical(const BackupRef& ref, const RestoreOptions& opts, bool clean,
                                           ProcessRunner& runner, const PgTools& tools, const Progress& progress) {
  if (ref.manifest && ref.manifest->content != "pg-dump")
    return make_error(Errc::invalid_argument, "backup " + ref.manifest->id + " is not a pg_dump archive (" +
                                                  ref.manifest->content + ")");
  std::vector<std::string> argv{tools.program("pg_restore"), "-d", tools.conninfo, "--single-transaction",
                                "--exit-on-error", "--no-password"};
  if (clean) {
    argv.push_back("--clean");
    argv.push_back("--if-exists");
  }
  auto rs = pgi::stream_backup_into(ref, opts.key, runner, tools, argv, progress);
  if (!rs) return make_error(rs.error().code, "restore failed, nothing was changed: " + rs.error().message);
  PgRestoreResult r;
  r.bytes = rs->plaintext_bytes;
  r.detail = std::to_string(rs->plaintext_bytes) + " bytes of pg_dump archive restored in one transaction";
  return r;
}

}  // namespace drd::backup
