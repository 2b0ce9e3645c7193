// Man pages and bash completion: they render cleanly and cover every option,
// command and configuration key the programs actually have.
#include <catch2/catch.hpp>

#include <fstream>
#include <map>
#include <regex>
#include <set>

#include "tests/service/service_helpers.hpp"

using namespace drd::test;
namespace fs = std::filesystem;

namespace {

// The commands interface.md promises.
const std::vector<std::string> kInterfaceCommands = {
    "status", "test", "backup", "backups", "verify", "restore", "failover", "switchover", "history",
    "start-monitoring", "stop-monitoring", "enable-auto-failover", "disable-auto-failover", "health", "alerts",
    "primary", "rejoin", "reload"};

// Every key the configuration loader knows (common/config*.cpp).
const std::vector<std::string> kConfigKeys = {
    "disaster_recovery", "enabled", "state_dir", "control", "socket", "admin_group", "socket_group", "current_link",
    "databases", "name", "type", "priority", "url", "password_file", "data_dir", "bin_dir", "os_user", "no_failover",
    "monitoring", "interval", "timeout", "failure_threshold", "quick_check_interval", "history_retention",
    "raw_retention", "failover", "auto", "max_lag", "synchronous", "synchronous_degrade_after", "backup", "directory",
    "schedule", "compression", "algorithm", "level", "threads", "encryption", "key_file", "retention", "keep_last",
    "keep_daily", "keep_weekly", "keep_monthly", "prefer_standby", "verify_schedule", "incremental", "segment_size", "segment_interval", "alerts", "channels", "command",
    "to", "retries", "rules", "metric", "op", "threshold", "for", "severity", "nodes", "repeat", "http", "listen",
    "token_file"};

fs::path man_page(const std::string& name) { return source_dir() / "packaging/man" / name; }

// roff source with escapes undone, so words can be searched: \- -> -, font changes dropped.
std::string man_text(const std::string& name) {
  std::string s = read_file(man_page(name));
  s = std::regex_replace(s, std::regex(R"(\\f[BIRP])"), "");
  s = std::regex_replace(s, std::regex(R"(\\-)"), "-");
  s = std::regex_replace(s, std::regex(R"(\\\(..)"), " ");
  return s;
}

std::set<std::string> long_options(const std::string& help) {
  std::set<std::string> out;
  std::regex opt("--[a-z][a-z-]*");
  for (auto it = std::sregex_iterator(help.begin(), help.end(), opt); it != std::sregex_iterator(); ++it)
    out.insert(it->str());
  return out;
}

// Runs drctl's completion for `line` (the word being completed is the last, maybe empty).
std::vector<std::string> complete(const std::string& words_before, const std::string& current,
                                  const std::map<std::string, std::string>& env = {}) {
  const fs::path file = source_dir() / "packaging/completion/drctl";
  std::string script = "source \"$0\" || exit 9\n"
                       "complete -p drctl >/dev/null || exit 8\n"
                       "COMP_WORDS=(drctl " + words_before + " '" + current + "')\n"
                       "COMP_CWORD=$((${#COMP_WORDS[@]} - 1))\n"
                       "COMP_LINE=\"${COMP_WORDS[*]}\"; COMP_POINT=${#COMP_LINE}\n"
                       "_drctl drctl '" + current + "'\n"
                       "if ((${#COMPREPLY[@]})); then printf '%s\\n' \"${COMPREPLY[@]}\"; fi\n";
  auto r = run({"bash", "--norc", "--noprofile", "-c", script, file.string()}, env);
  INFO("completion of '" << words_before << " " << current << "': " << r.err);
  REQUIRE(r.exit_code == 0);
  return lines(r.out);
}

bool contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

}  // namespace

