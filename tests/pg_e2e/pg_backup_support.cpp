#include "tests/pg_e2e/pg_backup_support.hpp"

#include <sys/stat.h>

#include <catch2/catch.hpp>
#include <fstream>
#include <stdexcept>
#include <thread>

#include "common/process.hpp"
#include "daemon/backup/pg_internal.hpp"
#include "daemon/backup/manifest.hpp"
#include "daemon/backup/pg_backup.hpp"

namespace drd::test {

namespace fs = std::filesystem;
namespace json = boost::json;

fs::path make_backup_key(const fs::path& p) {
  std::ofstream(p) << "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n";
  ::chmod(p.c_str(), 0600);
  return p;
}

std::string backup_yaml(const fs::path& dir, const std::optional<fs::path>& key, const std::optional<fs::path>& spool,
                        int level) {
  std::string y = "  backup:\n    enabled: true\n    directory: " + dir.string() +
                  "\n    compression: { algorithm: zstd, level: " + std::to_string(level) + ", threads: 1 }\n";
  if (key) y += "    encryption: { key_file: " + key->string() + " }\n";
  if (spool) y += "    pg_wal_archive: { enabled: true, spool: " + spool->string() + " }\n";
  return y;
}

std::string take_backup(PgDrdFixture& f) {
  auto b = f.drctl({"--json", "backup"});
  if (b.exit_code != 0) throw std::runtime_error("drctl backup failed: " + b.err + "\n" + f.log());
  return std::string(json::parse(b.out).as_object().at("id").as_string());
}

json::value restorable_window(PgDrdFixture& f, const std::string& id) {
  auto r = f.drctl({"--json", "backups"});
  if (r.exit_code != 0) return nullptr;
  const json::value list = json::parse(r.out);
  for (auto& b : list.as_array())
    if (b.as_object().at("id").as_string() == id) return b.as_object().at("restorable");
  return nullptr;
}

json::value wait_window_past(PgDrdFixture& f, const std::string& id, const std::string& t, std::chrono::seconds timeout) {
  json::value w;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    w = restorable_window(f, id);
    if (w.is_object() && std::string(w.as_object().at("to").as_string()) > t) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  return w;
}

std::string time_between(PgCluster& pg, int i, const std::string& before, const std::string& after) {
  pg.exec(i, before);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const std::string t = backup::format_time_utc(std::chrono::system_clock::now());
  std::this_thread::sleep_for(std::chrono::milliseconds(1200));
  pg.exec(i, after);
  pg.exec(i, "SELECT pg_switch_wal()");
  return t;
}

std::optional<std::string> query_restored(const fs::path& target, const fs::path& sock_dir, const std::string& sql,
                                          std::string* why) {
  backup::PgTools tools;
  tools.bin_dir = PgCluster::bin_dir();
  tools.os_user = PgCluster::kOsUser;
  RealProcessRunner runner;
  fs::create_directories(sock_dir);
  ::chmod(sock_dir.c_str(), 0777);
  auto server = backup::pgi::ScratchServer::start(target, sock_dir, runner, tools);
  if (!server) {
    if (why) *why = server.error().message;
    return std::nullopt;
  }
  auto rows = (*server)->query("postgres", "postgres", sql);
  if (!rows) {
    if (why) *why = rows.error().message;
    return std::nullopt;
  }
  return *rows;
}

// A physical drd backup (unencrypted) of a separately initdb'd cluster: another system identifier.
fs::path foreign_backup(const fs::path& dir) {
  RealProcessRunner runner;
  const fs::path data = dir / "foreign";
  fs::create_directories(dir / "foreign-backups");
  ::chmod(dir.c_str(), 0777);
  auto run_as_pg = [&](std::vector<std::string> argv) {
    ProcessSpec s{std::move(argv)};
    s.user = PgCluster::kOsUser;
    s.timeout = std::chrono::seconds(60);
    auto o = runner.run(s);
    REQUIRE(o);
    INFO(o->output);
    REQUIRE(o->success());
  };
  run_as_pg({(PgCluster::bin_dir() / "initdb").string(), "-D", data.string(), "-A", "trust", "-U", "postgres",
             "--no-sync", "--wal-segsize=1", "--no-instructions", "-E", "UTF8", "--locale=C"});
  const int port = free_loopback_port();
  std::ofstream(data / "postgresql.conf", std::ios::app)
      << "\nport = " << port << "\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '" << dir.string()
      << "'\nfsync = off\nshared_buffers = 16MB\nlogging_collector = off\n";
  run_as_pg({(PgCluster::bin_dir() / "pg_ctl").string(), "start", "-w", "-D", data.string(), "-l",
             (dir / "foreign.log").string()});
  struct StopOnExit {  // also when a REQUIRE below throws
    RealProcessRunner& runner;
    fs::path data;
    ~StopOnExit() {
      ProcessSpec s{{(PgCluster::bin_dir() / "pg_ctl").string(), "stop", "-w", "-m", "immediate", "-D", data.string()}};
      s.user = PgCluster::kOsUser;
      s.timeout = std::chrono::seconds(30);
      (void)runner.run(s);
    }
  } stop_server{runner, data};
  backup::PgTools t;
  t.bin_dir = PgCluster::bin_dir();
  t.os_user = PgCluster::kOsUser;
  t.conninfo = "host=127.0.0.1 port=" + std::to_string(port) + " user=postgres dbname=postgres";
  backup::BackupSettings s;
  s.directory = dir / "foreign-backups";
  s.threads = 1;
  backup::NewBackup info;
  info.node = "elsewhere";
  auto m = backup::backup_pg_physical(s, runner, t, info);
  INFO((m ? std::string() : m.error().message));
  REQUIRE(m);
  return s.directory / m->data_file;
}

std::vector<std::string> leftovers(const fs::path& data_dir) {
  std::vector<std::string> out;
  const std::string prefix = data_dir.filename().string() + ".drd-";
  for (auto& e : fs::directory_iterator(data_dir.parent_path()))
    if (e.path().filename().string().rfind(prefix, 0) == 0) out.push_back(e.path().filename().string());
  return out;
}

}  // namespace drd::test
