// SQLite WAL archiving (incremental backups, point-in-time restore), restore onto the live
// primary and scheduled verification (docs/backups.md).
//
// Threading: every Daemon/ArchiveRuntime method here runs on the control strand. The
// archivers run on the cluster worker (they are replication taps); segments are compressed,
// encrypted and written on this runtime's own worker, so a long full backup on the backup
// worker never holds them up; their catalog rows are written back on the control strand.
// Lifetime: as BackupRuntime — jobs hold the runtime by shared_ptr and drop late results
// once `stopped` is set. A segment written but not catalogued (drd stopped in between) is
// entered at the next start by reconcile().
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <future>
#include <map>
#include <set>

#include "common/log.hpp"
#include "daemon/backup/catalog.hpp"
#include "daemon/backup/catalog_json.hpp"
#include "daemon/backup/incremental.hpp"
#include "daemon/backup/pitr_coverage.hpp"
#include "daemon/backup/schedule.hpp"
#include "daemon/backup/util.hpp"
#include "daemon/backup/wal_archive.hpp"
#include "daemon/backup/service/backup_runtime.hpp"
#include "daemon/daemon.hpp"

namespace drd {

namespace fs = std::filesystem;

namespace {

constexpr std::chrono::seconds kVerifyRecheck{30};
// A new base backup that cannot even start for this long (replication from the new primary
// not running) no longer counts as "starting": the gap is reported as stopped and alerts.
constexpr std::chrono::seconds kRebaseGrace{60};
// Status is asked for up to five times a second (alert rules): the chain windows are read
// from the catalog at most this often, and at once after a segment or a chain's end.
constexpr std::chrono::seconds kWindowsCacheFor{2};

std::string text_param(const json::object& p, const char* key) {
  auto* v = p.if_contains(key);
  return v && v->is_string() ? std::string(v->as_string()) : std::string();
}

// The catalog row of a written segment.
backup::Manifest segment_manifest(const BackupConfig& cfg, const std::string& node, const backup::SegmentInfo& si,
                                  const std::string& full_id, const std::string& key_id) {
  backup::Manifest m;
  m.id = backup::segment_id(full_id, si.n);
  m.name = "wal";
  m.node = node;
  m.engine = "sqlite";
  m.kind = "incremental";
  m.parent = full_id;
  m.created_at = si.time;
  m.source_position = json::serialize(json::object{{"segment", si.n},
                                                   {"base", si.base},
                                                   {"first_commit_at", backup::format_time_utc(si.first_time)},
                                                   {"frames", si.frames}});
  m.source_bytes = si.raw_bytes;
  std::error_code ec;
  m.size_bytes = fs::file_size(si.path, ec);
  m.plaintext_sha256 = si.plaintext_sha256;
  m.file_sha256 = si.file_sha256;
  m.compression_algorithm = cfg.compression_algorithm;
  m.compression_level = cfg.compression_level;
  m.encrypted = !key_id.empty();
  m.key_id = key_id;
  m.data_file = "seg-" + std::to_string(si.n);  // in the catalog row's directory, <backups>/<full-id>
  m.content = backup::kWalSegmentContent;
  return m;
}

}  // namespace

struct Daemon::ArchiveRuntime {
  explicit ArchiveRuntime(Daemon& daemon)
      : d(daemon), strand(daemon.control_), worker(std::make_unique<BlockingWorker>()),
        verify_timer(std::make_unique<asio::steady_timer>(daemon.control_)) {}

  struct Chain {
    std::shared_ptr<backup::WalArchiver> archiver;  // used on the cluster worker only
    std::string node;
    std::string full_id;  // set once the full backup is complete
    std::string key_id;   // the key its segments are written with ("" = unencrypted)
    std::shared_ptr<std::atomic<bool>> broken = std::make_shared<std::atomic<bool>>(false);
    bool failed = false;      // a segment could not be written: ended by drd, not by the primary changing
    bool superseded = false;  // a newer chain took over (its base segment is written)
    std::string supersede;    // the older chain this one stops once its base segment is written
  };

