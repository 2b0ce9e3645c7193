#include "daemon/monitor/probe_once.hpp"

#include <memory>

#include "common/units.hpp"

namespace drd {

namespace asio = boost::asio;

void probe_with_deadline(const asio::any_io_executor& ex, BlockingWorker& worker, Node& node, Millis timeout,
                         bool deep, ProbeDone done) {
  struct Once {
    bool fired = false;
    ProbeDone done;
  };
  auto once = std::make_shared<Once>(Once{false, std::move(done)});
  auto timer = std::make_shared<asio::steady_timer>(ex, timeout + kProbeSlack);
  // Only ever called on `ex`, so `fired` needs no lock.
  auto fire = [once, timer](ProbeResult r, bool timed_out) {
    if (once->fired) return;
    once->fired = true;
    timer->cancel();
    auto d = std::move(once->done);
    d(std::move(r), timed_out);
  };
  timer->async_wait([fire, timeout](const boost::system::error_code& ec) {
    if (ec) return;  // cancelled: the answer came first
    ProbeResult r;
    r.error = "probe timed out after " + format_duration(timeout);
    r.response_ms = static_cast<double>(timeout.count());
    fire(std::move(r), true);
  });
  const bool posted = worker.post([&node, ex, fire, timeout, deep] {
    ProbeResult r = node.probe(timeout, deep);
    asio::post(ex, [fire, r = std::move(r)]() mutable { fire(std::move(r), false); });
  });
  if (!posted)
    asio::post(ex, [fire] {
      ProbeResult r;
      r.error = "drd is stopping";
      fire(std::move(r), true);
    });
}

}  // namespace drd
