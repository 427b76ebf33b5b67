#pragma once
// A minimal fork-join loop for the per-head policy work (masks, map fusion, fit
// sums): one call splits [0, count) into contiguous chunks over up to
// max_threads() threads and joins. Threads are started per call (tens of
// microseconds), which is small next to the millisecond-scale work they share.
#include <functional>

namespace moddit {
namespace core {

// Threads used by parallel_for: hardware threads capped at 16, or the environment
// variable MODDIT_THREADS when set to a positive integer.
int max_threads();

// Runs fn(begin, end) on disjoint chunks covering [0, count). Runs inline when
// count < 2 * min_chunk or only one thread is available. Exceptions from any
// chunk are rethrown (the first one) after all chunks finish.
void parallel_for(int count, int min_chunk, const std::function<void(int, int)>& fn);

}  // namespace core
}  // namespace moddit
