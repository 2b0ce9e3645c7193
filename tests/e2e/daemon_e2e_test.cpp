// drd and drctl as real processes on real SQLite files.
#include <catch2/catch.hpp>
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "tests/e2e/drd_fixture.hpp"

using namespace drd::test;
namespace json = boost::json;

TEST_CASE("drd starts, elects the configured primary and reports every node healthy", "[e2e]") {
  DrdFixture f;
  f.start();
  // Under a loaded machine a first probe may time out; health settles within a few intervals.
  CHECK(eventually([&] {
    auto st = f.call("status");  // kept alive while its nodes are read
    for (auto& n : st.at("nodes").as_array())
      if (!n.at("healthy").as_bool()) return false;
    return true;
  }));
  auto st = f.call("status").as_object();
  CHECK(st.at("primary").as_string() == "primary");
  CHECK(st.at("term").as_int64() == 1);
  CHECK(st.at("enabled").as_bool());
  CHECK(st.at("monitoring").as_bool());
  CHECK(st.at("auto_failover").as_bool());
  CHECK(st.at("failure_threshold").as_int64() == 3);
  auto& nodes = st.at("nodes").as_array();
  REQUIRE(nodes.size() == 3);
  for (auto& n : nodes) {
    INFO(json::serialize(n));
    CHECK(n.at("healthy").as_bool());
    CHECK(n.at("connection").as_string() == "ok");
    CHECK(n.at("engine").as_string() == "sqlite");
    CHECK(n.at("response_time_ms").to_number<double>() >= 0);
  }
  CHECK(nodes[0].at("role").as_string() == "primary");
  CHECK(nodes[1].at("role").as_string() == "standby");
  CHECK(f.call("primary").at("name").as_string() == "primary");
}

TEST_CASE("test probes every node now, a broken standby goes down and is re-seeded when it can be", "[e2e]") {
  DrdFixture f;
  f.start();
  auto t = f.call("test").as_object();
  for (auto& n : t.at("nodes").as_array()) CHECK(n.at("ok").as_bool());

  // A directory where the standby file was: unreadable and impossible to re-seed over.
  std::filesystem::remove(f.db("secondary2"));
  std::filesystem::create_directories(f.db("secondary2"));
  CHECK(eventually([&] { return f.node_status("secondary2").at("role").as_string() == "down"; }));
  t = f.call("test").as_object();
  auto& s2 = t.at("nodes").as_array()[2].as_object();
  CHECK_FALSE(s2.at("ok").as_bool());
  CHECK_THAT(std::string(s2.at("error").as_string()), Catch::Contains("secondary2.db"));
  CHECK(f.call("status").at("failover_state").as_string() == "degraded");
  CHECK(f.call("status").at("primary").as_string() == "primary");  // a standby's loss changes nothing else

  // Once the path is free again, drd seeds a fresh copy and the node comes back.
  std::filesystem::remove(f.db("secondary2"));
  CHECK(eventually([&] { return f.node_status("secondary2").at("healthy").as_bool(); }));
  CHECK(eventually([&] { return f.call("status").at("failover_state").as_string() == "normal"; }));
  CHECK(count_rows(f.db("secondary2")) == count_rows(f.db("primary")));
}

TEST_CASE("SIGTERM stops drd cleanly and a restart keeps the recorded primary", "[e2e]") {
  DrdFixture f;
  f.start();
  CHECK(f.call("status").at("term").as_int64() == 1);
  CHECK(f.stop(SIGTERM) == 0);
  CHECK_FALSE(std::filesystem::exists(f.socket()));
  CHECK_THAT(f.log(), Catch::Contains("drd stopped"));

  f.start();
  auto st = f.call("status");
  CHECK(st.at("primary").as_string() == "primary");
  CHECK(st.at("term").as_int64() == 1);  // no new election: no flapping
  CHECK(f.stop(SIGINT) == 0);
}

TEST_CASE("switches persist: monitoring and auto-failover survive a restart", "[e2e]") {
  DrdFixture f;
  f.start();
  CHECK(f.call("auto_failover.disable").at("auto_failover").as_bool() == false);
  CHECK(f.call("monitoring.stop").at("monitoring").as_bool() == false);
  f.stop();
  f.start();
  auto st = f.call("status");
  CHECK(st.at("auto_failover").as_bool() == false);
  CHECK(st.at("monitoring").as_bool() == false);
  CHECK(f.call("monitoring.start").at("monitoring").as_bool());
  CHECK(f.call("auto_failover.enable").at("auto_failover").as_bool());
  auto audit = f.call("audit").as_array();
  REQUIRE(audit.size() >= 4);
  CHECK(audit[0].at("method").as_string() == "auto_failover.enable");
  CHECK(audit[0].at("uid").as_int64() == static_cast<std::int64_t>(::getuid()));
}

