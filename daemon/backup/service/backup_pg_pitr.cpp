// PostgreSQL point-in-time restore (bkrt::restore_pg_pitr; docs/backups.md).
//
// Nothing is created before the plan (backup/pg_wal.hpp) says the archive covers the target
// time. Recovery runs in `<target>.pitr-tmp`: the base backup is extracted there (checked with
// pg_verifybackup), the planned WAL files are decrypted into `drd_pitr_wal/` inside it and
// fetched by `restore_command = cp`, so the recovering server (running as os_user) needs neither
// the key nor drd. The recovery settings go into postgresql.auto.conf for the run and are removed
// afterwards, as are the staged WAL and the local-trust pg_hba.conf used to query the copy:
// the result is the source's configuration on the promoted, recovered data.
#include <pwd.h>
#include <unistd.h>

#include <fstream>
#include <thread>

#include "daemon/backup/pg_internal.hpp"
#include "daemon/backup/pg_wal.hpp"
#include "daemon/backup/util.hpp"
#include "daemon/backup/service/backup_pg_runtime.hpp"

namespace drd::bkrt {

namespace fs = std::filesystem;
namespace json = boost::json;

namespace {

constexpr const char* kStage = "drd_pitr_wal";
constexpr std::chrono::minutes kRecoveryTimeout{30};

Result<std::string> read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return make_error(Errc::io, "cannot read " + p.string());
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

Status write_text(const fs::path& p, const std::string& text) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) return make_error(Errc::io, "cannot write " + p.string());
  return ok_status();
}

Status give_to(const fs::path& p, const backup::PgTools& tools) {
  if (tools.os_user.empty()) return ok_status();
  passwd* pw = ::getpwnam(tools.os_user.c_str());
  if (!pw) return make_error(Errc::not_found, "OS user '" + tools.os_user + "' does not exist");
  if (::chown(p.c_str(), pw->pw_uid, pw->pw_gid) != 0)
    return make_error(Errc::io, "cannot give " + p.string() + " to " + tools.os_user);
  return ok_status();
}

std::string log_tail(const fs::path& log) {
  auto t = read_text(log);
  return t ? backup::tool_output_tail(*t, {}) : std::string("(no server log)");
}

}  // namespace