  Daemon& d;
  asio::strand<asio::io_context::executor_type> strand;
  std::unique_ptr<BlockingWorker> worker;  // segments, restore onto the primary
  std::unique_ptr<asio::steady_timer> verify_timer;
  bool stopped = false;
  std::map<std::string, std::shared_ptr<Chain>> chains;  // by token; the newest complete one is `active`
  std::string active;
  bool restore_running = false;
  // Point-in-time coverage (control strand): why the last chain ended, and a new base backup
  // due because a chain ended without anything taking over (switchover, failover, replication
  // restarted). rebase_running: that backup is under way (it arms its own chain first).
  std::string ended_why;
  bool rebase_due = false, rebase_running = false;
  std::string rebase_why;
  SteadyTime rebase_retry_at{}, rebase_due_since{};
  std::optional<std::vector<backup::ChainWindow>> windows_cache;  // live flags unset
  SteadyTime windows_at{};
  // Scheduled verification (control strand).
  std::string verify_text;
  std::optional<backup::Schedule> verify_schedule;
  std::optional<SysTime> verify_next;
  bool verify_running = false;

  void post_result(std::function<void()> fn) { asio::post(strand, std::move(fn)); }
  void finish_primary_restore(ClusterDriver* driver, const std::string& node, std::optional<backup::Manifest> safety,
                              Result<json::value> result, Reply reply);

  // ---- WAL archiving ------------------------------------------------------

  // On the cluster worker (the archiver's callback): hand the spool to our worker.
  // The settings (key) a chain's segments are written with: loaded when the chain is armed,
  // together with its full backup, and kept, so a key file changed later does not leave the
  // chain encrypted with two keys (archive_full_done checks the full used the same key).
  // Filled on the control strand before any segment exists, then read on our worker only.
  using ChainSettings = std::shared_ptr<std::optional<backup::BackupSettings>>;

  static void segment_ready(const std::weak_ptr<ArchiveRuntime>& weak, BackupConfig cfg, std::string node,
                            std::string token, std::shared_ptr<std::atomic<bool>> broken, ChainSettings cached,
                            backup::SpooledSegment seg) {
    auto self = weak.lock();
    std::error_code ec;
    if (!self) {
      fs::remove(seg.spool, ec);
      return;
    }
    bool posted = self->worker->post([self, cfg, node, token, broken, cached, seg]() mutable {
      std::error_code rm;
      if (broken->load()) {  // an earlier segment is missing: later ones could never be replayed
        fs::remove(seg.spool, rm);
        return;
      }
      Result<backup::Manifest> out = make_error(Errc::internal, "");
      if (!*cached) {
        auto loaded = backup::BackupSettings::from_config(cfg);
        if (loaded) {
          cached->emplace(std::move(loaded.value()));
          // A segment holds at most 16 MiB of frames: one thread compresses it in tens of
          // milliseconds, and zstd workers would add their buffers to drd's memory for nothing.
          (*cached)->threads = 1;
        } else {
          out = loaded.error();
        }
      }
      if (!*cached) {
        fs::remove(seg.spool, rm);
      } else {
        const backup::BackupSettings& settings = **cached;
        auto si = backup::write_segment_from_spool(settings, seg);
        if (!si) out = si.error();
        else out = segment_manifest(cfg, node, *si, seg.full_id, settings.key ? settings.key->id() : "");
      }
      if (!out) broken->store(true);
      self->post_result([self, token, seg, out = std::move(out)] {
        if (self->stopped) return;
        self->segment_written(token, seg, out);
      });
    });
    if (!posted) fs::remove(seg.spool, ec);  // drd is stopping; the chain ends at the previous segment
  }

  void segment_written(const std::string& token, const backup::SpooledSegment& seg, const Result<backup::Manifest>& m) {
    if (!m) {
      log::event(spdlog::level::err, "backup_wal", {{"BACKUP_ID", seg.full_id}},
                 "WAL segment " + std::to_string(seg.n) + " of backup " + seg.full_id + " could not be written: " +
                     m.error().message + "; point-in-time restore of it ends at the previous segment");
      if (auto it = chains.find(token); it != chains.end()) it->second->failed = true;
      stop_chain(token, "segment " + std::to_string(seg.n) + " could not be written: " + m.error().message);
      return;
    }
    // The newer chain's window starts here: the one it replaces ends after it, leaving no gap.
    if (seg.base)
      if (auto it = chains.find(token); it != chains.end() && !it->second->supersede.empty()) {
        const std::string older = it->second->supersede;
        it->second->supersede.clear();
        if (auto o = chains.find(older); o != chains.end()) {
          o->second->superseded = true;
          stop_chain(older, "a newer full backup (" + seg.full_id + ") started its own chain");
        }
      }
    Status st = ok_status();
    {
      auto lk = d.store_->lock();
      st = backup::catalog_insert(d.store_->raw(), *m, d.config_.backup.directory / seg.full_id);
    }
    windows_cache.reset();
    if (!st && st.error().code != Errc::conflict)
      spdlog::error("WAL segment {} written but not entered in the catalog: {}", m->id, st.error().message);
    spdlog::debug("WAL segment {}: {} frames, {} (up to {})", m->id, seg.frames, backup::human_bytes(m->size_bytes),
                  backup::format_time_utc(m->created_at));
  }