TEST_CASE("man pages render with man -l without a single warning", "[service][man]") {
  for (const char* page : {"drd.8", "drctl.8", "drd.yaml.5"}) {
    INFO(page);
    REQUIRE(fs::exists(man_page(page)));
    auto r = run({"sh", "-c", "MANWIDTH=80 man --warnings -l \"$0\" 2>&1 >/dev/null; echo \"rc=$?\"",
                  man_page(page).string()});
    CHECK(r.out == "rc=0\n");
    auto text = run({"sh", "-c", "MANWIDTH=80 man -l \"$0\" 2>/dev/null", man_page(page).string()});
    CHECK(text.out.find("NAME") != std::string::npos);
    CHECK(text.out.find("SEE ALSO") != std::string::npos);
  }
}

TEST_CASE("drd(8) documents every option drd --help lists, the signals, exit codes and journald fields", "[service][man]") {
  auto help = run({bin("drd"), "--help"});
  REQUIRE(help.exit_code == 0);
  const std::string page = man_text("drd.8");
  auto opts = long_options(help.out);
  REQUIRE(opts.count("--check-config") == 1);
  for (auto& o : opts) {
    INFO(o);
    CHECK(has_word(page, o));
  }
  for (const char* w : {"SIGHUP", "SIGTERM", "READY=1", "WATCHDOG=1", "STOPPING=1", "STATUS=", "EXIT STATUS", "FILES",
                        "EVENT", "NODE", "TERM", "FROM", "MODE", "failover", "reload_refused", "journalctl -u drd EVENT=failover",
                        "/etc/drd/drd.yaml", "/run/drd/drd.sock", "/var/lib/drd/state.db", "CAP_SETUID", "ReadWritePaths"}) {
    INFO(w);
    CHECK(page.find(w) != std::string::npos);
  }
}

TEST_CASE("drctl(8) documents every command and global option, exit codes and DRD_SOCKET", "[service][man]") {
  const std::string page = man_text("drctl.8");
  auto commands = drctl_commands_from_help();
  commands.insert(commands.end(), kInterfaceCommands.begin(), kInterfaceCommands.end());
  for (auto& c : commands) {
    INFO(c);
    CHECK(has_word(page, c));
  }
  auto help = run({bin("drctl"), "--help"});
  for (auto& o : long_options(help.out)) {
    INFO(o);
    CHECK(has_word(page, o));
  }
  for (const char* o : {"--force", "--node", "--target", "--to-time", "--name", "--since", "--url", "--limit", "--reclone",
                        "--kind", "DRD_SOCKET", "EXIT STATUS", "/run/drd/drd.sock"}) {
    INFO(o);
    CHECK(has_word(page, o));
  }
}

TEST_CASE("drd.yaml(5) and the packaged /etc/drd/drd.yaml explain every configuration key", "[service][man]") {
  const std::string page = man_text("drd.yaml.5");
  const std::string packaged = read_file(source_dir() / "packaging/drd.yaml.packaged");
  for (auto& k : kConfigKeys) {
    INFO(k);
    CHECK(has_word(page, k));
    CHECK(std::regex_search(packaged, std::regex("(^|[\\s{,#])" + k + ":")));
  }
}

TEST_CASE("bash completion offers every drctl command and the options of each", "[service][completion]") {
  if (!fs::exists(source_dir() / "packaging/completion/drctl")) {
    WARN("packaging/completion/drctl not written yet; completion not checked");
    return;
  }
  auto all = complete("", "");
  auto commands = drctl_commands_from_help();
  commands.insert(commands.end(), kInterfaceCommands.begin(), kInterfaceCommands.end());
  for (auto& c : commands) {
    INFO(c);
    CHECK(contains(all, c));
  }
  auto st = complete("", "st");
  CHECK(contains(st, "status"));
  CHECK(contains(st, "start-monitoring"));
  CHECK_FALSE(contains(st, "backup"));

  auto globals = complete("", "--");
  for (const char* o : {"--socket", "--json", "--config", "--lang", "--timeout"}) {
    INFO(o);
    CHECK(contains(globals, o));
  }
  auto backup = complete("backup", "--");
  for (const char* o : {"--name", "--node", "--json"}) {
    INFO(o);
    CHECK(contains(backup, o));
  }
  auto restore = complete("restore 12", "--");
  for (const char* o : {"--node", "--target", "--to-time", "--force"}) {
    INFO(o);
    CHECK(contains(restore, o));
  }
  CHECK(contains(complete("failover secondary1", "--"), "--force"));
  auto lang = complete("status --lang", "");
  CHECK(contains(lang, "en"));
  CHECK(contains(lang, "zh"));
}

