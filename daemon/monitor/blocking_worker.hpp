#pragma once
// BlockingWorker: one thread that runs blocking calls (sqlite3_open, libpq,
// file copies) for one node, one at a time, so a call that hangs in the kernel
// (a dead NFS mount, a SIGSTOPped server) stalls only that node's worker and
// never the io_context. Callers enforce deadlines themselves and ignore late
// answers; busy() tells them a previous call is still stuck.
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>

namespace drd {

class BlockingWorker {
 public:
  BlockingWorker();
  ~BlockingWorker();  // joins when idle; detaches a thread stuck in a call (process exit reaps it)
  BlockingWorker(const BlockingWorker&) = delete;
  BlockingWorker& operator=(const BlockingWorker&) = delete;

  // Queues `job`. Returns false (and drops it) once stopping.
  bool post(std::function<void()> job);
  // True while a job is running or queued.
  bool busy() const;

 private:
  void run();
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  bool running_job_ = false;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace drd