  void chain_ended(const std::string& token, const std::string& full_id, const std::string& why) {
    bool failed = false, superseded = false;
    if (auto it = chains.find(token); it != chains.end()) {
      failed = it->second->failed;
      superseded = it->second->superseded;
    }
    chains.erase(token);
    if (active == token) active.clear();
    windows_cache.reset();
    if (full_id.empty() || why.empty()) return;
    if (superseded) {
      spdlog::info("WAL archiving after backup {} ended: {}", full_id, why);
      return;
    }
    ended_why = "WAL archiving after backup " + full_id + " ended: " + why;
    // A chain that ended because the primary changed or replication restarted is followed at
    // once by a new base backup; one drd could not write is not (the same failure would
    // follow): the gap stays open, shows in status and fires the pitr_gap alert.
    const bool rebase = !failed && !stopped && live_full_id().empty();
    if (rebase) want_rebase(why);
    log::event(spdlog::level::warn, "backup_wal", {{"BACKUP_ID", full_id}},
               "WAL archiving after backup " + full_id + " ended: " + why +
                   "; it stays restorable up to its last segment" +
                   (rebase ? std::string(", and a new full backup is taken now to continue point-in-time coverage")
                           : std::string(live_full_id().empty()
                                             ? "; nothing after it can be restored to until the next full backup"
                                             : "")));
  }

  // The full backup of the chain being extended now ("" when none).
  std::string live_full_id() const {
    std::string id;
    for (auto& [t, c] : chains)
      if (!c->full_id.empty() && !c->superseded && c->node == d.state_.primary() && c->full_id > id) id = c->full_id;
    return id;
  }
  bool chain_starting() const {
    for (auto& [t, c] : chains)
      if (c->full_id.empty()) return true;
    return false;
  }

  // Point-in-time coverage needs a new base backup (a chain ended, or the primary changed).
  // Only where coverage was kept: incremental archiving configured for SQLite and a chain
  // with segments in the catalog.
  void want_rebase(const std::string& why) {
    const BackupConfig& cfg = d.config_.backup;
    if (!cfg.incremental || cfg.directory.empty() || d.config_.nodes.empty() ||
        d.config_.nodes.front().engine != Engine::sqlite)
      return;
    if (!rebase_due) {
      rebase_retry_at = {};
      rebase_due_since = d.clock_.steady();
    }
    rebase_due = true;
    rebase_why = why;
  }

  // After each probe round: start the due base backup on the primary once it can be archived.
  void round() {
    if (stopped || !rebase_due || rebase_running) return;
    if (!live_full_id().empty()) {  // a backup taken meanwhile continues coverage already
      rebase_due = false;
      return;
    }
    if (chain_starting() || restore_running || d.failover_->promoting() || !d.acts() || d.state_.primary().empty()) return;
    if (d.clock_.steady() < rebase_retry_at) return;
    if (!d.probes_->is(d.state_.primary(), Health::up)) return;
    rebase_running = true;
    const std::string node = d.state_.primary(), why = rebase_why;
    auto self = d.archive_;
    d.pitr_rebase(node, [self, node, why](Result<json::value> r) {
      self->rebase_running = false;
      if (self->stopped) return;
      if (r) {
        self->rebase_due = false;
        const std::string id = r->is_object() && r->as_object().contains("id") ? std::string(r->at("id").as_string()) : "";
        log::event(spdlog::level::warn, "backup_wal", {{"NODE", node}, {"BACKUP_ID", id}},
                   "new base backup " + id + " of " + node + " continues point-in-time coverage (" + why + ")");
        return;
      }
      if (r.error().code == Errc::unavailable || r.error().code == Errc::conflict) {
        // Replication from the new primary is not running yet, or another backup runs: retry.
        self->rebase_retry_at = self->d.clock_.steady() + std::chrono::milliseconds(200);
        spdlog::debug("new base backup of {} for point-in-time coverage not started yet: {}", node, r.error().message);
        return;
      }
      self->rebase_due = false;
      log::event(spdlog::level::err, "backup_wal", {{"NODE", node}},
                 "the new base backup of " + node + " that would continue point-in-time coverage failed: " +
                     r.error().message + "; nothing after the last archived segment can be restored to until a full "
                     "backup succeeds");
    });
  }