TEST_CASE("bash completion offers node names from the config file and backup ids only when drd answers",
          "[service][completion]") {
  TempDir dir;
  const fs::path cfg = dir / "drd.yaml";
  std::ofstream(cfg) << "disaster_recovery:\n"
                        "  enabled: true\n"
                        "  databases:\n"
                        "    # the image store\n"
                        "    primary:    { name: primary, type: primary, priority: 0, url: \"sqlite:///a.db\" }\n"
                        "    secondary1:\n"
                        "      name: secondary1\n"
                        "      type: secondary\n"
                        "    replica-b: { name: replica-b, type: secondary, priority: 2, url: \"sqlite:///c.db\" }\n"
                        "  monitoring:\n"
                        "    interval: 1s\n";
  const std::string with_cfg = "--config " + cfg.string();
  auto nodes = complete(with_cfg + " failover", "");
  CHECK(nodes == std::vector<std::string>{"primary", "secondary1", "replica-b"});  // not name/type/monitoring keys
  CHECK(complete(with_cfg + " switchover", "sec") == std::vector<std::string>{"secondary1"});
  CHECK(complete(with_cfg + " rejoin", "re") == std::vector<std::string>{"replica-b"});
  CHECK(complete(with_cfg + " backup --node", "p") == std::vector<std::string>{"primary"});
  CHECK(complete(with_cfg + " health --node", "") == std::vector<std::string>{"primary", "secondary1", "replica-b"});
  // No --config: $DRD_CONFIG names the file.
  CHECK(complete("clone", "secondary", {{"DRD_CONFIG", cfg.string()}}) == std::vector<std::string>{"secondary1"});
  // Only the node is completed: nothing after it.
  CHECK(complete(with_cfg + " failover secondary1", "").empty());
  // No config file: no names, no error.
  CHECK(complete("--config " + (dir / "missing.yaml").string() + " failover", "").empty());

  // Backup ids come from drd through its socket; with nothing listening, quietly only files.
  const fs::path backup_file = dir / "b1.drdbak";
  std::ofstream(backup_file) << "x";
  auto ids = complete("--socket " + (dir / "nothing.sock").string() + " verify", (dir / "b").string());
  CHECK(ids == std::vector<std::string>{backup_file.string()});
}

TEST_CASE("README states the failover time per profile with figures docs/benchmarks.md measured", "[service][docs]") {
  const std::string readme = read_file(source_dir() / "README.md");
  const std::string bench = read_file(source_dir() / "docs/benchmarks.md");
  CHECK(readme.find("well under a second") == std::string::npos);
  CHECK(readme.find("within a second") == std::string::npos);
  // Every "N.NN s" figure the README gives for failover is a figure of the benchmarks page.
  std::regex figure("(?:failover|promotes)[^\n]*?([0-9]+\\.[0-9]+) s");
  int found = 0;
  for (auto it = std::sregex_iterator(readme.begin(), readme.end(), figure); it != std::sregex_iterator(); ++it) {
    const std::string value = (*it)[1].str();
    INFO(value);
    CHECK(bench.find("| " + value + " s |") != std::string::npos);
    ++found;
  }
  CHECK(found >= 1);
  CHECK(readme.find("default profile") != std::string::npos);
  CHECK(readme.find("100 ms") != std::string::npos);
}
