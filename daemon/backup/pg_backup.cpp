// Taking PostgreSQL backups: a tool's stdout streamed into a BackupSession (see pg_backup.hpp).
#include "daemon/backup/pg_backup.hpp"

#include <regex>
#include <sstream>

namespace drd::backup {

namespace fs = std::filesystem;

std::string PgTools::program(const std::string& name) const {
  return bin_dir.empty() ? name : (bin_dir / name).string();
}

BaseBackupPosition parse_basebackup_output(const std::string& text) {
  BaseBackupPosition p;
  static const std::regex start(R"(write-ahead log start point: ([0-9A-Fa-f]+/[0-9A-Fa-f]+) on timeline ([0-9]+))");
  static const std::regex stop(R"(write-ahead log end point: ([0-9A-Fa-f]+/[0-9A-Fa-f]+))");
  std::smatch m;
  if (std::regex_search(text, m, start)) {
    p.start_lsn = m[1];
    p.timeline = static_cast<std::uint32_t>(std::stoul(m[2]));
  }
  if (std::regex_search(text, m, stop)) p.stop_lsn = m[1];
  return p;
}

std::string tool_output_tail(const std::string& output, const std::vector<std::string>& secrets) {
  std::string t = output;
  for (auto& s : secrets)
    if (!s.empty())
      for (std::size_t at; (at = t.find(s)) != std::string::npos;) t.replace(at, s.size(), "***");
  // The last few lines say why; a tool's progress chatter before them does not.
  while (!t.empty() && (t.back() == '\n' || t.back() == ' ')) t.pop_back();
  std::size_t pos = t.size();
  for (int lines = 0; lines < 4 && pos != std::string::npos && pos > 0; ++lines) pos = t.rfind('\n', pos - 1);
  if (pos != std::string::npos && pos > 0) t = t.substr(pos + 1);
  for (auto& c : t)
    if (c == '\n') c = ' ';
  if (t.size() > 600) t = "..." + t.substr(t.size() - 600);
  return t.empty() ? "(no output)" : t;
}

namespace {

std::string describe_exit(const ProcessOutcome& o) {
  if (o.timed_out) return "timed out";
  if (o.signal) return "was killed by signal " + std::to_string(o.signal);
  return "exited with status " + std::to_string(o.exit_code);
}

// Runs `argv` and feeds its stdout into `session`. On any failure the child is killed and the
// error says which side failed (the tool, with its last words, or our writing).
Status stream_tool_into(BackupSession& session, ProcessRunner& runner, const PgTools& tools,
                        std::vector<std::string> argv, const Progress& progress, std::string* tool_output) {
  ProcessSpec spec;
  spec.argv = std::move(argv);
  if (!tools.os_user.empty()) spec.user = tools.os_user;
  spec.env = tools.env;
  spec.timeout = tools.timeout;
  spec.max_output = 64 << 10;
  const std::string name = fs::path(spec.argv[0]).filename().string();
  auto child = runner.spawn(spec, PipeOptions{false, true, tools.idle_timeout});
  if (!child) return make_error(child.error().code, "cannot start " + name + ": " + child.error().message);
  std::vector<char> buf(1 << 20);
  std::uint64_t done = 0;
  for (;;) {
    auto n = child.value()->read(buf.data(), buf.size());
    if (!n) {
      auto o = child.value()->kill();
      return make_error(n.error().code, n.error().message + ": " + tool_output_tail(o.output, tools.secrets));
    }
    if (*n == 0) break;
    if (auto s = session.write(buf.data(), *n); !s) {
      child.value()->kill();
      return s.error();
    }
    done += *n;
    if (progress) progress(done, 0, "backup");
  }
  auto o = child.value()->wait();
  if (tool_output) *tool_output = o.output;
  if (!o.success())
    return make_error(Errc::io, name + " " + describe_exit(o) + ": " + tool_output_tail(o.output, tools.secrets));
  return ok_status();
}

}  // namespace

Result<Manifest> backup_pg_physical(const BackupSettings& s, ProcessRunner& runner, const PgTools& tools,
                                    NewBackup info, const Progress& progress) {
  info.engine = "postgresql";
  info.kind = "full";
  info.content = "pg-tar";
  auto session = BackupSession::begin(s, info);
  if (!session) return session.error();
  // -X fetch: the WAL of the backup's span goes into the same tar (stream mode cannot write
  // to stdout). --checkpoint=fast: start now rather than at the next scheduled checkpoint.
  std::string output;
  auto st = stream_tool_into(*session.value(), runner, tools,
                             {tools.program("pg_basebackup"), "-d", tools.conninfo, "-D", "-", "-F", "t", "-X", "fetch",
                              "--checkpoint=fast", "--verbose", "--no-password", "--label=drd " + session.value()->manifest().id},
                             progress, &output);
  if (!st) return make_error(st.error().code, "backup of " + info.node + " failed: " + st.error().message, st.error().hint);
  auto pos = parse_basebackup_output(output);
  if (pos.start_lsn.empty() || pos.stop_lsn.empty())
    return make_error(Errc::io, "backup of " + info.node + ": pg_basebackup did not report its WAL range: " +
                                    tool_output_tail(output, tools.secrets));
  Manifest& m = session.value()->manifest_for_update();
  m.pg_start_lsn = pos.start_lsn;
  m.pg_stop_lsn = pos.stop_lsn;
  m.pg_timeline = pos.timeline;
  m.pg_stop_time = std::chrono::system_clock::now();  // pg_basebackup has exited: its stop point is behind us
  return session.value()->finish("lsn " + pos.start_lsn + ".." + pos.stop_lsn + " timeline " + std::to_string(pos.timeline));
}

Result<Manifest> backup_pg_logical(const BackupSettings& s, ProcessRunner& runner, const PgTools& tools,
                                   const std::string& database, NewBackup info, const Progress& progress) {
  info.engine = "postgresql";
  info.kind = "logical";
  info.content = "pg-dump";
  auto session = BackupSession::begin(s, info);
  if (!session) return session.error();
  // -Fc: compressed by us, not by pg_dump (-Z0), so zstd sees the raw data.
  auto st = stream_tool_into(*session.value(), runner, tools,
                             {tools.program("pg_dump"), "-d", tools.conninfo, "-F", "c", "-Z", "0", "--no-password"},
                             progress, nullptr);
  if (!st) return make_error(st.error().code, "dump of " + info.node + " failed: " + st.error().message, st.error().hint);
  Manifest& m = session.value()->manifest_for_update();
  m.pg_database = database;
  return session.value()->finish("pg_dump of database " + database);
}

}  // namespace drd::backup
