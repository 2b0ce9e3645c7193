// PostgreSQL continuous WAL archiving (docs/backups.md, "Point-in-time restore (PostgreSQL)").
//
// With backup.pg_wal_archive on, drd keeps one
// `pg_receivewal --slot drd_archive --synchronous` running against the current primary (as the
// node's os_user, from its bin_dir) writing into the spool folder. Every completed file there
// (16 MiB segments, timeline .history files; never a .partial) is archived into
// `<backups>/pg-wal/` by backup::archive_pg_wal_file and entered in the catalog, then removed
// from the spool — except the newest segment, which stays so that a restarted pg_receivewal
// resumes right after it (besides the slot, which keeps the primary's WAL until received).
// A failover changes the primary: the receiver is stopped and started against the new one
// (slot created there); pg_receivewal follows the timeline switch and writes the .history file.
// Where it starts is decided here, not left to the slot: from the spool when that says
// anything, else at the segment the archive needs next (a placeholder .partial, see
// backup/pg_wal_resume.hpp) — the promoted standby still has the old timeline's WAL that the
// archive lacks, but the server's current position is already past it.
//
// Threading: the control strand computes the target (primary, config, parent backup) once a
// second and hands it over under `mu`; everything else — the child process, the spool, the
// archive files and their catalog rows (under the store's lock) — is on this runtime's own
// thread, which stop() joins before the daemon goes away.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <set>
#include <thread>

#include "common/log.hpp"
#include "daemon/backup/catalog.hpp"
#include "daemon/backup/pg_internal.hpp"
#include "daemon/backup/pg_wal.hpp"
#include "daemon/backup/pg_wal_resume.hpp"
#include "daemon/backup/service/backup_pg_runtime.hpp"
#include "daemon/backup/service/pg_archive_service.hpp"
#include "daemon/store/state_store.hpp"

namespace drd {

namespace fs = std::filesystem;
namespace asio = boost::asio;

namespace {
constexpr const char* kSlot = "drd_archive";
constexpr std::chrono::seconds kRestartDelay{5};
}  // namespace

struct PgArchiveService::Impl {
  struct Target {
    bool on = false;
    NodeConfig node;
    BackupConfig cfg;
    std::string parent;  // the newest physical full backup (the chain new segments extend); "" before the first
  };

  explicit Impl(Wiring w) : wiring(std::move(w)), runner(wiring.runner), clock(wiring.clock), store(wiring.store),
                            timer(wiring.control) {}

  Wiring wiring;
  ProcessRunner& runner;
  Clock& clock;
  SqliteStateStore& store;
  std::weak_ptr<Impl> self;  // for the timer: a tick after stop() finds nothing
  asio::steady_timer timer;
  bool stopped = false;  // control strand
  std::string parent;    // control strand: the newest physical full backup, re-read every few ticks
  unsigned ticks = 0;
  std::mutex mu;
  std::condition_variable cv;
  Target target;  // under mu
  bool quit = false;
  std::thread th;
  std::atomic<bool> live{false};  // a pg_receivewal is running (for `backups`)

  // ---- control strand ----------------------------------------------------

  void tick() {
    if (stopped) return;
    Target t;
    t.cfg = wiring.backup_config();
    const std::optional<NodeConfig> nc = wiring.primary_node();
    if (t.cfg.pg_wal_archive && !t.cfg.directory.empty() && nc && nc->engine == Engine::postgresql) {
      // The catalog grows by a row per archived segment: read it every 5th tick only.
      if (ticks++ % 5 == 0) {
        auto lk = store.lock();
        if (auto l = backup::catalog_list(store.raw()); l)
          for (auto& e : *l)  // newest first
            if (e.manifest.engine == "postgresql" && e.manifest.kind == "full" && e.manifest.content == "pg-tar") {
              parent = e.manifest.id;
              break;
            }
      }
      t.parent = parent;
      // On even before the first full backup: the slot then already holds the WAL right after
      // that backup's end, which a receiver started only afterwards could have missed.
      t.on = true;
      t.node = *nc;
    }
    {
      std::lock_guard lk(mu);
      target = std::move(t);
    }
    cv.notify_all();
    timer.expires_after(std::chrono::seconds(1));
    timer.async_wait([weak = self](const boost::system::error_code& ec) {
      if (auto me = weak.lock(); !ec && me) me->tick();
    });
  }