TEST_CASE("reload applies a good config and refuses a bad one, keeping the old", "[e2e]") {
  DrdFixture f;
  f.start();
  f.opts.threshold = 5;
  f.write_config();
  CHECK(f.call("reload").at("reloaded").as_bool());
  CHECK(f.call("status").at("failure_threshold").as_int64() == 5);

  std::ofstream(f.config_path(), std::ios::app) << "  monitoring_typo: 1\n";
  auto e = f.call_error("reload");
  CHECK(e.code == drd::rpc::invalid_params);
  CHECK_THAT(e.message, Catch::Contains("drd.yaml:"));
  CHECK_THAT(e.message, Catch::Contains("monitoring_typo"));
  CHECK(f.call("status").at("failure_threshold").as_int64() == 5);

  // SIGHUP with the same bad file: refused, logged, still serving.
  f.process()->signal(SIGHUP);
  CHECK(eventually([&] { return f.log().find("SIGHUP reload") != std::string::npos; }));
  CHECK(f.call("status").at("failure_threshold").as_int64() == 5);

  // A change that needs a restart is refused with a hint.
  f.opts.standbys = 1;
  f.write_config();
  auto e2 = f.call_error("reload");
  CHECK_THAT(e2.message, Catch::Contains("set of databases changed"));
}

TEST_CASE("malformed requests get JSON-RPC errors and never hurt the daemon", "[e2e][rpc]") {
  DrdFixture f;
  f.start();
  auto raw = [&](const std::string& payload) {
    return run({"python3", "-c",
                "import socket,sys\n"
                "s=socket.socket(socket.AF_UNIX)\n"
                "s.connect(sys.argv[1])\n"
                "s.sendall(sys.argv[2].encode()+b'\\n')\n"
                "print(s.makefile().readline().strip())",
                f.socket().string(), payload});
  };
  CHECK_THAT(raw("not json").out, Catch::Contains("-32700"));
  CHECK_THAT(raw("[1,2]").out, Catch::Contains("-32600"));
  CHECK_THAT(raw(R"({"jsonrpc":"2.0","id":1,"method":"frobnicate"})").out, Catch::Contains("-32601"));
  CHECK_THAT(raw(R"({"jsonrpc":"2.0","id":1,"method":"history","params":{"limit":"x"}})").out, Catch::Contains("-32602"));
  CHECK_THAT(raw(R"({"jsonrpc":"2.0","id":1,"method":"failover","params":{"node":"nope"}})").out,
             Catch::Contains("no node named"));
  // One rule for every parameter: a wrong type is an error naming it, never read as false.
  auto wrong_force = raw(R"({"jsonrpc":"2.0","id":1,"method":"failover","params":{"node":"secondary1","force":"yes"}})").out;
  CHECK_THAT(wrong_force, Catch::Contains("-32602"));
  CHECK_THAT(wrong_force, Catch::Contains(R"(parameter \"force\" must be true or false)"));
  auto wrong_progress = raw(R"({"jsonrpc":"2.0","id":1,"method":"status","params":{"progress":1}})").out;
  CHECK_THAT(wrong_progress, Catch::Contains("-32602"));
  CHECK_THAT(wrong_progress, Catch::Contains("progress"));
  CHECK(f.call("status").at("primary").as_string() == "primary");  // nothing changed hands
  // Over 1 MiB without a newline: refused and disconnected.
  auto big = run({"python3", "-c",
                  "import socket,sys\n"
                  "s=socket.socket(socket.AF_UNIX)\n"
                  "s.connect(sys.argv[1])\n"
                  "try:\n"
                  "  s.sendall(b'x'*(2<<20))\n"
                  "except OSError: pass\n"
                  "print(s.makefile().readline().strip())",
                  f.socket().string()});
  CHECK_THAT(big.out, Catch::Contains("larger than 1 MiB"));
  // A client that connects and says nothing does not block others.
  Background idle({"python3", "-c",
                   "import socket,sys,time\n"
                   "s=socket.socket(socket.AF_UNIX)\n"
                   "s.connect(sys.argv[1])\n"
                   "time.sleep(30)",
                   f.socket().string()},
                  f.dir() / "idle.log");
  CHECK(f.call("status").at("primary").as_string() == "primary");
}

TEST_CASE("drd refuses a bad config at start with FILE:LINE:COL and exit 2", "[e2e][config]") {
  DrdFixture f;
  std::ofstream(f.config_path(), std::ios::app) << "  failover_typo: yes\n";
  auto r = run({bin("drd"), "--config", f.config_path().string(), "--check-config"});
  CHECK(r.exit_code == 2);
  CHECK_THAT(r.err, Catch::Contains(f.config_path().string() + ":"));
  CHECK_THAT(r.err, Catch::Contains("failover_typo"));
  auto start = run({bin("drd"), "--config", f.config_path().string(), "--foreground"});
  CHECK(start.exit_code == 2);
  CHECK_FALSE(std::filesystem::exists(f.socket()));
}

