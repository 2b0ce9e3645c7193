#include "daemon/backup/pg_wal_resume.hpp"

#include <cctype>

namespace drd::backup {

namespace {
bool ends_with(const std::string& s, const std::string& suf) {
  return s.size() >= suf.size() && s.compare(s.size() - suf.size(), suf.size(), suf) == 0;
}
}  // namespace

WalStart pg_archive_next(const PgBase& base, const std::vector<PgWalSeg>& archived, std::uint64_t seg_size) {
  const PgChain chain = pg_chain(base, archived, seg_size);
  if (chain.segments.empty()) return WalStart{base.timeline, base.stop_lsn / seg_size};
  const PgWalSeg& last = chain.segments.back();
  return WalStart{last.timeline, last.end / seg_size};
}

std::optional<WalStart> spool_start(const std::vector<std::string>& names, std::uint64_t seg_size) {
  // pg_receivewal's FindStreamingStart: the highest segment number wins; a complete file
  // means "resume after it", a .partial "resume at its start"; for one number a complete
  // file beats a partial.
  std::optional<WalStart> best;
  bool best_partial = false;
  for (const auto& n : names) {
    const bool partial = ends_with(n, ".partial");
    auto w = parse_wal_name(partial ? n.substr(0, n.size() - 8) : n, seg_size);
    if (!w || w->history) continue;
    if (!best || w->segno > best->segno || (w->segno == best->segno && best_partial && !partial)) {
      best = WalStart{w->timeline, w->segno};
      best_partial = partial;
    }
  }
  if (best && !best_partial) ++best->segno;
  return best;
}

std::optional<WalStart> placeholder_needed(const std::optional<WalStart>& spool, const std::optional<WalStart>& archive_next) {
  if (spool || !archive_next) return std::nullopt;
  return archive_next;
}

std::vector<TimelineSwitch> parse_timeline_history(const std::string& text) {
  std::vector<TimelineSwitch> out;
  std::size_t pos = 0;
  while (pos < text.size()) {
    auto nl = text.find('\n', pos);
    std::string line = text.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
    pos = nl == std::string::npos ? text.size() : nl + 1;
    std::size_t i = 0;
    while (i < line.size() && std::isspace(static_cast<unsigned char>(line[i]))) ++i;
    std::size_t d = i;
    while (d < line.size() && std::isdigit(static_cast<unsigned char>(line[d]))) ++d;
    if (d == i || d - i > 9 || d >= line.size() || !std::isspace(static_cast<unsigned char>(line[d]))) continue;
    std::size_t l = d;
    while (l < line.size() && std::isspace(static_cast<unsigned char>(line[l]))) ++l;
    std::size_t e = l;
    while (e < line.size() && (std::isxdigit(static_cast<unsigned char>(line[e])) || line[e] == '/')) ++e;
    auto lsn = parse_lsn(line.substr(l, e - l));
    const auto tl = std::stoul(line.substr(i, d - i));
    if (lsn && tl > 0) out.push_back({static_cast<std::uint32_t>(tl), *lsn});
  }
  return out;
}

ResolvedStart resolve_start(WalStart want, const std::vector<TimelineSwitch>& history, std::uint32_t server_timeline,
                            std::uint64_t seg_size) {
  ResolvedStart r{want, false, false};
  while (r.start.timeline < server_timeline) {
    std::size_t i = 0;
    while (i < history.size() && history[i].timeline != r.start.timeline) ++i;
    if (i == history.size()) {
      r.unknown_timeline = true;
      return r;
    }
    const std::uint64_t from = r.start.segno * seg_size, end = history[i].switchpoint;
    if (from < end) return r;  // on this timeline; pg_receivewal follows the switches from here
    const std::uint32_t next = i + 1 < history.size() ? history[i + 1].timeline : server_timeline;
    if (from > end) {
      r.past_fork = true;
      r.start = WalStart{next, end / seg_size};
    } else {
      r.start = WalStart{next, r.start.segno};
    }
  }
  return r;
}

ReceiverFailureInfo classify_receiver_failure(const std::string& output, std::uint64_t seg_size) {
  ReceiverFailureInfo r;
  if (output.find("not in this server's history") != std::string::npos) {
    r.kind = ReceiverFailure::diverged;
    // DETAIL:  This server's history forked from timeline 1 at 0/9001234.
    const std::string key = "forked from timeline ";
    auto p = output.find(key);
    if (p == std::string::npos) return r;
    p += key.size();
    std::size_t q = p;
    while (q < output.size() && std::isdigit(static_cast<unsigned char>(output[q]))) ++q;
    if (q == p || q - p > 9 || output.compare(q, 4, " at ") != 0) return r;
    const auto tl = std::stoul(output.substr(p, q - p));
    std::size_t e = q + 4;
    while (e < output.size() && (std::isxdigit(static_cast<unsigned char>(output[e])) || output[e] == '/')) ++e;
    auto lsn = parse_lsn(output.substr(q + 4, e - q - 4));
    if (lsn && tl > 0) r.restart_at = WalStart{static_cast<std::uint32_t>(tl), *lsn / seg_size};
    return r;
  }
  if (output.find("has already been removed") != std::string::npos ||
      output.find("ahead of the WAL flush position") != std::string::npos)
    r.kind = ReceiverFailure::unavailable;
  return r;
}

}  // namespace drd::backup
