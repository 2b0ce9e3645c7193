// Pure helpers of the PostgreSQL engine, table-driven.
#include <catch2/catch.hpp>

#include "daemon/engines/postgres/postgres_util.hpp"

using namespace drd;
using namespace drd::pg;

TEST_CASE("LSNs parse and format", "[pg][lsn]") {
  struct Row { const char* text; std::uint64_t value; };
  for (auto r : {Row{"0/0", 0}, Row{"0/1", 1}, Row{"16/B374D848", 0x16B374D848ull},
                 Row{"FFFFFFFF/FFFFFFFF", ~0ull}, Row{"1/0", 1ull << 32}, Row{"a/ff", 0xA000000FFull}}) {
    INFO(r.text);
    auto v = parse_lsn(r.text);
    REQUIRE(v);
    CHECK(*v == r.value);
  }
  CHECK(format_lsn(0x16B374D848ull) == "16/B374D848");
  CHECK(format_lsn(0) == "0/0");
  for (auto bad : {"", "/", "0/", "/0", "16B374D848", "1/2/3", "G/0", "123456789/0", " 0/0", "0/0 "}) {
    INFO(bad);
    CHECK_FALSE(parse_lsn(bad));
  }
}

TEST_CASE("conninfo values are quoted the libpq way", "[pg][conninfo]") {
  CHECK(quote_conninfo_value("plain") == "'plain'");
  CHECK(quote_conninfo_value("it's") == "'it\\'s'");
  CHECK(quote_conninfo_value("a\\b") == "'a\\\\b'");
  CHECK(sql_literal("host='x' it's") == "'host=''x'' it''s'");
  // Round trip through libpq's own parser.
  ConnParams p{{"host", "127.0.0.1"}, {"password", "p'w\\d x"}};
  auto back = parse_conninfo(to_conninfo(p));
  REQUIRE(back);
  CHECK(param(back.value(), "password") == std::optional<std::string>("p'w\\d x"));
}

TEST_CASE("primary_conninfo drops dbname and the password unless the URL has one", "[pg][conninfo]") {
  NodeConfig primary;
  primary.name = "p";
  primary.pg_conninfo = "postgresql://repl@10.0.0.5:5433/appdb?sslmode=require&application_name=x";
  auto c = primary_conninfo_for(primary, "standby1");
  REQUIRE(c);
  auto parsed = parse_conninfo(c.value());
  REQUIRE(parsed);
  CHECK(param(parsed.value(), "host") == std::optional<std::string>("10.0.0.5"));
  CHECK(param(parsed.value(), "port") == std::optional<std::string>("5433"));
  CHECK(param(parsed.value(), "user") == std::optional<std::string>("repl"));
  CHECK(param(parsed.value(), "sslmode") == std::optional<std::string>("require"));
  CHECK(param(parsed.value(), "application_name") == std::optional<std::string>("standby1"));
  CHECK_FALSE(param(parsed.value(), "dbname"));
  CHECK_FALSE(param(parsed.value(), "password"));

  primary.pg_conninfo = "postgresql://repl:s3cr3t@10.0.0.5:5433/appdb";
  auto with_pw = parse_conninfo(primary_conninfo_for(primary, "s").value()).value();
  CHECK(param(with_pw, "password") == std::optional<std::string>("s3cr3t"));
  // Tools never get it on the command line.
  auto tool = tool_conninfo_for(primary, "drd_rewind");
  REQUIRE(tool);
  CHECK(tool->find("s3cr3t") == std::string::npos);
  CHECK(param(parse_conninfo(tool.value()).value(), "dbname") == std::optional<std::string>("appdb"));
}

TEST_CASE("primary_conninfo and tool conninfo keep the TLS settings", "[pg][conninfo][tls]") {
  NodeConfig primary;
  primary.pg_conninfo =
      "postgresql://drd:pw@db1.example:5432/app?sslmode=verify-full&sslrootcert=/etc/drd/ca.crt&sslcert=/etc/drd/c.crt"
      "&sslkey=/etc/drd/c.key";
  for (auto text : {primary_conninfo_for(primary, "s1").value(), tool_conninfo_for(primary, "drd_rewind").value()}) {
    auto p = parse_conninfo(text).value();
    CHECK(param(p, "sslmode") == std::optional<std::string>("verify-full"));
    CHECK(param(p, "sslrootcert") == std::optional<std::string>("/etc/drd/ca.crt"));
    CHECK(param(p, "sslcert") == std::optional<std::string>("/etc/drd/c.crt"));
    CHECK(param(p, "sslkey") == std::optional<std::string>("/etc/drd/c.key"));
    CHECK(param(p, "host") == std::optional<std::string>("db1.example"));
  }
}

