#include "daemon/observability/recorder.hpp"

#include <algorithm>

namespace drd::monitoring {

const std::vector<double>& response_buckets_ms() {
  static const std::vector<double> b = {0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000};
  return b;
}

void Histogram::observe(double ms) {
  if (counts.size() != bounds_ms.size() + 1) counts.assign(bounds_ms.size() + 1, 0);
  auto it = std::lower_bound(bounds_ms.begin(), bounds_ms.end(), ms);  // le semantics: ms <= bound
  ++counts[static_cast<std::size_t>(it - bounds_ms.begin())];
  sum_ms += ms;
  ++count;
}

void MetricsRecorder::on_probe(const std::string& node, SysTime t, bool ok, double response_ms) {
  std::lock_guard lk(mu_);
  if (ok) {
    auto& h = hist_[node];
    if (h.bounds_ms.empty()) h.bounds_ms = response_buckets_ms();
    h.observe(response_ms);
  }
  auto& s = samples_[node];
  const std::int64_t now = to_unix_ms(t);
  s.push_back({now, ok, response_ms});
  while (!s.empty() && (s.size() > kMaxSamples || s.front().time_ms < now - kChartWindow.count())) s.pop_front();
}

void MetricsRecorder::on_failover(SysTime t) {
  std::lock_guard lk(mu_);
  ++failovers_total_;
  const std::int64_t now = to_unix_ms(t);
  failover_times_.push_back(now);
  while (!failover_times_.empty() && failover_times_.front() < now - 3'600'000) failover_times_.pop_front();
}

void MetricsRecorder::on_backup(SysTime t, bool ok, std::uint64_t size_bytes) {
  std::lock_guard lk(mu_);
  BackupRecord b{to_unix_ms(t), ok, size_bytes};
  if (!last_backup_ || last_backup_->time_ms <= b.time_ms) last_backup_ = b;
  if (ok && (!last_good_backup_ || last_good_backup_->time_ms <= b.time_ms)) last_good_backup_ = b;
}

std::map<std::string, Histogram> MetricsRecorder::histograms() const {
  std::lock_guard lk(mu_);
  return hist_;
}

std::vector<ChartSeries> MetricsRecorder::chart(SysTime now, const std::vector<std::string>& order) const {
  std::lock_guard lk(mu_);
  const std::int64_t from = to_unix_ms(now) - kChartWindow.count();
  std::vector<ChartSeries> out;
  for (const auto& node : order) {
    ChartSeries c{node, {}};
    if (auto it = samples_.find(node); it != samples_.end())
      for (const auto& s : it->second)
        if (s.time_ms >= from) c.samples.push_back(s);
    out.push_back(std::move(c));
  }
  return out;
}

std::uint64_t MetricsRecorder::failovers_total() const {
  std::lock_guard lk(mu_);
  return failovers_total_;
}

int MetricsRecorder::failovers_since(SysTime since) const {
  std::lock_guard lk(mu_);
  const std::int64_t from = to_unix_ms(since);
  return static_cast<int>(std::count_if(failover_times_.begin(), failover_times_.end(),
                                        [from](std::int64_t t) { return t >= from; }));
}

std::optional<BackupRecord> MetricsRecorder::last_backup() const {
  std::lock_guard lk(mu_);
  return last_backup_;
}

std::optional<BackupRecord> MetricsRecorder::last_good_backup() const {
  std::lock_guard lk(mu_);
  return last_good_backup_;
}

}  // namespace drd::monitoring
