#pragma once
// A small fixed-size thread pool for the CPU reference: one parallel_for at a
// time, dynamic (work-stealing-free, atomic counter) scheduling, the calling
// thread takes part. Kept apart from the kernel so that the kernel stays a plain
// function of AttentionParams.
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace moddit {

class ThreadPool {
 public:
  // `threads` counts the caller too; 0 = std::thread::hardware_concurrency().
  // Threads the system refuses are left out (reported once on stderr).
  explicit ThreadPool(int threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return static_cast<int>(workers_.size()) + 1; }

  // Calls fn(i, worker) for every i in [0, n), each once, in claim order of i;
  // worker in [0, size()) identifies the thread (for per-thread scratch). Blocks
  // until all are done; rethrows the first exception (remaining items are skipped).
  // Concurrent callers are serialised.
  void parallel_for(int64_t n, const std::function<void(int64_t, int)>& fn);

 private:
  void worker_loop(int worker);
  void drain(int worker);

  std::vector<std::thread> workers_;
  std::mutex call_mutex_;  // one parallel_for at a time
  std::mutex mutex_;       // guards the fields below
  std::condition_variable work_ready_, work_done_;
  const std::function<void(int64_t, int)>* job_ = nullptr;
  int64_t job_size_ = 0;
  std::atomic<int64_t> next_{0};
  uint64_t generation_ = 0;
  int busy_ = 0;
  bool stop_ = false;
  std::exception_ptr error_;
};

}  // namespace moddit