TEST_CASE("connection errors that are configuration problems are told from failures", "[pg][tls]") {
  struct Row { const char* msg; bool config; };
  const Row rows[] = {
      {"connection to server at \"127.0.0.1\", port 5432 failed: SSL error: certificate verify failed", true},
      {"connection to server at \"127.0.0.1\", port 5432 failed: server certificate for \"localhost\" does not match host name \"db1\"", true},
      {"root certificate file \"/x/ca.crt\" does not exist\nEither provide the file or change sslmode", true},
      {"connection to server at \"127.0.0.1\", port 5432 failed: FATAL:  password authentication failed for user \"drd\"", true},
      {"connection to server at \"127.0.0.1\", port 5432 failed: FATAL:  no pg_hba.conf entry for host \"127.0.0.1\", user \"drd\", database \"postgres\", no encryption", true},
      {"connection to server at \"127.0.0.1\", port 5432 failed: fe_sendauth: no password supplied", true},
      {"connection to server at \"127.0.0.1\", port 5432 failed: server does not support SSL, but SSL was required", true},
      {"connection to server at \"127.0.0.1\", port 5432 failed: FATAL:  role \"drd\" does not exist", true},
      {"connection to server at \"127.0.0.1\", port 5432 failed: Connection refused\n\tIs the server running on that host", false},
      {"connection timed out (no answer from the server in time)", false},
      {"connection to server at \"127.0.0.1\", port 5432 failed: FATAL:  the database system is starting up", false},
      {"connection to server at \"127.0.0.1\", port 5432 failed: FATAL:  database \"x\" does not exist", false},
      {"server closed the connection unexpectedly", false},
  };
  for (auto& r : rows) {
    INFO(r.msg);
    CHECK(config_refusal(r.msg).has_value() == r.config);
  }
}

TEST_CASE("url_password finds the password in URLs and conninfo strings", "[pg][secrets]") {
  struct Row { const char* url; const char* pw; };
  for (auto r : {Row{"postgresql://u:pw1@h/db", "pw1"}, Row{"postgresql://u@h/db", nullptr},
                 Row{"host=h user=u password='pw 2'", "pw 2"}, Row{"postgresql://u:p%40ss@h/db", "p@ss"}}) {
    INFO(r.url);
    NodeConfig n;
    n.pg_conninfo = r.url;
    auto p = url_password(n);
    if (r.pw) CHECK(p == std::optional<std::string>(r.pw));
    else CHECK_FALSE(p);
  }
}

TEST_CASE("bad conninfo errors do not echo the password", "[pg][secrets]") {
  auto r = parse_conninfo("postgresql://u:topsecret@h:notaport/db?bogus_option=1");
  REQUIRE_FALSE(r);
  CHECK(r.error().message.find("topsecret") == std::string::npos);
  CHECK(r.error().code == Errc::invalid_argument);
}

TEST_CASE("scrub removes secrets and URL passwords", "[pg][secrets]") {
  CHECK(scrub("password authentication failed hunter2", {"hunter2", ""}) ==
        "password authentication failed ***");
  CHECK(scrub("see postgresql://u:hunter2@h/db", {}).find("hunter2") == std::string::npos);
}

TEST_CASE("postgresql.auto.conf editing keeps other settings", "[pg][autoconf]") {
  const std::string text =
      "# Do not edit this file manually!\n"
      "primary_conninfo = 'host=old'\n"
      "port = '5433'\n"
      "PRIMARY_CONNINFO='host=older'\n"
      "primary_conninfo_extra = 'x'\n";
  auto out = set_auto_conf(text, "primary_conninfo", std::string("host='new' port=5"));
  CHECK(out ==
        "# Do not edit this file manually!\n"
        "port = '5433'\n"
        "primary_conninfo_extra = 'x'\n"
        "primary_conninfo = 'host=''new'' port=5'\n");
  auto removed = set_auto_conf("a = 1\nprimary_conninfo = 'x'", "primary_conninfo", std::nullopt);
  CHECK(removed == "a = 1\n");
  CHECK(set_auto_conf("", "k", std::string("v")) == "k = 'v'\n");
}

