// /metrics text (checked with a small exposition-format parser), the status
// page HTML and the recorder's bookkeeping.
#include <catch2/catch.hpp>

#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "daemon/observability/prometheus.hpp"
#include "daemon/observability/recorder.hpp"
#include "daemon/observability/status_page.hpp"

using namespace drd;
using namespace drd::monitoring;
using namespace std::chrono_literals;
namespace json = boost::json;

namespace {

const SysTime T0 = SysTime(std::chrono::seconds(1'700'000'000));

struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

// Every line must be "# HELP name text", "# TYPE name type" or "name{labels} value".
// Returns the samples; fails the test on any other line.
std::vector<Sample> parse_exposition(const std::string& text, std::map<std::string, std::string>* types = nullptr) {
  static const std::regex help(R"(^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) .+$)");
  static const std::regex type(R"(^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$)");
  static const std::regex sample(R"(^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$)");
  static const std::regex label(R"rx(([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$))rx");
  std::vector<Sample> out;
  std::istringstream in(text);
  std::set<std::string> typed;
  for (std::string line; std::getline(in, line);) {
    INFO("line: " << line);
    std::smatch m;
    if (std::regex_match(line, m, help)) continue;
    if (std::regex_match(line, m, type)) {
      CHECK(typed.insert(m[1]).second);  // one TYPE per family
      if (types) (*types)[m[1]] = m[2];
      continue;
    }
    REQUIRE(std::regex_match(line, m, sample));
    Sample s;
    s.name = m[1];
    std::string labels = m[3];
    for (auto it = std::sregex_iterator(labels.begin(), labels.end(), label); it != std::sregex_iterator(); ++it)
      s.labels[(*it)[1]] = (*it)[2];
    const std::string v = m[4];
    if (v == "+Inf") s.value = INFINITY;
    else if (v == "NaN") s.value = NAN;
    else {
      std::size_t used = 0;
      s.value = std::stod(v, &used);
      CHECK(used == v.size());
    }
    // The sample's family must have been declared before it.
    std::string family = s.name;
    for (const char* suffix : {"_bucket", "_sum", "_count"})
      if (!typed.count(family) && family.size() > std::strlen(suffix) &&
          family.compare(family.size() - std::strlen(suffix), std::string::npos, suffix) == 0)
        family = family.substr(0, family.size() - std::strlen(suffix));
    CHECK(typed.count(family));
    out.push_back(s);
  }
  CHECK((text.empty() || text.back() == '\n'));
  return out;
}

const Sample* find(const std::vector<Sample>& v, const std::string& name, std::map<std::string, std::string> labels = {}) {
  for (const auto& s : v) {
    if (s.name != name) continue;
    bool all = true;
    for (const auto& [k, val] : labels) all = all && s.labels.count(k) && s.labels.at(k) == val;
    if (all) return &s;
  }
  return nullptr;
}

PrometheusSnapshot sample_snapshot() {
  MetricsRecorder rec;
  for (double ms : {0.3, 0.7, 3.0, 40.0, 4000.0, 9000.0}) rec.on_probe("primary", T0, true, ms);
  rec.on_probe("primary", T0, false, 0);
  PrometheusSnapshot s;
  s.version = "0.1.0";
  s.primary = "primary";
  s.term = 3;
  s.monitoring = true;
  s.auto_failover = true;
  s.failovers_total = 2;
  NodeMetrics p;
  p.name = "primary";
  p.role = "primary";
  p.engine = "sqlite";
  p.up = true;
  p.response_ms = 0.42;
  p.response = rec.histograms().at("primary");
  p.server_state = "saturated";
  NodeMetrics q;
  q.name = "odd \"name\"\\x";
  q.role = "standby";
  q.engine = "postgresql";
  q.up = false;
  q.lag_bytes = 4096;
  q.lag_ms = 1500;
  q.replay_lag_bytes = 8192;
  q.replay_paused = true;
  s.nodes = {p, q};
  s.last_backup = BackupRecord{1'700'000'000'000, false, 0};
  s.last_good_backup = BackupRecord{1'699'990'000'000, true, 123456};
  s.alerts = {{"slow", "primary", "warning", "firing"}, {"fo", "", "critical", "pending"}};
  s.process = read_process_stats();
  return s;
}

}  // namespace

TEST_CASE("/metrics text is valid exposition format with the expected series", "[metrics]") {
  std::map<std::string, std::string> types;
  const std::string text = render_prometheus(sample_snapshot());
  auto v = parse_exposition(text, &types);
  CHECK(types["drd_failovers_total"] == "counter");
  CHECK(types["drd_probe_duration_seconds"] == "histogram");
  CHECK(types["process_cpu_seconds_total"] == "counter");

  REQUIRE(find(v, "drd_node_up", {{"node", "primary"}}));
  CHECK(find(v, "drd_node_up", {{"node", "primary"}})->value == 1);
  CHECK(find(v, "drd_node_role", {{"node", "primary"}, {"role", "primary"}})->value == 1);
  CHECK(find(v, "drd_node_role", {{"node", "primary"}, {"role", "standby"}})->value == 0);
  CHECK(find(v, "drd_term")->value == 3);
  CHECK(find(v, "drd_failovers_total")->value == 2);
  CHECK(find(v, "drd_node_response_time_seconds", {{"node", "primary"}})->value == Approx(0.00042));
  // Escaped label values survive the round trip.
  REQUIRE(find(v, "drd_node_replication_lag_bytes"));
  CHECK(find(v, "drd_node_replication_lag_bytes")->labels.at("node") == "odd \\\"name\\\"\\\\x");
  CHECK(find(v, "drd_node_replication_lag_seconds")->value == Approx(1.5));
  // What the server answered: one series per state, 1 for the current one; none before a probe.
  CHECK(find(v, "drd_node_server_state", {{"node", "primary"}, {"state", "saturated"}})->value == 1);
  CHECK(find(v, "drd_node_server_state", {{"node", "primary"}, {"state", "answering"}})->value == 0);
  std::size_t server_state_series = 0;
  for (auto& sample : v) server_state_series += sample.name == "drd_node_server_state";
  CHECK(server_state_series == 7);  // the standby was never probed: no series for it
  CHECK(find(v, "drd_node_replay_lag_bytes")->value == 8192);
  CHECK(find(v, "drd_node_replay_paused")->value == 1);
  CHECK_FALSE(find(v, "drd_node_replay_paused", {{"node", "primary"}}));

  // Histogram: cumulative buckets, +Inf == count, failed probes not observed.
  CHECK(find(v, "drd_probe_duration_seconds_bucket", {{"node", "primary"}, {"le", "0.0005"}})->value == 1);
  CHECK(find(v, "drd_probe_duration_seconds_bucket", {{"node", "primary"}, {"le", "0.001"}})->value == 2);
  CHECK(find(v, "drd_probe_duration_seconds_bucket", {{"node", "primary"}, {"le", "0.005"}})->value == 3);
  CHECK(find(v, "drd_probe_duration_seconds_bucket", {{"node", "primary"}, {"le", "5"}})->value == 5);
  CHECK(find(v, "drd_probe_duration_seconds_bucket", {{"node", "primary"}, {"le", "+Inf"}})->value == 6);
  CHECK(find(v, "drd_probe_duration_seconds_count", {{"node", "primary"}})->value == 6);
  CHECK(find(v, "drd_probe_duration_seconds_sum", {{"node", "primary"}})->value == Approx(13.044));
  double prev = -1;
  for (const auto& s : v)
    if (s.name == "drd_probe_duration_seconds_bucket" && s.labels.at("node") == "primary") {
      CHECK(s.value >= prev);
      prev = s.value;
    }
  // A node without observations still has its buckets, at 0.
  CHECK(find(v, "drd_probe_duration_seconds_bucket", {{"le", "+Inf"}, {"node", "odd \\\"name\\\"\\\\x"}})->value == 0);

  CHECK(find(v, "drd_last_backup_success")->value == 0);
  CHECK(find(v, "drd_last_backup_size_bytes")->value == 123456);
  CHECK(find(v, "drd_last_successful_backup_timestamp_seconds")->value == 1'699'990'000);
  CHECK(find(v, "drd_alert_firing", {{"rule", "slow"}})->value == 1);
  CHECK(find(v, "drd_alert_firing", {{"rule", "fo"}})->value == 0);

  REQUIRE(find(v, "process_resident_memory_bytes"));
  CHECK(find(v, "process_resident_memory_bytes")->value > 1e6);
  CHECK(find(v, "process_open_fds")->value >= 3);
  const double start = find(v, "process_start_time_seconds")->value;
  const double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  CHECK(start <= now + 60);  // btime has 1 s resolution and the boot clock drifts from wall time
  CHECK(start > now - 3600);  // this test process started recently
}

TEST_CASE("an empty snapshot still renders valid text", "[metrics]") {
  auto v = parse_exposition(render_prometheus(PrometheusSnapshot{}));
  CHECK(find(v, "drd_term"));
  CHECK_FALSE(find(v, "drd_node_up"));
}

TEST_CASE("label escaping", "[metrics]") {
  CHECK(escape_label("a\"b\\c\nd") == "a\\\"b\\\\c\\nd");
}

TEST_CASE("the recorder keeps one hour of samples and counts failovers per window", "[metrics]") {
  MetricsRecorder rec;
  for (int i = 0; i < 7200; ++i) rec.on_probe("a", T0 + std::chrono::seconds(i), i % 10 != 0, i % 50);
  const SysTime now = T0 + 7199s;
  auto chart = rec.chart(now, {"a", "b"});
  REQUIRE(chart.size() == 2);
  CHECK(chart[1].node == "b");
  CHECK(chart[1].samples.empty());
  CHECK(chart[0].samples.size() == 3601);  // [now-3600s, now]
  CHECK(chart[0].samples.front().time_ms == to_unix_ms(now - 3600s));
  CHECK(rec.histograms().at("a").count == 6480);  // failed probes are not observed

  rec.on_failover(T0);
  rec.on_failover(T0 + 50s);
  rec.on_failover(T0 + 70s);
  CHECK(rec.failovers_total() == 3);
  CHECK(rec.failovers_since(T0 + 70s - 60s) == 2);
  CHECK(rec.failovers_since(T0 + 200s) == 0);

  CHECK_FALSE(rec.last_backup());
  rec.on_backup(T0, true, 100);
  rec.on_backup(T0 + 10s, false, 0);
  CHECK(rec.last_backup()->ok == false);
  CHECK(rec.last_good_backup()->size_bytes == 100);
}

TEST_CASE("the status page has the panel, escaped values and an svg polyline per node", "[page]") {
  json::value status = json::parse(R"({"enabled": true, "primary": "primary", "term": 4, "monitoring": true,
    "auto_failover": false, "auto_backup": true, "failure_threshold": 3, "failover_state": "degraded",
    "failover_reason": "secondary1 is down",
    "nodes": [
      {"name": "primary", "type": "primary", "role": "primary", "priority": 0, "engine": "sqlite",
       "healthy": true, "connection": "ok", "response_time_ms": 0.42, "lag_bytes": 0, "lag_ms": 0},
      {"name": "secondary1", "type": "secondary", "role": "down", "priority": 1, "engine": "sqlite",
       "healthy": false, "connection": "failed", "response_time_ms": 0, "last_error": "<script>x</script>"},
      {"name": "s2", "type": "secondary", "role": "standby", "priority": 2, "engine": "postgresql",
       "healthy": true, "connection": "ok", "response_time_ms": 2.5, "lag_bytes": 2048, "lag_ms": 10}]})");
  json::value alerts = json::parse(R"J({"firing": [{"rule": "node_down", "node": "secondary1", "severity": "critical",
    "state": "firing", "since": "2023-11-14T22:13:20.000Z", "value": 0, "message": "up on secondary1 is 0 (== 0)"}],
    "recent": []})J");
  MetricsRecorder rec;
  const SysTime now = T0 + 3600s;
  for (int i = 0; i < 120; ++i) {
    rec.on_probe("primary", T0 + std::chrono::seconds(i * 30), true, 1 + i % 7);
    rec.on_probe("secondary1", T0 + std::chrono::seconds(i * 30), i < 100, 3);
  }
  auto html = render_status_page(status, alerts, rec.chart(now, {"primary", "secondary1", "s2"}), now);

  CHECK(html.rfind("<!DOCTYPE html>", 0) == 0);
  CHECK(html.find("<meta http-equiv=\"refresh\" content=\"5\">") != std::string::npos);
  CHECK(html.find("Current primary") != std::string::npos);
  // The primary's crown is drawn by the page (an emoji shows as a box where the font lacks it).
  CHECK(html.find("&#x1F451;") == std::string::npos);
  CHECK(html.find("\xF0\x9F\x91\x91") == std::string::npos);
  CHECK(html.find("<svg class=crown") != std::string::npos);
  CHECK(html.find("aria-label=\"primary\"") != std::string::npos);
  // The alert's severity is named once ("critical", not "critical critical").
  CHECK(html.find("critical</span> critical") == std::string::npos);
  CHECK(html.find("<td><span class=\"badge bad\">critical</span></td>") != std::string::npos);
  CHECK(html.find("degraded") != std::string::npos);
  CHECK(html.find("secondary1 is down") != std::string::npos);
  CHECK(html.find("<script>") == std::string::npos);  // escaped
  CHECK(html.find("&lt;script&gt;x&lt;/script&gt;") != std::string::npos);
  CHECK(html.find("node_down") != std::string::npos);
  CHECK(html.find("2.0 KiB / 10 ms") != std::string::npos);
  // No external assets.
  CHECK(html.find("src=") == std::string::npos);
  CHECK(html.find("<link") == std::string::npos);

  // One svg with one polyline per node, in order.
  std::size_t pos = 0;
  for (const char* node : {"primary", "secondary1", "s2"}) {
    INFO(node);
    auto svg = html.find(std::string("<svg xmlns=\"http://www.w3.org/2000/svg\"") , pos);
    REQUIRE(svg != std::string::npos);
    auto attr = html.find(std::string("data-node=\"") + node + "\"", svg);
    REQUIRE(attr != std::string::npos);
    auto end = html.find("</svg>", svg);
    auto poly = html.find("<polyline", svg);
    REQUIRE(poly < end);
    CHECK(html.find("<polyline", poly + 1) > end);
    pos = end;
  }
  // primary's polyline has all 120 points; secondary1's failures are red ticks.
  ChartSeries c = rec.chart(now, {"primary"})[0];
  auto svg = render_chart_svg(c, now);
  auto pts_begin = svg.find("points=\"") + 8;
  auto pts = svg.substr(pts_begin, svg.find('"', pts_begin) - pts_begin);
  CHECK(std::count(pts.begin(), pts.end(), ',') == 120);
  auto s1 = render_chart_svg(rec.chart(now, {"secondary1"})[0], now);
  std::size_t ticks = 0;
  for (auto p = s1.find("#d93025"); p != std::string::npos; p = s1.find("#d93025", p + 1)) ++ticks;
  CHECK(ticks == 20);
}