  void stop_chain(const std::string& token, const std::string& why) {
    auto it = chains.find(token);
    if (it == chains.end() || !d.cluster_worker_) return;
    auto arch = it->second->archiver;
    d.cluster_worker_->post([arch, why] { arch->stop(why); });
  }

  // ---- scheduled verification -------------------------------------------

  void verify_tick() {
    if (stopped) return;
    const BackupConfig& cfg = d.config_.backup;
    const std::string text = cfg.directory.empty() ? std::string() : cfg.verify_schedule;
    const SysTime now = d.clock_.now();
    if (text != verify_text) {
      verify_text = text;
      verify_schedule.reset();
      verify_next.reset();
      if (!text.empty()) {
        auto s = backup::parse_schedule(text);
        if (!s) {
          spdlog::error("backup.verify_schedule '{}' is not usable: {}; no scheduled verification", text, s.error().message);
        } else {
          verify_schedule = s.value();
          verify_next = backup::next_run(*verify_schedule, now);
          if (verify_next)
            spdlog::info("verification of the newest backup scheduled '{}' (UTC); next at {}", text,
                         backup::format_time_utc(*verify_next));
        }
      }
    } else if (verify_schedule && verify_next && now >= *verify_next) {
      verify_newest();
      verify_next = backup::next_run(*verify_schedule, now);
    }
    auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(kVerifyRecheck);
    if (verify_next)
      wait = std::max(std::chrono::milliseconds(10),
                      std::min(wait, std::chrono::duration_cast<std::chrono::milliseconds>(*verify_next - now)));
    verify_timer->expires_after(wait);
    verify_timer->async_wait([self = d.archive_](const boost::system::error_code& ec) {
      if (!ec && !self->stopped) self->verify_tick();
    });
  }