TEST_CASE("a second drd on the same socket is refused", "[e2e]") {
  DrdFixture f;
  f.start();
  auto r = run({bin("drd"), "--config", f.config_path().string(), "--foreground"}, {}, std::chrono::seconds(15));
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.err, Catch::Contains("another drd is already serving"));
  CHECK(f.call("ping").at("pong").as_bool());
}

TEST_CASE("test --node probes only that node, and --json rows carry each node's role", "[e2e][test-cmd]") {
  DrdFixture f;
  f.start();
  auto one = f.drctl({"test", "--node", "secondary1"});
  INFO(one.out << one.err);
  CHECK(one.exit_code == 0);
  CHECK_THAT(one.out, Catch::Contains("secondary1"));
  CHECK(one.out.find("primary") == std::string::npos);
  CHECK(one.out.find("secondary2") == std::string::npos);

  auto js = f.drctl({"--json", "test", "--node", "secondary1"});
  INFO(js.out << js.err);
  REQUIRE(js.exit_code == 0);
  auto rows = json::parse(js.out).at("nodes").as_array();
  REQUIRE(rows.size() == 1);
  CHECK(rows[0].at("name").as_string() == "secondary1");
  CHECK(rows[0].at("role").as_string() == "standby");

  auto all = f.drctl({"--json", "test"});
  REQUIRE(all.exit_code == 0);
  auto all_rows = json::parse(all.out).at("nodes").as_array();
  REQUIRE(all_rows.size() == 3);
  CHECK(all_rows[0].at("role").as_string() == "primary");
  CHECK(all_rows[1].at("role").as_string() == "standby");

  auto bad = f.drctl({"test", "--node", "nosuchnode"});
  CHECK(bad.exit_code == 1);
  CHECK_THAT(bad.err, Catch::Contains("nosuchnode"));
}

TEST_CASE("primary --url prints an SQLite primary's absolute path", "[e2e][primary-url]") {
  DrdFixture f;  // the config says sqlite:///data/primary.db, relative to its folder
  f.start();
  auto r = f.drctl({"primary", "--url"});
  INFO(r.out << r.err);
  CHECK(r.exit_code == 0);
  CHECK(r.out == "sqlite:///" + f.db("primary").string() + "\n");
  CHECK(f.node_status("secondary1").at("url").as_string() == "sqlite:///" + f.db("secondary1").string());
}

TEST_CASE("monitoring stopped: status says nothing is checked and how old each verdict is", "[e2e][status]") {
  DrdFixture f;
  f.start();
  CHECK(f.node_status("primary").at("health").as_string() == "up");
  CHECK(f.node_status("primary").at("last_probe_age_ms").as_int64() >= 0);
  CHECK(f.call("monitoring.stop").at("monitoring").as_bool() == false);
  // The primary goes away while nothing checks it: status must not call it healthy.
  std::filesystem::rename(f.db("primary"), f.dir() / "lost.db");
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  auto p = f.node_status("primary");
  CHECK(p.at("health").as_string() == "stale");
  CHECK(p.at("stale").as_bool());
  CHECK(p.at("last_probe_age_ms").as_int64() >= 1000);
  auto r = f.drctl({"status"});
  CHECK(r.exit_code == 0);
  CHECK_THAT(r.out, Catch::Contains("primary: stale (monitoring stopped: nothing is checked; last probe 1s ago)") ||
                        Catch::Contains("primary: stale (monitoring stopped: nothing is checked; last probe 2s ago)"));
  CHECK_THAT(r.out, Catch::Contains("Overall: unknown (monitoring stopped"));
  CHECK_THAT(r.out, !Catch::Contains("primary: healthy"));
  CHECK(f.call("monitoring.start").at("monitoring").as_bool());
  CHECK(f.node_status("primary").at("health").as_string() != "stale");
  CHECK_FALSE(f.node_status("primary").contains("stale"));
}

TEST_CASE("standbys drd seeds at start leave no failed sample in the health history", "[e2e][health]") {
  DrdFixture f;
  // First start on a fresh machine: only the primary exists; drd seeds both standbys.
  std::filesystem::remove(f.db("secondary1"));
  std::filesystem::remove(f.db("secondary2"));
  f.start();
  CHECK(eventually([&] {
    return f.node_status("secondary1").at("healthy").as_bool() && f.node_status("secondary2").at("healthy").as_bool();
  }));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // a few more rounds of samples
  auto h = f.call("health").as_object();
  for (auto& n : h.at("nodes").as_array()) {
    INFO(boost::json::serialize(n));
    CHECK(n.at("samples").as_int64() > 0);
    CHECK(n.at("failures").as_int64() == 0);
    CHECK(n.at("outages").as_array().empty());
  }
}
