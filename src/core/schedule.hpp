#pragma once
// The MOD-DiT step schedule (DESIGN.md 2): with warm-up m and interval dt,
//   step < m-2            dense
//   step = m-2, m-1       dense + exact map + fit (the two reference points)
//   step = m + k*dt, k>=1 refresh (map on live blocks, or dense with "dense" refresh)
//   other steps >= m      sparse
#include "moddit/policy.hpp"

namespace moddit {
namespace core {

CallKind schedule_kind(int step, int warmup_steps, int interval);

}  // namespace core
}  // namespace moddit