  void verify_newest() {
    if (verify_running) return spdlog::warn("scheduled verification skipped: the previous one is still running");
    std::string id;
    {
      auto lk = d.store_->lock();
      if (auto l = backup::catalog_list(d.store_->raw()); l)
        for (auto& e : *l)
          if (!backup::is_wal_segment(e.manifest)) {
            id = e.manifest.id;
            break;
          }
    }
    if (id.empty()) return spdlog::info("scheduled verification: no backup to verify yet");
    verify_running = true;
    auto self = d.archive_;
    d.backup_verify(json::object{{"id", id}}, [self, id](Result<json::value> r) {
      self->verify_running = false;
      // backup_verify has logged the verdict and stored it in the catalog.
      if (!r) spdlog::error("scheduled verification of {} could not run: {}", id, r.error().message);
    });
  }
};

// ---- Daemon methods ---------------------------------------------------------

void Daemon::archive_start() {
  if (!archive_) archive_ = std::make_shared<ArchiveRuntime>(*this);
  archive_->verify_tick();
  // Segments written after the last catalog update (drd stopped in between) get their rows.
  const BackupConfig cfg = config_.backup;
  if (cfg.directory.empty()) return;
  std::vector<backup::CatalogEntry> fulls;
  std::set<std::string> known;
  {
    auto lk = store_->lock();
    if (auto l = backup::catalog_list(store_->raw()); l)
      for (auto& e : *l) {
        if (backup::is_wal_segment(e.manifest)) known.insert(e.manifest.id);
        else if (e.manifest.engine == "sqlite" && e.manifest.kind == "full") fulls.push_back(e);
      }
  }
  auto self = archive_;
  archive_->worker->post([self, cfg, fulls, known] {
    std::vector<std::pair<backup::Manifest, fs::path>> add;
    auto settings = backup::BackupSettings::from_config(cfg);
    std::string key_id = settings && settings->key ? settings->key->id() : "";
    for (auto& f : fulls) {
      auto scan = backup::scan_segments(f.directory, f.manifest.id);
      for (auto& si : scan.segments)
        if (!known.count(backup::segment_id(f.manifest.id, si.n)))
          add.emplace_back(segment_manifest(cfg, f.manifest.node, si, f.manifest.id, key_id), f.directory / f.manifest.id);
    }
    self->post_result([self, add, dir = cfg.directory] {
      if (self->stopped || add.empty()) return;
      auto lk = self->d.store_->lock();
      for (auto& [m, mdir] : add) (void)backup::catalog_insert(self->d.store_->raw(), m, mdir);
      spdlog::info("entered {} WAL segment(s) found in {} in the backup catalog", add.size(), dir.string());
    });
  });
}

void Daemon::archive_stop() {
  if (!archive_) return;
  // End every chain first (each cuts what it has spooled), so the final segments reach our
  // worker before it stops; their catalog rows are added at the next start.
  if (cluster_worker_ && !archive_->chains.empty()) {
    std::vector<std::shared_ptr<backup::WalArchiver>> archs;
    for (auto& [token, c] : archive_->chains) archs.push_back(c->archiver);
    auto done = std::make_shared<std::promise<void>>();
    auto fut = done->get_future();
    if (cluster_worker_->post([archs, done] {
          for (auto& a : archs) a->stop("drd is stopping");
          done->set_value();
        }))
      fut.wait_for(std::chrono::seconds(2));
  }
  archive_->stopped = true;
  archive_->verify_timer->cancel();
  archive_->verify_timer.reset();
  archive_->worker.reset();  // waits for a segment being written
}

void Daemon::archive_arm(const std::string& node, std::function<void(std::shared_ptr<backup::WalArchiver>)> go,
                         bool required) {
  if (!archive_) archive_ = std::make_shared<ArchiveRuntime>(*this);
  const BackupConfig& cfg = config_.backup;
  const NodeConfig* nc = config_.find_node(node);
  // Only the primary's own stream continues its snapshot; a standby may be behind it.
  if (!cfg.incremental || cfg.directory.empty() || !nc || nc->engine != Engine::sqlite || node != state_.primary() ||
      !driver_ || !cluster_worker_)
    return go(nullptr);
  auto self = archive_;
  std::weak_ptr<ArchiveRuntime> weak = archive_;
  const std::string token = backup::new_backup_id(clock_.now(), node);
  auto chain = std::make_shared<ArchiveRuntime::Chain>();
  chain->node = node;
  auto broken = chain->broken;
  auto cached = std::make_shared<std::optional<backup::BackupSettings>>();
  auto loaded = backup::BackupSettings::from_config(cfg);
  if (!loaded) return go(nullptr);  // the full backup reports the same error
  cached->emplace(std::move(loaded.value()));
  chain->key_id = (*cached)->key ? (*cached)->key->id() : "";
  chain->archiver = std::make_shared<backup::WalArchiver>(
      backup::ArchiveOptions{cfg.directory, cfg.segment_max_bytes, cfg.segment_max_age}, token,
      [weak, cfg, node, token, broken, cached](backup::SpooledSegment seg) {
        ArchiveRuntime::segment_ready(weak, cfg, node, token, broken, cached, std::move(seg));
      },
      [weak, token](const std::string& full_id, const std::string& why) {
        if (auto s = weak.lock())
          s->post_result([s, token, full_id, why] {
            if (!s->stopped) s->chain_ended(token, full_id, why);
          });
      });
  auto* driver = driver_.get();
  bool posted = cluster_worker_->post([self, driver, chain, token, go, required]() mutable {
    Status st = driver->add_wal_tap(chain->archiver);
    self->post_result([self, st, chain, token, go, required]() mutable {
      if (self->stopped) return;
      if (!st) {
        if (required) spdlog::debug("WAL archiving cannot start yet: {}", st.error().message);
        else spdlog::warn("this backup will have no WAL segments: {}", st.error().message);
        return go(nullptr);
      }
      self->chains[token] = chain;
      go(chain->archiver);
    });
  });
  if (!posted) go(nullptr);
}

void Daemon::archive_full_done(const std::shared_ptr<backup::WalArchiver>& arch, const Result<backup::Manifest>& m) {
  if (!arch || !archive_ || !cluster_worker_) return;
  std::string token;
  for (auto& [t, c] : archive_->chains)
    if (c->archiver == arch) token = t;
  if (!m) {
    archive_->chains.erase(token);
    cluster_worker_->post([arch] { arch->abandon("the full backup failed"); });
    return;
  }
  if (auto it = archive_->chains.find(token); it != archive_->chains.end() && it->second->key_id != m->key_id) {
    archive_->chains.erase(it);  // the key file changed between arming and the snapshot
    cluster_worker_->post([arch] { arch->abandon("the key file changed while the full backup was taken"); });
    return;
  }
  // One chain at a time: the previous one ends once this one's base segment is written
  // (segment_written), so their windows overlap and no time between them is left uncovered.
  if (auto it = archive_->chains.find(token); it != archive_->chains.end()) {
    if (!archive_->active.empty() && archive_->active != token && archive_->chains.count(archive_->active))
      it->second->supersede = archive_->active;
    it->second->full_id = m->id;
  }
  archive_->active = token;
  archive_->rebase_due = false;  // coverage continues from this backup
  const std::string id = m->id;
  cluster_worker_->post([arch, id] { arch->full_done(id); });
}

void Daemon::archive_round() {
  if (archive_) archive_->round();
}

void Daemon::archive_promoted(const std::string& from, const std::string& to, const std::string& mode) {
  if (!archive_) return;
  // The old primary's chain ends with its replication (chain_ended); whether or not that
  // has arrived yet, coverage continues with a new base backup of `to`.
  bool had_chain = archive_->rebase_due;
  for (auto& [t, c] : archive_->chains)
    if (!c->full_id.empty() && c->node != to) had_chain = true;
  if (had_chain) archive_->want_rebase((mode == "switchover" ? "switchover " : "failover ") + from + " -> " + to);
}

bool Daemon::pitr_expected() const {
  const BackupConfig& cfg = config_.backup;
  return cfg.incremental && !cfg.directory.empty() && !config_.nodes.empty() &&
         config_.nodes.front().engine == Engine::sqlite;
}

std::set<std::string> Daemon::archiving_live() const {
  std::set<std::string> live;
  if (archive_)
    if (auto id = archive_->live_full_id(); !id.empty()) live.insert(id);
  return live;
}

backup::Coverage Daemon::pitr_coverage(const std::vector<backup::CatalogEntry>& list) const {
  return backup::pitr_coverage(backup::sqlite_chain_windows(list, archiving_live()), pitr_expected());
}

json::array Daemon::backups_json(const std::vector<backup::CatalogEntry>& list, bool segments) const {
  std::set<std::string> live = archiving_live();
  if (pg_archive_ && pg_archive_->live()) live.insert(backup::kPgArchivingLive);
  json::array out = backup::catalog_json(list, live, segments);
  // Each gap in point-in-time coverage on the full backup whose window it follows.
  auto cov = pitr_coverage(list);
  for (auto& g : cov.gaps)
    for (auto& v : out) {
      auto& o = v.as_object();
      if (o.at("id").as_string() != g.after_id) continue;
      auto* r = o.if_contains("restorable");
      if (!r || !r->is_object()) continue;
      r->as_object()["gap_after"] = json::object{
          {"from", backup::format_time_utc(g.from)},
          {"to", g.to ? json::value(backup::format_time_utc(*g.to)) : json::value(nullptr)},
          {"before", g.before_id.empty() ? json::value(nullptr) : json::value(g.before_id)}};
    }
  return out;
}

json::value Daemon::pitr_json() const {
  if (config_.backup.directory.empty() || config_.nodes.empty() || config_.nodes.front().engine != Engine::sqlite)
    return nullptr;
  const SteadyTime steady = clock_.steady();
  std::vector<backup::ChainWindow> windows;
  if (archive_ && archive_->windows_cache && steady - archive_->windows_at < kWindowsCacheFor) {
    windows = *archive_->windows_cache;
  } else {
    std::vector<backup::CatalogEntry> list;
    {
      auto lk = store_->lock();
      if (auto l = backup::catalog_list(store_->raw()); l) list = std::move(*l);
    }
    windows = backup::sqlite_chain_windows(list, {});
    if (archive_) {
      archive_->windows_cache = windows;
      archive_->windows_at = steady;
    }
  }
  const auto live = archiving_live();
  for (auto& w : windows) w.live = live.count(w.full_id) > 0;
  auto cov = backup::pitr_coverage(std::move(windows), pitr_expected());
  const SysTime now = clock_.now();
  std::string state = "off";
  const bool rebase_pending = archive_ && archive_->rebase_due && steady - archive_->rebase_due_since < kRebaseGrace;
  if (cov.live) state = "live";
  else if (archive_ && (rebase_pending || archive_->rebase_running || archive_->chain_starting())) state = "starting";
  else if (pitr_expected()) state = cov.from ? "stopped" : "not_started";
  auto t = [](const std::optional<SysTime>& x) { return x ? json::value(backup::format_time_utc(*x)) : json::value(nullptr); };
  json::array gaps;
  for (auto& g : cov.gaps)
    gaps.push_back(json::object{{"from", backup::format_time_utc(g.from)},
                                {"to", t(g.to)},
                                {"after", g.after_id},
                                {"before", g.before_id.empty() ? json::value(nullptr) : json::value(g.before_id)}});
  json::object o{{"archiving", state},
                 {"restorable_from", t(cov.from)},
                 {"restorable_to", t(cov.to)},
                 {"gaps", std::move(gaps)},
                 {"open_gap_s", nullptr}};
  if (auto* g = cov.open_gap())
    o["open_gap_s"] = std::max(0.001, std::chrono::duration<double>(now - g->from).count());
  if (archive_ && !cov.live && !archive_->ended_why.empty()) o["reason"] = archive_->ended_why;
  return o;
}

Status Daemon::pitr_check_time(SysTime to_time) const {
  std::vector<backup::CatalogEntry> list;
  {
    auto lk = store_->lock();
    if (auto l = backup::catalog_list(store_->raw()); l) list = std::move(*l);
  }
  auto cov = pitr_coverage(list);
  auto g = backup::gap_at(cov, to_time);
  if (!g) return ok_status();
  std::string hint = "restore to " + backup::format_time_utc(g->from) + " or earlier with backup " + g->after_id;
  if (g->to) hint += ", or to " + backup::format_time_utc(*g->to) + " or later with backup " + g->before_id;
  else hint += "; take a full backup (drctl backup) to start point-in-time coverage again";
  return make_error(Errc::refused,
                    "nothing can be restored to " + backup::format_time_utc(to_time) +
                        ": it falls in a gap in point-in-time coverage " + backup::describe_gap(*g) +
                        ", when no WAL was archived",
                    hint);
}

void Daemon::restore_onto_primary(const json::object& params, Reply reply) {
  if (!archive_) archive_ = std::make_shared<ArchiveRuntime>(*this);
  const std::string node = text_param(params, "node");
  const BackupConfig cfg = config_.backup;
  if (cfg.directory.empty())
    return reply(make_error(Errc::refused, "restoring onto the primary takes a safety backup first, and backups are not configured",
                            "set disaster_recovery.backup.directory in " + config_.file.string()));
  if (archive_->restore_running) return reply(make_error(Errc::conflict, "a restore onto " + node + " is already running"));
  if (!driver_ || !cluster_worker_) return reply(make_error(Errc::unavailable, "drd is not managing the cluster yet"));
  std::optional<SysTime> to_time;
  if (auto t = text_param(params, "to_time"); !t.empty()) {
    auto p = bkrt::parse_restore_time(t);
    if (!p) return reply(p.error());
    to_time = *p;
    if (auto st = pitr_check_time(*to_time); !st) return reply(st.error());
  }
  const std::string path = text_param(params, "path");
  std::optional<backup::CatalogEntry> entry;
  if (auto id = text_param(params, "id"); !id.empty()) {
    Result<backup::CatalogEntry> e = make_error(Errc::internal, "");
    {
      auto lk = store_->lock();
      e = backup::catalog_get(store_->raw(), id);
      if (e && backup::is_wal_segment(e->manifest)) e = backup::catalog_get(store_->raw(), e->manifest.parent);
    }
    if (!e) return reply(e.error());
    entry = e.value();
  } else if (fs::path(path).is_relative()) {
    return reply(make_error(Errc::invalid_argument, "parameter \"path\" must be an absolute path, got '" + path + "'"));
  }
  const fs::path db = config_.find_node(node)->sqlite_path;
  archive_->restore_running = true;
  log::event(spdlog::level::warn, "restore", {{"NODE", node}},
             "restoring onto the live primary " + node + ": fencing it, taking a safety backup");
  auto self = archive_;
  auto* driver = driver_.get();
  // 1. fence (cluster worker)
  cluster_worker_->post([self, driver, cfg, node, db, entry, path, to_time, reply]() mutable {
    Status fenced = driver->begin_primary_restore();
    self->post_result([self, driver, fenced, cfg, node, db, entry, path, to_time, reply]() mutable {
      const SysTime now = self->d.clock_.now();
      if (self->stopped) return;
      if (!fenced) {
        self->restore_running = false;
        return reply(make_error(fenced.error().code, "cannot fence " + node + " for the restore: " + fenced.error().message,
                                "nothing was changed"));
      }
      // 2. safety backup + restore (our worker)
      struct Out {
        std::optional<backup::Manifest> safety;
        Result<json::value> result = make_error(Errc::internal, "");
      };
      bool posted = self->worker->post([self, driver, cfg, node, db, entry, path, to_time, now, reply]() mutable {
        Out out;
        backup::NewBackup info;
        info.name = "before-restore";
        info.node = node;
        info.now = now;
        auto safety = bkrt::take_sqlite_backup(cfg, db, info, {}, nullptr);
        if (!safety) {
          out.result = make_error(safety.error().code, "the safety backup of " + node + " failed, so nothing was restored: " +
                                                           safety.error().message);
        } else {
          out.safety = safety.value();
          out.result = [&]() -> Result<json::value> {
            auto opened = bkrt::open_backup(cfg, entry, path, "restore", nullptr);
            if (!opened) return opened.error();
            backup::RestoreOptions opts;
            opts.allow_overwrite = true;
            opts.key = opened->key.ptr();
            const auto& ref = opened->ref;
            std::string id = ref.manifest ? ref.manifest->id : ref.data.filename().string();
            json::object o{{"id", id}, {"node", node}, {"restored_to", db.string()}};
            if (to_time) {
              auto r = backup::restore_sqlite_to_time(ref, db, *to_time, opts);
              if (!r) return r.error();
              o["integrity"] = r->restore.integrity;
              o["bytes"] = r->restore.bytes;
              o["applied_segments"] = r->applied_segments;
              if (r->restored_time) o["restored_time"] = backup::format_time_utc(*r->restored_time);
            } else {
              auto r = backup::restore_sqlite(ref, db, opts);
              if (!r) return r.error();
              o["integrity"] = r->integrity;
              o["bytes"] = r->bytes;
            }
            // Checked once more where applications will open it.
            auto ic = backup::sqlite_integrity_check(db);
            if (!ic) return ic.error();
            o["integrity"] = *ic;
            return json::value(std::move(o));
          }();
        }
        self->post_result([self, driver, node, out = std::move(out), reply]() mutable {
          if (self->stopped) return;
          self->finish_primary_restore(driver, node, std::move(out.safety), std::move(out.result), reply);
        });
      });
      if (!posted) {
        self->restore_running = false;
        reply(make_error(Errc::unavailable, "drd is stopping"));
      }
    });
  });
}

// 3. catalog the safety backup, restart replication (re-seeding the standbys) or lift the fence.
void Daemon::ArchiveRuntime::finish_primary_restore(ClusterDriver* driver, const std::string& node,
                                                    std::optional<backup::Manifest> safety, Result<json::value> result,
                                                    Reply reply) {
  if (safety) {
    auto lk = d.store_->lock();
    if (auto st = backup::catalog_insert(d.store_->raw(), *safety, d.config_.backup.directory); !st)
      spdlog::error("safety backup {} is complete but not in the catalog: {}", safety->id, st.error().message);
  }
  const bool replaced = result.ok();
  auto self = d.archive_;
  bool posted = d.cluster_worker_ && d.cluster_worker_->post([self, driver, node, replaced, safety, result, reply]() mutable {
    Status resumed = driver->end_primary_restore(replaced);
    self->post_result([self, node, replaced, safety, result = std::move(result), resumed, reply]() mutable {
      if (self->stopped) return;
      self->restore_running = false;
      const std::string safety_id = safety ? safety->id : "";
      if (!result) {
        log::event(spdlog::level::err, "restore", {{"NODE", node}},
                   "restore onto " + node + " failed, the primary is unchanged and back in service: " + result.error().message);
        Error e = result.error();
        if (!safety_id.empty()) e.hint = "the primary was not changed (safety backup " + safety_id + " was taken)";
        return reply(e);
      }
      auto& o = result->as_object();
      o["safety_backup"] = safety_id;
      o["replication"] = resumed ? "restarted; standbys are re-seeded from the restored primary"
                                 : "not restarted: " + resumed.error().message;
      log::event(spdlog::level::warn, "restore", {{"NODE", node}, {"BACKUP_ID", std::string(o.at("id").as_string())}},
                 "restored backup " + std::string(o.at("id").as_string()) + " onto the primary " + node +
                     " (safety backup " + safety_id + ")");
      reply(std::move(result));
    });
  });
  if (!posted) {
    restore_running = false;
    reply(make_error(Errc::unavailable, "drd is stopping"));
  }
}

}  // namespace drd
