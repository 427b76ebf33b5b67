#pragma once
// `moddit bench`'s MOD-DiT overhead section: the host-side work of the policy
// (plan + observe) per attention call at the Wan2.1-14B 480p shape with CFG as
// batch 2, against the dense attention of the same call on the GPU, and the
// policy's state for the whole model.
#include <memory>

#include "moddit/backend.hpp"

namespace moddit::cli {

struct OverheadOptions {
  int layers = 40;      // whole-model state: layers x heads x 2 CFG slots
  int batch = 2;        // CFG branches in one call
  int iters = 5;        // timed repetitions of the dense attention (median)
  double target_density = 0.15;
};

// Prints one table (per call kind: plan, observe, total, % of dense attention)
// and the state line. `gpu` may be null: dense time is then reported unavailable.
void print_moddit_overhead(const OverheadOptions& o, Backend* gpu);

}  // namespace moddit::cli
