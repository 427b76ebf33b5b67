#pragma once
// Every size moddit allocates or indexes by is a product (tokens = frames x
// height x width, bytes = B x N x H x D x dtype size, map counts = B x H x n x n,
// layout rows = B x H x blocks, ...). Such products are computed here, checked
// for overflow and against the bound that applies, before anything is
// allocated: a wrapped product would pass every later check with a small
// number and then index out of bounds. The bounds, with the reason for each,
// live here too, so that every entry point (C++, CLI, Python) refuses the same
// values with the same reason.
#include <cstdint>
#include <initializer_list>
#include <string>

namespace moddit {

// Tokens of one sequence: the kernels index tokens with int32.
constexpr int64_t kMaxTokens = (int64_t(1) << 31) - 1;
// Batch items and heads of one call: the kernels' work items are int32 products
// of batch x heads x blocks (prepare_params checks the product as well).
constexpr int64_t kMaxBatch = int64_t(1) << 20;
constexpr int64_t kMaxHeads = int64_t(1) << 16;
// Layers and denoising steps of a Session or policy: per-layer and per-step state
// is allocated up front; no video DiT has more than a few hundred of either.
constexpr int64_t kMaxLayers = int64_t(1) << 16;
constexpr int64_t kMaxSteps = int64_t(1) << 20;
// CPU threads: each is a real thread with its own stack; beyond the machine's
// hardware threads they only add contention (the bound is max(this, hardware)).
constexpr int kMaxThreads = 1024;

// a * b for non-negative a and b, or moddit::Error "<what>: <a> x <b> overflows".
int64_t checked_mul(int64_t a, int64_t b, const std::string& what);

// The product of non-negative factors, refused with moddit::Error naming `what`
// when it overflows int64 or exceeds `limit` (the factors are printed).
int64_t checked_product(std::initializer_list<int64_t> factors, int64_t limit,
                        const std::string& what);

// Throws moddit::Error "<what> = <value> is out of range [lo, hi]" (plus `why`
// when given) unless lo <= value <= hi.
void check_range(int64_t value, int64_t lo, int64_t hi, const std::string& what,
                 const char* why = nullptr);

// The bound on a CPU thread count (0 = all hardware threads is always allowed);
// throws moddit::Error "<what>: ..." with the reason when `threads` is outside.
int max_cpu_threads();
void check_thread_count(int64_t threads, const std::string& what);

// Bytes of memory this machine has (physical RAM), 0 when unknown. Allocations
// that certainly cannot fit are refused up front instead of ending in a kill.
uint64_t physical_memory_bytes();
// Throws moddit::Error "<what> needs X GiB, more than this machine's Y GiB of
// memory" when `bytes` exceeds physical memory (no-op when unknown).
void check_fits_in_memory(uint64_t bytes, const std::string& what);

}  // namespace moddit