  // ---- archive thread ----------------------------------------------------

  std::unique_ptr<ChildProcess> child;
  std::string child_node;
  SteadyTime next_start{};
  std::string delayed_node;  // the node the restart delay is for: a new primary starts at once
  std::string last_error;  // logged once until it changes
  std::uint64_t seg_size = backup::kDefaultWalSegSize;  // the primary's wal_segment_size
  // Decided when the last receiver failed (classify_receiver_failure), used at the next start:
  std::optional<backup::WalStart> restart_at;  // its spool ran past the new primary's fork point
  bool start_fresh = false;                    // the server cannot serve the archive's next WAL

  void complain(const std::string& msg) {
    if (msg == last_error) return;
    last_error = msg;
    log::event(spdlog::level::err, "backup_wal", {}, "PostgreSQL WAL archiving: " + msg);
  }

  static fs::path spool_of(const BackupConfig& cfg) {
    return cfg.pg_wal_spool ? *cfg.pg_wal_spool : cfg.directory / "pg-wal-spool";
  }

  void stop_child(const std::string& why) {
    if (!child) return;
    child->kill();
    live = false;
    spdlog::info("stopped pg_receivewal on {}: {}", child_node, why);
    child.reset();
    child_node.clear();
  }

  void start_child(const Target& t) {
    auto tools = bkrt::pg_tools_for(t.node, "drd_archive");
    if (!tools) return complain(tools.error().message);
    const fs::path spool = spool_of(t.cfg);
    if (auto s = backup::pgi::make_owned_dir(spool, *tools); !s) return complain(s.error().message);
    if (!tools->os_user.empty() &&
        !backup::pgi::run_tool(runner, *tools, {"/usr/bin/test", "-w", spool.string()}, Millis{10'000}))
      return complain("the spool folder " + spool.string() + " is not writable by " + tools->os_user +
                      " (a parent folder is closed to it); set backup.pg_wal_archive.spool to a folder " +
                      tools->os_user + " can reach");
    // The slot makes the primary keep its WAL until pg_receivewal has it, across restarts of
    // either; created on whichever node is primary now (slots are not replicated).
    auto slot = backup::pgi::run_tool(runner, *tools,
                                      {tools->program("pg_receivewal"), "--create-slot", "--if-not-exists", "--slot", kSlot,
                                       "--no-password", "-d", tools->conninfo},
                                      Millis{30'000});
    if (!slot) return complain("cannot create replication slot " + std::string(kSlot) + " on " + t.node.name + ": " +
                               slot.error().message);
    // A pg_receivewal left by a drd that was killed (it runs in its own process group, so it
    // outlives us) still holds the slot: end its walsender, and with --no-loop it exits.
    auto orphan = backup::pgi::run_tool(
        runner, *tools,
        {tools->program("psql"), "-X", "-A", "-t", "--no-password", "-d", tools->conninfo, "-c",
         std::string("SELECT count(pg_terminate_backend(active_pid)) FROM pg_replication_slots WHERE slot_name = '") +
             kSlot + "' AND active_pid IS NOT NULL"},
        Millis{10'000});
    if (orphan && orphan->output.rfind("0", 0) != 0) {
      spdlog::warn("ended the previous receiver on replication slot {} of {} (left by an earlier drd)", kSlot, t.node.name);
      std::this_thread::sleep_for(std::chrono::milliseconds(500));  // until its walsender has released the slot
    }
    if (auto size = backup::pgi::run_tool(runner, *tools,
                                          {tools->program("psql"), "-X", "-A", "-t", "--no-password", "-d", tools->conninfo,
                                           "-c", "SELECT setting FROM pg_settings WHERE name = 'wal_segment_size'"},
                                          Millis{10'000});
        size) {
      try {
        if (auto v = std::stoull(size->output); v >= (1u << 20) && (v & (v - 1)) == 0) seg_size = v;
      } catch (const std::exception&) {
      }
    }
    if (auto p = prepare_spool(t, *tools, spool); !p) return complain(p.error().message);
    ProcessSpec spec;
    spec.argv = {tools->program("pg_receivewal"), "-D", spool.string(), "--slot", kSlot, "--synchronous", "--no-loop",
                 "--no-password", "-d", tools->conninfo};
    if (!tools->os_user.empty()) spec.user = tools->os_user;
    spec.env = tools->env;
    spec.timeout = Millis{10LL * 365 * 24 * 3600 * 1000};  // runs until we stop it
    spec.max_output = 64 << 10;
    auto c = runner.spawn(spec, PipeOptions{false, false, spec.timeout});
    if (!c) return complain("cannot start pg_receivewal: " + c.error().message);
    child = std::move(c.value());
    child_node = t.node.name;
    live = true;
    last_error.clear();
    log::event(spdlog::level::info, "backup_wal", {{"NODE", t.node.name}},
               "PostgreSQL WAL archiving: pg_receivewal streams from " + t.node.name + " (slot " + kSlot + ") into " +
                   spool.string());
  }

  // The segment the archive needs next for the newest physical full backup; nullopt before one.
  // Read from the catalog here rather than taken from the target: the control strand refreshes
  // its parent only every few seconds, and a failover right after a backup must not miss it.
  std::optional<backup::WalStart> archive_next() {
    std::optional<backup::PgBase> base;
    std::vector<backup::PgWalSeg> segs;
    {
      auto lk = store.lock();
      auto l = backup::catalog_list(store.raw());
      if (!l) return std::nullopt;
      for (auto& e : *l) {  // newest first
        if (!base && e.manifest.engine == "postgresql" && e.manifest.kind == "full" && e.manifest.content == "pg-tar")
          base = backup::pg_base_of(e.manifest);
        else if (auto sg = backup::pg_wal_seg(e.manifest))
          segs.push_back(*sg);
      }
    }
    if (!base) return std::nullopt;
    return backup::pg_archive_next(*base, segs, seg_size);
  }

  // Moves the spool's WAL files from segment `from` on (all with nullopt) into spool/diverged/:
  // WAL the new primary's history does not have. Kept, not deleted: they are the old primary's
  // last commits, and never archived from there.
  void move_aside(const fs::path& spool, std::optional<std::uint64_t> from) {
    std::error_code ec;
    std::vector<fs::path> moving;
    for (auto it = fs::directory_iterator(spool, ec); !ec && it != fs::directory_iterator(); it.increment(ec)) {
      std::string n = it->path().filename().string();
      const bool partial = n.size() > 8 && n.compare(n.size() - 8, 8, ".partial") == 0;
      auto w = backup::parse_wal_name(partial ? n.substr(0, n.size() - 8) : n, seg_size);
      if (w && !w->history && (!from || w->segno >= *from)) moving.push_back(it->path());
    }
    if (moving.empty()) return;
    const fs::path aside = spool / "diverged";
    fs::create_directories(aside, ec);
    for (auto& p : moving) {
      fs::rename(p, aside / p.filename(), ec);
      if (ec) fs::remove(p, ec);
    }
    spdlog::warn("PostgreSQL WAL archiving: moved {} spool file(s) the new primary cannot continue from into {}",
                 moving.size(), aside.string());
  }

  // The server's current timeline and its history, over a replication connection (the
  // same access pg_receivewal needs). nullopt when it cannot be read.
  std::optional<std::pair<std::uint32_t, std::vector<backup::TimelineSwitch>>> server_history(const backup::PgTools& tools) {
    auto current = bkrt::pg_server_timeline(runner, tools);
    if (!current) return std::nullopt;
    const std::uint32_t tl = *current;
    if (tl <= 1) return std::make_pair(tl, std::vector<backup::TimelineSwitch>{});
    auto h = bkrt::pg_replication_command(runner, tools, "TIMELINE_HISTORY " + std::to_string(tl));  // filename|content
    if (!h) return std::nullopt;
    auto hb = h->find('|');
    return std::make_pair(tl, backup::parse_timeline_history(hb == std::string::npos ? "" : h->substr(hb + 1)));
  }

  // Where the next pg_receivewal starts (backup/pg_wal_resume.hpp): its spool's own start, or
  // the archive's next segment when the spool says nothing, moved onto the server's history;
  // a placeholder .partial when that differs from what the spool would give.
  Status prepare_spool(const Target& t, const backup::PgTools& tools, const fs::path& spool) {
    if (start_fresh) {  // the server's current position
      move_aside(spool, std::nullopt);
      start_fresh = false;
      return ok_status();
    }
    std::vector<std::string> names;
    std::error_code ec;
    for (auto it = fs::directory_iterator(spool, ec); !ec && it != fs::directory_iterator(); it.increment(ec))
      names.push_back(it->path().filename().string());
    const auto own = backup::spool_start(names, seg_size);
    std::optional<backup::WalStart> want = restart_at ? restart_at : own ? own : archive_next();
    restart_at.reset();
    if (!want) return ok_status();
    backup::WalStart start = *want;
    if (auto server = server_history(tools)) {
      auto r = backup::resolve_start(*want, server->second, server->first, seg_size);
      if (r.unknown_timeline) {
        log::event(spdlog::level::warn, "backup_wal", {{"NODE", t.node.name}},
                   "PostgreSQL WAL archiving: timeline " + std::to_string(want->timeline) + " of the spool is not in " +
                       t.node.name + "'s history; archiving continues from its current position");
        move_aside(spool, std::nullopt);
        return ok_status();
      }
      if (r.past_fork)
        log::event(spdlog::level::warn, "backup_wal", {{"NODE", t.node.name}},
                   "PostgreSQL WAL archiving: the spool holds WAL past the point where " + t.node.name +
                       "'s timeline forked (the old primary's last writes, which the promotion did not keep); "
                       "archiving continues from the fork, on timeline " + std::to_string(r.start.timeline));
      start = r.start;
    }
    if (own && start == *own) return ok_status();  // pg_receivewal's own continuation is right
    move_aside(spool, start.segno);
    // pg_receivewal resumes at the start of the highest .partial of the full segment size and
    // writes over it; a sparse file costs no disk.
    const fs::path file = spool / (backup::wal_file_name(start.timeline, start.segno, seg_size) + ".partial");
    auto made = backup::pgi::run_tool(runner, tools, {"/usr/bin/truncate", "-s", std::to_string(seg_size), file.string()},
                                      Millis{10'000});
    if (!made) return make_error(Errc::io, "cannot create " + file.string() + ": " + made.error().message);
    spdlog::info("PostgreSQL WAL archiving: pg_receivewal on {} starts at {}", t.node.name, file.filename().string());
    return ok_status();
  }

  // Archives every completed file in the spool, oldest first.
  void drain(const Target& t, const std::optional<backup::BackupSettings>& settings, const std::string& waldump) {
    const fs::path spool = spool_of(t.cfg);
    std::vector<std::pair<backup::WalName, fs::path>> files;
    std::error_code ec;
    for (auto it = fs::directory_iterator(spool, ec); !ec && it != fs::directory_iterator(); it.increment(ec))
      // 1 MiB: the smallest segment size, so every valid name parses (the order is the same);
      // archive_pg_wal_file takes the real size from the file.
      if (auto w = backup::parse_wal_name(it->path().filename().string(), 1u << 20); w && it->is_regular_file(ec))
        files.emplace_back(*w, it->path());
    if (files.empty() || !settings) return;
    std::sort(files.begin(), files.end(), [](const auto& a, const auto& b) {
      if (a.first.history != b.first.history) return a.first.history;  // histories first
      return std::pair(a.first.segno, a.first.timeline) < std::pair(b.first.segno, b.first.timeline);
    });
    fs::path newest;
    for (auto& [w, p] : files)
      if (!w.history) newest = p;
    const fs::path folder = t.cfg.directory / backup::kPgWalFolder;
    for (auto& [w, p] : files) {
      bool already = false;
      auto m = backup::archive_pg_wal_file(*settings, runner, p, waldump, child_node.empty() ? t.node.name : child_node,
                                           t.parent, clock.now(), &already);
      if (!m) return complain("cannot archive " + p.string() + ": " + m.error().message);
      if (!already) {
        Status st = ok_status();
        {
          auto lk = store.lock();
          st = backup::catalog_insert(store.raw(), *m, folder);
        }
        if (!st && st.error().code != Errc::conflict)
          spdlog::error("archived WAL {} is not in the catalog: {}", m->id, st.error().message);
        spdlog::debug("archived WAL {} ({})", m->id, m->source_position);
      }
      if (p != newest) fs::remove(p, ec);
    }
  }

  // Rows for archived files the catalog lacks (drd stopped between the files and the row).
  void reconcile(const fs::path& folder) {
    backup::remove_stale_partials(folder);
    std::set<std::string> known;
    {
      auto lk = store.lock();
      if (auto l = backup::catalog_list(store.raw()); l)
        for (auto& e : *l)
          if (backup::is_pg_wal(e.manifest)) known.insert(e.manifest.id);
    }
    std::size_t added = 0;
    for (auto& m : backup::scan_pg_wal(folder))
      if (!known.count(m.id)) {
        auto lk = store.lock();
        if (backup::catalog_insert(store.raw(), m, folder)) ++added;
      }
    if (added) spdlog::info("entered {} archived PostgreSQL WAL file(s) found in {} in the catalog", added, folder.string());
  }

  void run() {
    std::optional<backup::BackupSettings> settings;
    std::string settings_for;  // the key file the settings were loaded from
    bool reconciled = false;
    for (;;) {
      Target t;
      {
        std::unique_lock lk(mu);
        cv.wait_for(lk, std::chrono::milliseconds(500), [&] { return quit; });
        if (quit) break;
        t = target;
      }
      if (!t.on || (child && child_node != t.node.name)) stop_child(t.on ? "the primary is now " + t.node.name : "archiving is off");
      if (!t.on) continue;
      if (!reconciled) {
        reconcile(t.cfg.directory / backup::kPgWalFolder);
        reconciled = true;
      }
      const std::string key_file = t.cfg.key_file ? t.cfg.key_file->string() : "";
      if (!settings || settings_for != key_file) {
        auto s = backup::BackupSettings::from_config(t.cfg);
        if (!s) {
          complain(s.error().message);
          continue;
        }
        settings = s.value();
        settings->directory = t.cfg.directory / backup::kPgWalFolder;
        settings->threads = 1;  // one segment at a time; leave the cores to the database
        settings_for = key_file;
      }
      if (child)
        if (auto o = child->try_wait()) {
          const std::string said = backup::tool_output_tail(o->output, {});
          const std::string how = o->signal ? "signal " + std::to_string(o->signal) : "status " + std::to_string(o->exit_code);
          auto f = backup::classify_receiver_failure(o->output, seg_size);
          auto delay = kRestartDelay;
          if (f.kind == backup::ReceiverFailure::diverged) {
            restart_at = f.restart_at;
            start_fresh = !f.restart_at;
            delay = std::chrono::seconds(0);
            log::event(spdlog::level::warn, "backup_wal", {{"NODE", child_node}},
                       "PostgreSQL WAL archiving: " + child_node + "'s history forked before the WAL the spool holds (" +
                           said + "); restarting at the fork point");
          } else if (f.kind == backup::ReceiverFailure::unavailable) {
            start_fresh = true;
            delay = std::chrono::seconds(0);
            log::event(spdlog::level::err, "backup_wal", {{"NODE", child_node}},
                       "PostgreSQL WAL archiving: " + child_node + " no longer has the WAL the archive needs next (" +
                           said + "): the archive has a gap there, point-in-time restore of earlier backups stops "
                           "before it; archiving continues from the current position, and the next full backup "
                           "starts a new restorable window");
          } else {
            complain("pg_receivewal on " + child_node + " stopped (" + how + "): " + said + "; restarting it in " +
                     std::to_string(kRestartDelay.count()) + " s");
          }
          delayed_node = child_node;
          child.reset();
          child_node.clear();
          live = false;
          next_start = std::chrono::steady_clock::now() + delay;
        }
      if (!child && (std::chrono::steady_clock::now() >= next_start || t.node.name != delayed_node)) {
        start_child(t);
        if (!child) {
          delayed_node = t.node.name;
          next_start = std::chrono::steady_clock::now() + kRestartDelay;
        }
      }
      auto tools = bkrt::pg_tools_for(t.node, "drd_archive");
      drain(t, settings, tools ? tools->program("pg_waldump") : "pg_waldump");
    }
    stop_child("drd is stopping");
  }
};

PgArchiveService::PgArchiveService(Wiring wiring) : impl_(std::make_shared<Impl>(std::move(wiring))) {
  impl_->self = impl_;
  auto* rt = impl_.get();
  rt->th = std::thread([rt] { rt->run(); });
  rt->tick();
}

PgArchiveService::~PgArchiveService() { stop(); }

bool PgArchiveService::live() const { return impl_->live.load(); }

void PgArchiveService::stop() {
  auto& rt = *impl_;
  rt.stopped = true;
  rt.timer.cancel();
  {
    std::lock_guard lk(rt.mu);
    rt.quit = true;
  }
  rt.cv.notify_all();
  if (rt.th.joinable()) rt.th.join();  // at most one file being archived (~a second)
}

}  // namespace drd
