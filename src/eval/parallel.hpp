#pragma once
// A minimal parallel-for over an index range for the evaluation's metric passes
// (independent (batch, head) pairs). Exceptions in workers are rethrown.
#include <functional>

namespace moddit {
namespace eval {

// Calls fn(i) for i in [0, count) on up to `threads` threads (0 = all hardware threads).
void parallel_for(int count, int threads, const std::function<void(int)>& fn);
int resolve_threads(int threads);

}  // namespace eval
}  // namespace moddit
