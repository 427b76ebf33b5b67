#include "moddit/size_limits.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <limits>
#include <sstream>
#include <thread>

#include "moddit/error.hpp"

namespace moddit {

namespace {
std::string factors_text(std::initializer_list<int64_t> factors) {
  std::ostringstream os;
  bool first = true;
  for (int64_t f : factors) {
    os << (first ? "" : " x ") << f;
    first = false;
  }
  return os.str();
}

std::string gib(uint64_t bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f GiB", double(bytes) / double(uint64_t(1) << 30));
  return buf;
}
}  // namespace

int64_t checked_mul(int64_t a, int64_t b, const std::string& what) {
  MODDIT_CHECK(a >= 0 && b >= 0, what, ": negative size in ", a, " x ", b);
  int64_t r = 0;
  MODDIT_CHECK(!__builtin_mul_overflow(a, b, &r), what, ": ", a, " x ", b,
               " overflows a 64-bit size");
  return r;
}

int64_t checked_product(std::initializer_list<int64_t> factors, int64_t limit,
                        const std::string& what) {
  int64_t r = 1;
  for (int64_t f : factors) {
    MODDIT_CHECK(f >= 0, what, ": negative size in ", factors_text(factors));
    MODDIT_CHECK(!__builtin_mul_overflow(r, f, &r), what, ": ", factors_text(factors),
                 " overflows a 64-bit size");
  }
  MODDIT_CHECK(r <= limit, what, ": ", factors_text(factors), " = ", r,
               " is more than the limit of ", limit);
  return r;
}

void check_range(int64_t value, int64_t lo, int64_t hi, const std::string& what, const char* why) {
  MODDIT_CHECK(value >= lo && value <= hi, what, " = ", value, " is out of range [", lo, ", ", hi,
               "]", why ? std::string(" (") + why + ")" : std::string());
}

int max_cpu_threads() {
  const unsigned hw = std::thread::hardware_concurrency();
  return std::max<int>(kMaxThreads, static_cast<int>(std::min<unsigned>(hw, 1u << 20)));
}

void check_thread_count(int64_t threads, const std::string& what) {
  MODDIT_CHECK(threads >= 0, what, ": threads must be >= 0 (0 = all hardware threads), got ",
               threads);
  MODDIT_CHECK(threads <= max_cpu_threads(), what, ": ", threads, " threads is more than the ",
               max_cpu_threads(), " moddit allows (this machine has ",
               std::thread::hardware_concurrency(),
               " hardware threads; more threads than that only add contention)");
}

uint64_t physical_memory_bytes() {
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page <= 0) return 0;
  return uint64_t(pages) * uint64_t(page);
}

void check_fits_in_memory(uint64_t bytes, const std::string& what) {
  const uint64_t have = physical_memory_bytes();
  MODDIT_CHECK(have == 0 || bytes <= have, what, " needs ", gib(bytes), ", more than this machine's ",
               gib(have), " of memory");
}

}  // namespace moddit