TEST_CASE("the status page renders an empty or odd status without throwing", "[page]") {
  CHECK_NOTHROW(render_status_page(json::value(nullptr), json::value(nullptr), {}, T0));
  auto html = render_status_page(json::parse(R"({"nodes": [1, "x", {"name": 5}]})"), json::object{}, {}, T0);
  CHECK(html.find("critical") != std::string::npos);  // no primary
}

TEST_CASE("/metrics writes plain decimals: timestamps to the millisecond, no exponent", "[metrics]") {
  PrometheusSnapshot s;
  s.last_backup = BackupRecord{1'796'627'550'123, true, 5};
  s.last_good_backup = BackupRecord{1'796'627'550'000, true, 5};
  NodeMetrics p;
  p.name = "primary";
  p.role = "primary";
  p.engine = "sqlite";
  p.up = true;
  p.response_ms = 0.292075;
  s.nodes = {p};
  const std::string text = render_prometheus(s);
  INFO(text);
  CHECK_THAT(text, Catch::Contains("drd_last_backup_timestamp_seconds 1796627550.123\n"));
  CHECK_THAT(text, Catch::Contains("drd_last_successful_backup_timestamp_seconds 1796627550\n"));
  CHECK_THAT(text, Catch::Contains("drd_node_response_time_seconds{node=\"primary\"} 0.000292075\n"));
  CHECK(text.find("e+") == std::string::npos);
  CHECK(text.find("e-") == std::string::npos);
}

