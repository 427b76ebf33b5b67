#pragma once
// Per-head metrics of the evaluation, on the n x n video block grid: density,
// attention-mass recall, output error, and the oracle's mask (the key blocks with
// the most dense mass, the upper bound of recall at a given density).
#include <cstdint>
#include <vector>

#include "eval/dense_stats.hpp"
#include "moddit/host_tensor.hpp"
#include "moddit/policy.hpp"

namespace moddit {
namespace eval {

// The video x video part of what a plan computes, as masks [batch, heads, n, n]
// (1 = live). Heads in a dense group are all ones; heads in no group (skipped)
// all zeros.
std::vector<uint8_t> video_masks_of_plan(const Plan& plan, const BlockGrid& grid, int batch,
                                         int heads);

// Dense probability mass kept by a mask (video blocks in the mask plus the
// always-computed text keys), summed over the video query rows of one (b, h).
double kept_mass(const uint8_t* mask, const double* mass, const double* other_mass, int n);

// The oracle for one (b, h): the diagonal blocks, then the video blocks in
// descending order of dense mass per token pair, to the target density by
// fill_to_target (core/target_fill.hpp). For equal-sized blocks no mask of the
// same number of blocks that keeps the diagonal holds more mass.
std::vector<uint8_t> oracle_video_mask(const double* mass, const BlockGrid& grid, double target);

// Squared error and squared norm of one head's video rows of `out` against
// `ref` (both F32 [B, N, H, D]), summed over the batch, in double.
void video_output_error(const HostTensor& out, const HostTensor& ref, int64_t video_begin,
                        int64_t video_tokens, int head, double& err2, double& ref2);

}  // namespace eval
}  // namespace moddit
