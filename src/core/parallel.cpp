#include "core/parallel.hpp"

#include "base/thread_start.hpp"

#include <algorithm>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace moddit {
namespace core {

int max_threads() {
  static const int n = [] {
    // MODDIT_THREADS overrides (e.g. 1 for timing, or to leave cores to the pipeline).
    if (const char* env = std::getenv("MODDIT_THREADS")) {
      const int v = std::atoi(env);
      if (v > 0) return std::min(v, 256);
    }
    const unsigned hw = std::thread::hardware_concurrency();
    return static_cast<int>(std::clamp(hw, 1u, 16u));
  }();
  return n;
}

void parallel_for(int count, int min_chunk, const std::function<void(int, int)>& fn) {
  if (count <= 0) return;
  const int threads = std::min(max_threads(), count / std::max(1, min_chunk));
  if (threads <= 1) {
    fn(0, count);
    return;
  }
  std::exception_ptr error;
  std::mutex mu;
  auto run = [&](int begin, int end) {
    try {
      fn(begin, end);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mu);
      if (!error) error = std::current_exception();
    }
  };
  auto chunk = [&](int t) {
    run(int(int64_t(count) * t / threads), int(int64_t(count) * (t + 1) / threads));
  };
  std::vector<std::thread> pool;
  pool.reserve(static_cast<size_t>(threads) - 1);
  // Chunks whose thread the system refused run here, after chunk 0.
  const int started = start_threads(
      pool, threads - 1, [&](int i) { return std::thread(chunk, i + 1); }, "moddit policy");
  chunk(0);
  for (int t = started + 1; t < threads; ++t) chunk(t);
  for (auto& th : pool) th.join();
  if (error) std::rethrow_exception(error);
}

}  // namespace core
}  // namespace moddit