TEST_CASE("pg_rewind refusals for missing wal_log_hints are recognised", "[pg][rewind]") {
  CHECK(rewind_impossible(
      "pg_rewind: error: target server needs to use either data checksums or \"wal_log_hints = on\""));
  CHECK_FALSE(rewind_impossible("pg_rewind: error: could not connect to server"));
  CHECK(whole_seconds(1) == 1);
  CHECK(whole_seconds(0) == 1);
  CHECK(whole_seconds(1000) == 1);
  CHECK(whole_seconds(1001) == 2);
}

TEST_CASE("pg_rewind failures are told apart: no hints, WAL gone, anything else", "[pg][rewind]") {
  struct Row {
    const char* output;
    RewindFailure kind;
  };
  const Row rows[] = {
      {"pg_rewind: error: target server needs to use either data checksums or \"wal_log_hints = on\"",
       RewindFailure::no_hints},
      {"pg_rewind: servers diverged at WAL location 0/3000000 on timeline 1\n"
       "pg_rewind: error: could not open file \"/srv/pg/data/pg_wal/000000010000000000000002\": No such file or "
       "directory\npg_rewind: error: could not find previous WAL record at 0/2000060",
       RewindFailure::wal_missing},
      {"pg_rewind: error: could not read WAL record at 0/2000060: invalid record length", RewindFailure::wal_missing},
      {"pg_rewind: error: could not connect to server: Connection refused", RewindFailure::other},
      {"pg_rewind: error: could not open file \"/srv/pg/data/global/pg_control\": Permission denied",
       RewindFailure::other},
      {"", RewindFailure::other},
  };
  for (const auto& r : rows) {
    INFO(r.output);
    CHECK(classify_rewind_failure(r.output) == r.kind);
  }
}

TEST_CASE("pg_controldata output names the database system identifier", "[pg][controldata]") {
  struct Row {
    std::string text;
    std::optional<std::string> id;
  };
  const Row rows[] = {
      {"pg_control version number:            1300\n"
       "Database system identifier:           7310245880342156093\n",
       "7310245880342156093"},
      {"Database system identifier:           7310245880342156093  \r\n", "7310245880342156093"},
      {"Database system identifier:           \n", std::nullopt},
      {"Database system identifier:           12ab\n", std::nullopt},
      {"Datenbanksystemidentifikation:        7310245880342156093\n", std::nullopt},  // translated: unknown
      {"", std::nullopt},
  };
  for (const auto& r : rows) {
    INFO(r.text);
    CHECK(parse_controldata(r.text).system_identifier == r.id);
  }
}

TEST_CASE("pg_controldata output says whether pg_rewind can work", "[pg][rewind]") {
  const std::string no_hints =
      "pg_control version number:            1300\n"
      "Database cluster state:               in production\n"
      "wal_log_hints setting:                off\n"
      "Data page checksum version:           0\n";
  auto c = parse_controldata(no_hints);
  CHECK(c.checksum_version == std::optional<int>(0));
  CHECK(c.wal_log_hints == std::optional<bool>(false));
  CHECK(c.state == std::optional<std::string>("in production"));
  auto why = rewind_blocker(c);
  REQUIRE(why);
  CHECK(why->find("wal_log_hints") != std::string::npos);
  CHECK(why->find("checksums") != std::string::npos);

  struct Row {
    std::string text;
    bool blocked;
  };
  const Row rows[] = {
      {no_hints, true},
      {"wal_log_hints setting:                on\nData page checksum version:           0\n", false},
      {"wal_log_hints setting:                off\nData page checksum version:           1\n", false},
      {"wal_log_hints setting:                off\n", false},     // checksums unknown: pg_rewind decides
      {"Data page checksum version:           0\n", false},      // hints unknown
      {"Data page checksum version:           banana\nwal_log_hints setting: off\n", false},
      {"", false},
  };
  for (const auto& r : rows) {
    INFO(r.text);
    CHECK(rewind_blocker(parse_controldata(r.text)).has_value() == r.blocked);
  }
}

