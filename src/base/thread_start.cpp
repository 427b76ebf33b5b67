#include "base/thread_start.hpp"

#include <atomic>
#include <cstdio>
#include <system_error>

namespace moddit {

int start_threads(std::vector<std::thread>& pool, int count,
                  const std::function<std::thread(int)>& make, const char* who) {
  static std::atomic<bool> reported{false};
  int started = 0;
  for (; started < count; ++started) {
    try {
      pool.push_back(make(started));
    } catch (const std::system_error& e) {
      if (!reported.exchange(true))
        std::fprintf(stderr,
                     "moddit: warning: %s: the system refused thread %d of %d (%s); running on "
                     "the %d that could be made\n",
                     who, started + 2, count + 1, e.what(), started + 1);
      break;
    }
  }
  return started;
}

}  // namespace moddit
