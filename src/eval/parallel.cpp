#include "eval/parallel.hpp"

#include "base/thread_start.hpp"
#include "moddit/size_limits.hpp"

#include <atomic>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace moddit {
namespace eval {

int resolve_threads(int threads) {
  check_thread_count(threads, "evaluation");
  if (threads > 0) return threads;
  const unsigned hw = std::thread::hardware_concurrency();
  return hw > 0 ? static_cast<int>(hw) : 1;
}

void parallel_for(int count, int threads, const std::function<void(int)>& fn) {
  const int workers = std::min(resolve_threads(threads), count);
  if (workers <= 1) {
    for (int i = 0; i < count; ++i) fn(i);
    return;
  }
  std::atomic<int> next{0};
  std::exception_ptr error;
  std::mutex error_mutex;
  auto work = [&] {
    for (int i = next++; i < count; i = next++) {
      try {
        fn(i);
      } catch (...) {
        std::lock_guard<std::mutex> lock(error_mutex);
        if (!error) error = std::current_exception();
      }
    }
  };
  std::vector<std::thread> pool;
  // Items are claimed from a counter: the threads that could be made share them.
  start_threads(pool, workers - 1, [&](int) { return std::thread(work); }, "evaluation");
  work();
  for (auto& t : pool) t.join();
  if (error) std::rethrow_exception(error);
}

}  // namespace eval
}  // namespace moddit