TEST_CASE("pg_controldata output names the latest checkpoint's timeline", "[pg][controldata]") {
  struct Row {
    std::string text;
    std::optional<std::uint32_t> tl;
  };
  const Row rows[] = {
      {"Latest checkpoint's REDO location:    0/3000028\n"
       "Latest checkpoint's TimeLineID:       3\n"
       "Latest checkpoint's PrevTimeLineID:   2\n",
       3u},
      {"Latest checkpoint's TimeLineID:       12\r\n", 12u},
      {"Latest checkpoint's TimeLineID:       \n", std::nullopt},
      {"Latest checkpoint's TimeLineID:       x1\n", std::nullopt},
      {"Latest checkpoint's TimeLineID:       99999999999\n", std::nullopt},
      {"Latest checkpoint's PrevTimeLineID:   2\n", std::nullopt},
  };
  for (const auto& r : rows) {
    INFO(r.text);
    CHECK(parse_controldata(r.text).timeline == r.tl);
  }
}

TEST_CASE("verbose libpq connection errors split into SQLSTATE and the default text", "[pg][sqlstate]") {
  struct Row { const char* verbose; const char* code; const char* text; };
  for (auto r : {
           Row{"connection to server at \"127.0.0.1\", port 5433 failed: FATAL:  53300: sorry, too many clients already\n"
               "LOCATION:  InitProcess, proc.c:363",
               "53300", "connection to server at \"127.0.0.1\", port 5433 failed: FATAL:  sorry, too many clients already"},
           Row{"connection to server at \"127.0.0.1\", port 5433 failed: FATAL:  57P03: the database system is shutting down\n"
               "LOCATION:  ProcessStartupPacket, postmaster.c:2454",
               "57P03", "connection to server at \"127.0.0.1\", port 5433 failed: FATAL:  the database system is shutting down"},
           Row{"FATAL:  28P01: password authentication failed for user \"drd\"\nLOCATION:  auth_failed, auth.c:335",
               "28P01", "FATAL:  password authentication failed for user \"drd\""},
           Row{"connection to server at \"127.0.0.1\", port 1 failed: Connection refused\n\tIs the server running on that host and accepting TCP/IP connections?",
               "", "connection to server at \"127.0.0.1\", port 1 failed: Connection refused\n\tIs the server running on that host and accepting TCP/IP connections?"},
           Row{"FATAL:  57P03: the database system is not yet accepting connections\nDETAIL:  Consistent recovery state has not been yet reached.\nLOCATION:  x.c:1",
               "57P03", "FATAL:  the database system is not yet accepting connections\nDETAIL:  Consistent recovery state has not been yet reached."},
           Row{"", "", ""},
       }) {
    INFO(r.verbose);
    auto s = split_verbose_error(r.verbose);
    CHECK(s.sqlstate == r.code);
    CHECK(s.message == r.text);
  }
}