TEST_CASE("the status page shows the last good backup with its age and the next scheduled one", "[page]") {
  json::value status = json::parse(R"({"primary": "primary", "auto_backup": true,
    "backups": {"schedule": "every 6h", "last_good": "2023-11-14T22:13:20.000Z", "last_good_age_s": 11100,
                "last_attempt_failed": false, "next_scheduled": "2023-11-15T06:00:00.000Z", "next_in_s": 17000},
    "nodes": [{"name": "primary", "role": "primary", "healthy": true}]})");
  auto html = render_status_page(status, json::object{}, {}, T0);
  CHECK(html.find("Last good backup</div><div>2023-11-14 22:13:20 UTC <span class=muted>(3h05m ago)</span>") !=
        std::string::npos);
  CHECK(html.find("Next scheduled backup</div><div>2023-11-15 06:00:00 UTC <span class=muted>(in 4h43m)</span>") !=
        std::string::npos);
  CHECK(html.find("every 6h") != std::string::npos);

  json::value none = json::parse(R"({"primary": "primary", "backups": {"schedule": "", "last_good": null,
    "last_attempt_failed": true, "next_scheduled": null}, "nodes": []})");
  html = render_status_page(none, json::object{}, {}, T0);
  CHECK(html.find("Last good backup</div><div><span class=warn>none on record</span>") != std::string::npos);
  CHECK(html.find("the last attempt failed") != std::string::npos);
  CHECK(html.find("Next scheduled backup</div><div><span class=muted>not scheduled</span>") != std::string::npos);
}
