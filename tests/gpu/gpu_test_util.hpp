#pragma once
// Helpers for the GPU tests: random inputs in bf16/f16 (and the same values in
// f32 for the CPU reference), device buffers through the backend, random block
// layouts, and the comparison of a CUDA run with the CPU reference.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "moddit/backend.hpp"
#include "moddit/block_layout.hpp"
#include "moddit/tensor.hpp"
#include "moddit/token_layout.hpp"

namespace moddit::gputest {

#define MODDIT_REQUIRE_GPU()                                            \
  do {                                                                  \
    if (!::moddit::cuda_available()) GTEST_SKIP() << "no CUDA device"; \
  } while (0)

inline uint16_t to_bits(float x, DType t) { return t == DType::BF16 ? f32_to_bf16(x) : f32_to_f16(x); }
inline float from_bits(uint16_t b, DType t) { return t == DType::BF16 ? bf16_to_f32(b) : f16_to_f32(b); }

// One tensor [B, N, H, D] in `layout`: the 16-bit values (for the GPU) and the same
// values as f32 (for the CPU reference), both contiguous in that layout.
struct HostPair {
  std::vector<uint16_t> bits;
  std::vector<float> f32;
};

inline HostPair random_tensor(std::mt19937& rng, int64_t n, DType t, float scale) {
  std::normal_distribution<float> nd(0.f, scale);
  HostPair h;
  h.bits.resize(n);
  h.f32.resize(n);
  for (int64_t i = 0; i < n; ++i) {
    h.bits[i] = to_bits(nd(rng), t);
    h.f32[i] = from_bits(h.bits[i], t);
  }
  return h;
}

// A random layout: each (b, head, qb) keeps each key block with probability
// `density`, and always its diagonal block.
inline BlockLayout random_layout(std::mt19937& rng, int B, int H, int nb, double density) {
  BlockMask m(B, H, nb, nb, false);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h)
      for (int q = 0; q < nb; ++q)
        for (int k = 0; k < nb; ++k) m.at(b, h, q, k) = (k == q || u(rng) < density) ? 1 : 0;
  return to_layout(m);
}

struct Case {
  TokenLayout tokens;
  int B = 1, H = 2, D = 128;
  DType dtype = DType::BF16;
  Layout layout = Layout::NHD;
  int block_size = 128;
  std::vector<int32_t> heads;  // empty = all
  enum class Mask { Dense, Random, Diagonal, FullLayout } mask = Mask::Dense;
  double density = 0.5;
  bool with_map = true;
  float q_scale = 1.5f;  // score spread: enough that some P < eta and some not
  float eta = 1e-4f;
  MapStatistic map_statistic = MapStatistic::Eq2;
  uint32_t seed = 1;
};

struct Outcome {
  double out_rel_l2 = 0;       // over the computed heads
  double lse_max_abs = 0;      // over finite rows
  int64_t map_mismatch = 0;    // |gpu - cpu| summed over blocks
  int64_t map_straddle = 0;    // pairs whose score is within the fp32/bf16 noise of eta
  // MapStatistic::Mass: map_mismatch counts the blocks whose values differ by more
  // than their mass's tolerance (relative: the LSE difference and fp32 sums);
  // the largest difference over all blocks relative to the block's keys x mass.
  double map_mass_max_rel = 0;
  int64_t map_written_wrong = 0;  // blocks written by one backend and not the other
  int64_t untouched_wrong = 0;    // elements of uncovered heads that changed
  int64_t nonfinite = 0;
};

Outcome run_case(Backend& gpu, Backend& cpu, const Case& c);

// What cuda::schedule_rows must give (the one row schedule, moddit_step.hpp),
// written plainly: rows in groups of `group` consecutive rows, groups by total
// cost largest first, rows by cost within a group largest first, ties in index
// order. group = all rows: plain longest-first.
inline std::vector<int32_t> reference_schedule(const std::vector<int32_t>& cost, int group) {
  const int64_t rows = int64_t(cost.size()), groups = rows / group;
  std::vector<int64_t> gcost(size_t(groups), 0);
  for (int64_t r = 0; r < rows; ++r) gcost[size_t(r / group)] += cost[size_t(r)];
  std::vector<int32_t> gorder(static_cast<size_t>(groups));
  for (int64_t g = 0; g < groups; ++g) gorder[size_t(g)] = int32_t(g);
  std::stable_sort(gorder.begin(), gorder.end(), [&](int32_t a, int32_t b) { return gcost[a] > gcost[b]; });
  std::vector<int32_t> want;
  for (int32_t g : gorder) {
    const size_t first = want.size();
    for (int q = 0; q < group; ++q) want.push_back(int32_t(int64_t(g) * group + q));
    std::stable_sort(want.begin() + first, want.end(), [&](int32_t a, int32_t b) { return cost[a] > cost[b]; });
  }
  return want;
}

}  // namespace moddit::gputest