TEST_CASE("which evidence says a server is up, saturated, restarting or dead", "[pg][server_state]") {
  using PS = PostmasterState;
  struct Row {
    const char* what;
    ServerEvidence e;
    ServerState want;
  };
  auto ev = [](bool ok, std::string code, std::string msg, bool refused = false, std::optional<PS> pm = std::nullopt,
               std::string pm_status = "", std::string adm = "", std::string adm_msg = "", bool cfg = false) {
    ServerEvidence e;
    e.query_ok = ok;
    e.sqlstate = std::move(code);
    e.message = std::move(msg);
    e.refused = refused;
    e.postmaster = pm;
    e.pm_status = std::move(pm_status);
    e.admission_sqlstate = std::move(adm);
    e.admission_message = std::move(adm_msg);
    e.config_problem = cfg;
    return e;
  };
  const std::vector<Row> rows = {
      {"probe ran, new session admitted", ev(true, "", ""), ServerState::answering},
      {"probe ran, new session not tried", ev(true, "", ""), ServerState::answering},
      {"probe ran on the kept session, new ones: too many clients", ev(true, "", "", false, {}, "", "53300", "too many"),
       ServerState::saturated},
      {"probe ran, new ones: shutting down (smart shutdown)",
       ev(true, "", "", false, {}, "", "57P03", "the database system is shutting down"), ServerState::shutting_down},
      {"probe ran, new ones refused for a password (not a refusal of admission)", ev(true, "", "", false, {}, "", "28P01", "x"),
       ServerState::answering},
      {"session lost, reconnect: too many clients", ev(false, "53300", "sorry, too many clients already"),
       ServerState::saturated},
      {"reconnect: reserved slots", ev(false, "53300", "remaining connection slots are reserved"), ServerState::saturated},
      {"reconnect: out of memory (class 53)", ev(false, "53200", "out of memory"), ServerState::saturated},
      {"reconnect: shutting down", ev(false, "57P03", "the database system is shutting down"), ServerState::shutting_down},
      {"reconnect: starting up", ev(false, "57P03", "the database system is starting up"), ServerState::starting_up},
      {"reconnect: crash recovery", ev(false, "57P03", "the database system is in recovery mode"), ServerState::starting_up},
      {"password refused", ev(false, "28P01", "password authentication failed", false, {}, "", "", "", true),
       ServerState::refuses_drd},
      {"pg_hba reject", ev(false, "28000", "no pg_hba.conf entry"), ServerState::refuses_drd},
      {"TLS refusal named by config_refusal (no code)", ev(false, "", "certificate verify failed", false, {}, "", "", "", true),
       ServerState::refuses_drd},
      {"timeout", ev(false, "", "timed out"), ServerState::no_answer},
      {"refused, remote", ev(false, "", "Connection refused", true), ServerState::no_answer},
      {"refused, stopped (no pid file)", ev(false, "", "Connection refused", true, PS::no_pid_file), ServerState::no_answer},
      {"refused, postmaster gone: crashed", ev(false, "", "Connection refused", true, PS::gone), ServerState::crashed},
      {"refused, postmaster alive and starting", ev(false, "", "Connection refused", true, PS::running, "starting"),
       ServerState::starting_up},
      {"refused, postmaster alive and stopping", ev(false, "", "Connection refused", true, PS::running, "stopping"),
       ServerState::shutting_down},
      {"timeout with a live (maybe frozen) postmaster is no answer, not a restart",
       ev(false, "", "timed out", false, PS::running, "ready"), ServerState::no_answer},
      {"an internal error is no answer", ev(false, "XX000", "could not open file"), ServerState::no_answer},
      {"session ended by an administrator command, then nothing listens: a stop seen coming",
       [&] { auto e = ev(false, "", "Connection refused", true, PS::no_pid_file); e.session_ended_sqlstate = "57P01"; return e; }(),
       ServerState::shutting_down},
      {"session ended by 57P01, then a timeout: no answer",
       [&] { auto e = ev(false, "", "timed out"); e.session_ended_sqlstate = "57P01"; return e; }(), ServerState::no_answer},
  };
  for (auto& r : rows) {
    INFO(r.what);
    CHECK(server_state_name(server_state(r.e)) == std::string(server_state_name(r.want)));
  }
}

TEST_CASE("postmaster.pid's status line is read", "[pg][local]") {
  auto p = parse_postmaster_pid("123\n/data\n1700000000\n5432\n/tmp\n*\n  1234    5678\nstopping\n");
  REQUIRE(p);
  CHECK(p->status == "stopping");
  auto q = parse_postmaster_pid("123\n/data\n1700000000\n5432\n/tmp\n*\n  1234    5678\nready   \n");
  REQUIRE(q);
  CHECK(q->status == "ready");
  auto r = parse_postmaster_pid("123\n/data\n1700000000\n");
  REQUIRE(r);
  CHECK(r->status.empty());
}

TEST_CASE("fence_method: a local server with synchronous replication (or unknown) is stopped at once", "[pg][fence]") {
  struct Row {
    bool local;
    std::optional<bool> sync_names_set;
    FenceMethod want;
  } rows[] = {
      {true, true, FenceMethod::stop_immediate},   // COMMITs may wait for the standby
      {true, std::nullopt, FenceMethod::stop_immediate},  // did not answer: cannot rule it out
      {true, false, FenceMethod::sql},             // asynchronous: unchanged
      {false, true, FenceMethod::sql},             // not on this host: no pg_ctl
      {false, false, FenceMethod::sql},
      {false, std::nullopt, FenceMethod::sql},
  };
  for (const auto& r : rows) {
    INFO("local " << r.local << ", sync " << (r.sync_names_set ? (*r.sync_names_set ? "set" : "empty") : "unknown"));
    CHECK(fence_method(r.local, r.sync_names_set) == r.want);
  }
}