Result<std::string> recover_pg_copy(const fs::path& work, const fs::path& wal_folder,
                                    const std::vector<backup::Manifest>& stage,
                                    const std::map<std::string, std::string>& extra, const backup::MasterKey* key,
                                    const std::string& target_settings, const std::string& what,
                                    const fs::path& scratch_parent, const std::string& user, ProcessRunner& runner,
                                    const backup::PgTools& tools) {
  std::error_code ec;
  const fs::path stage_dir = work / kStage;
  if (auto s = backup::pgi::make_owned_dir(stage_dir, tools); !s) return s.error();
  if (auto s = backup::stage_pg_wal(wal_folder, stage, key, stage_dir); !s) return s.error();
  for (const auto& [name, text] : extra)
    if (!fs::exists(stage_dir / name, ec))  // the archive's copy wins
      if (auto s = write_text(stage_dir / name, text); !s) return s.error();
  for (auto& e : fs::directory_iterator(stage_dir, ec)) (void)give_to(e.path(), tools);

  // Recovery settings for this run only.
  const fs::path auto_conf = work / "postgresql.auto.conf", hba = work / "pg_hba.conf";
  auto auto_text = read_text(auto_conf);
  auto hba_text = read_text(hba);
  if (!auto_text || !hba_text) return make_error(Errc::corrupt, "the restored data lacks postgresql.auto.conf or pg_hba.conf");
  std::string settings = *auto_text + "\n# drd recovery (removed when recovery is done)\n" +
                         "restore_command = 'cp \"" + stage_dir.string() + "/%f\" \"%p\"'\n" + target_settings +
                         "recovery_target_action = 'promote'\n";
  if (auto s = write_text(auto_conf, settings); !s) return s.error();
  if (auto s = write_text(work / "recovery.signal", ""); !s) return s.error();
  (void)give_to(work / "recovery.signal", tools);

  // Run it until promoted.
  auto scratch = backup::pgi::make_scratch(scratch_parent, runner, tools);
  if (!scratch) return scratch.error();
  backup::FolderGuard scratch_cleanup{*scratch};
  const fs::path log = *scratch / "server.log";
  std::string restored_time;
  {
    auto server = backup::pgi::ScratchServer::start(work, *scratch, runner, tools);
    if (!server)
      return make_error(server.error().code, what + " did not start (target untouched): " + server.error().message);
    const auto deadline = std::chrono::steady_clock::now() + kRecoveryTimeout;
    for (;;) {
      auto q = (*server)->query(user, "postgres", "SELECT pg_is_in_recovery()");
      if (q && *q == "f") break;
      if (!q || std::chrono::steady_clock::now() > deadline) {
        // A query error mid-recovery is the server stopping (FATAL: recovery ended before
        // the target...): its log says why.
        std::string tail = log_tail(log);
        return make_error(Errc::io, what + " did not finish (target untouched): " +
                                        (q ? std::string("still in recovery after ") + std::to_string(kRecoveryTimeout.count()) + " min"
                                           : q.error().message) +
                                        "; server log: " + tail);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    auto t = (*server)->query(user, "postgres",
                              "SELECT coalesce(to_char(pg_last_xact_replay_timestamp() AT TIME ZONE 'UTC', "
                              "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), '')");
    if (t) restored_time = *t;
  }  // stopped here (fast shutdown: a checkpoint, so the next start needs no recovery)
  if (fs::exists(work / "postmaster.pid", ec))
    return make_error(Errc::io, "the recovered server in " + work.string() + " did not stop; target untouched");

  // The source's configuration back, the staged WAL gone.
  fs::remove_all(stage_dir, ec);
  if (auto s = write_text(auto_conf, *auto_text); !s) return s.error();
  if (auto s = write_text(hba, *hba_text); !s) return s.error();
  return restored_time;
}

std::string recovery_time_setting(SysTime t) {
  // PostgreSQL's recovery_target_time check refuses ISO 8601's "T" and "Z".
  std::string pg_time = backup::format_time_utc(t);
  pg_time[10] = ' ';
  pg_time.back() = ' ';
  pg_time += "+00";
  return "recovery_target_time = '" + pg_time + "'\n";
}

Result<PitrPlan> plan_pg_pitr(const backup::BackupRef& ref, SysTime to_time) {
  const backup::Manifest& full = *ref.manifest;
  auto base = backup::pg_base_of(full);
  if (!base)
    return make_error(Errc::invalid_argument, "backup " + full.id + " is not a PostgreSQL base backup with a WAL range; "
                                                                    "point-in-time restore needs one");
  PitrPlan out;
  out.folder = ref.data.parent_path() / backup::kPgWalFolder;
  std::vector<backup::PgWalSeg> segs;
  std::vector<backup::Manifest> histories;
  auto archived = backup::scan_pg_wal(out.folder);
  for (auto& m : archived) {
    if (m.content == backup::kPgHistoryContent) histories.push_back(m);
    else if (auto s = backup::pg_wal_seg(m)) segs.push_back(*s);
  }
  auto chain = backup::pg_chain(*base, segs);
  auto plan = backup::pg_plan(full.id, *base, chain, to_time);
  if (!plan) {
    Error e = plan.error();
    e.message += "; nothing was changed";
    return e;
  }
  // The WAL recovery needs, and the history of every timeline it crosses.
  std::uint32_t max_tl = base->timeline;
  for (auto& s : *plan) {
    max_tl = std::max(max_tl, s.timeline);
    for (auto& m : archived)
      if (m.id == s.id) out.stage.push_back(m);
  }
  out.segments = plan->size();
  for (auto& h : histories)
    if (h.pg_timeline > base->timeline && h.pg_timeline <= max_tl) out.stage.push_back(h);
  return out;
}

Result<json::value> restore_pg_pitr(const backup::BackupRef& ref, const backup::MasterKey* key, const fs::path& target,
                                    bool force, SysTime to_time, ProcessRunner& runner,
                                    const std::vector<NodeConfig>& pg_nodes, const backup::Progress& progress) {
  const backup::Manifest& full = *ref.manifest;
  const std::string id = full.id;
  // 1. The plan, from the archive beside the backup (no catalog needed).
  auto plan = plan_pg_pitr(ref, to_time);
  if (!plan) return plan.error();
  // 2. The target must be free (same rules as a plain physical restore).
  std::error_code ec;
  if (fs::exists(target, ec)) {
    if (!fs::is_directory(target, ec))
      return make_error(Errc::refused, "restore target " + target.string() + " exists and is not a folder");
    if (fs::exists(target / "postmaster.pid", ec))
      return make_error(Errc::refused, "restore target " + target.string() + " holds postmaster.pid: a server may be using it");
    if (!fs::is_empty(target, ec) && !force)
      return make_error(Errc::refused, "restore target " + target.string() + " is not empty",
                        "choose a new folder, or pass --force to replace it");
  }
  auto tools = scratch_tools(pg_nodes, full.node);
  fs::path work = target;
  work += ".pitr-tmp";
  fs::remove_all(work, ec);
  backup::FolderGuard cleanup{work};
  backup::RestoreOptions opts;
  opts.key = key;
  auto r = backup::restore_pg_physical(ref, work, opts, runner, tools, progress);
  if (!r) return r.error();

  // 3. Recovery to the target time, promoted (recover_pg_copy).
  const std::string target_time = backup::format_time_utc(to_time);
  auto recovered = recover_pg_copy(work, plan->folder, plan->stage, {}, key,
                                   recovery_time_setting(to_time) + "recovery_target_timeline = 'latest'\n",
                                   "recovery of backup " + id + " to " + target_time, target.parent_path(),
                                   superuser_of(pg_nodes, full.node, tools), runner, tools);
  if (!recovered) return recovered.error();
  const std::string restored_time = *recovered;

  // 4. The rename.
  if (auto st = backup::replace_folder(work, target); !st) return st.error();
  cleanup.dismiss();
  json::object out{{"restored_to", target.string()},
                   {"id", id},
                   {"bytes", r->bytes},
                   {"to_time", target_time},
                   {"applied_segments", plan->segments},
                   {"detail", "recovered to " + target_time + " and promoted; start it with pg_ctl -D " + target.string()}};
  if (!restored_time.empty()) out["restored_time"] = restored_time;
  return json::value(std::move(out));
}

}  // namespace drd::bkrt
