#pragma once
// What the evaluation needs from the dense attention beyond its output: per
// (batch item, head) the dense probability mass of every video x video block pair
// (for recall and the oracle) and the exact sparsity-map counts (for pictures).
#include <cstdint>
#include <vector>

#include "moddit/host_tensor.hpp"
#include "moddit/token_layout.hpp"

namespace moddit {
namespace eval {

struct DenseBlockStats {
  int batch = 0, heads = 0, n = 0;
  int step = -1, layer = -1;  // which call these describe
  // [B, H, n, n]: sum of the dense P over (query in video block i, key in video block j).
  std::vector<double> mass;
  // [B, H, n]: mass of video query block i on keys outside the video (text); these
  // columns are always computed, so this mass is always kept.
  std::vector<double> other_mass;
  // [B, H, n, n]: pairs with P < eta (the numerator of the sparsity map S).
  std::vector<int32_t> below_eta;

  const double* mass_of(int b, int h) const {
    return mass.data() + (static_cast<size_t>(b) * heads + h) * n * n;
  }
  const double* other_mass_of(int b, int h) const {
    return other_mass.data() + (static_cast<size_t>(b) * heads + h) * n;
  }
  const int32_t* below_eta_of(int b, int h) const {
    return below_eta.data() + (static_cast<size_t>(b) * heads + h) * n * n;
  }
};

// From F32 q and k [B, N, H, D] and the dense row LSE [B, H, N] (natural log,
// over every real key), recomputes the video x video scores block by block:
// P = exp(s - lse). softmax_scale 0 = 1/sqrt(D).
void compute_dense_block_stats(const HostTensor& q, const HostTensor& k, const float* lse,
                               const TokenLayout& tokens, const BlockGrid& grid,
                               float softmax_scale, float eta, int threads,
                               DenseBlockStats& out);

}  // namespace eval
}  // namespace moddit
