#include "daemon/monitor/blocking_worker.hpp"

#include <chrono>

namespace drd {

BlockingWorker::BlockingWorker() : thread_([this] { run(); }) {}

BlockingWorker::~BlockingWorker() {
  {
    std::lock_guard g(mu_);
    stopping_ = true;
    jobs_.clear();
  }
  cv_.notify_all();
  // Give a running job a moment to finish; a job stuck in the kernel is left
  // behind rather than blocking shutdown.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  for (;;) {
    {
      std::lock_guard g(mu_);
      if (!running_job_) break;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      thread_.detach();
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  thread_.join();
}

bool BlockingWorker::post(std::function<void()> job) {
  {
    std::lock_guard g(mu_);
    if (stopping_) return false;
    jobs_.push_back(std::move(job));
  }
  cv_.notify_one();
  return true;
}

bool BlockingWorker::busy() const {
  std::lock_guard g(mu_);
  return running_job_ || !jobs_.empty();
}

void BlockingWorker::run() {
  for (;;) {
    std::function<void()> job;
    {
      std::unique_lock lk(mu_);
      cv_.wait(lk, [&] { return stopping_ || !jobs_.empty(); });
      if (stopping_) return;
      job = std::move(jobs_.front());
      jobs_.pop_front();
      running_job_ = true;
    }
    job();
    std::lock_guard g(mu_);
    running_job_ = false;
  }
}

}  // namespace drd
