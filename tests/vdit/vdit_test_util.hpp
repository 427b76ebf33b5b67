#pragma once
// Helpers of the Sparse-vDiT tests: small token layouts (unaligned frames, text
// before/after with padding), a brute-force token-level mask builder, and an
// in-memory random trajectory.
#include <cmath>
#include <cstdlib>
#include <functional>
#include <map>
#include <random>
#include <tuple>

#include "moddit/block_layout.hpp"
#include "moddit/host_tensor.hpp"
#include "moddit/token_layout.hpp"
#include "moddit/trajectory.hpp"

namespace vdit_test {

inline moddit::TokenLayout layout(int64_t frames, int64_t h, int64_t w, int64_t text = 0,
                                  int64_t valid = 0, moddit::TextPosition pos = moddit::TextPosition::None) {
  moddit::TokenLayout t;
  t.frames = frames;
  t.height = h;
  t.width = w;
  t.text_tokens = text;
  t.text_valid = valid;
  t.text_position = pos;
  return t;
}

// The shapes every geometry test runs on: frames not aligned with blocks, blocks
// spanning several frames, text before/after (with padding), a partial last block.
inline std::vector<moddit::TokenLayout> small_layouts() {
  using moddit::TextPosition;
  return {layout(5, 7, 5),                              // P = 35 < Bs: blocks span frames
          layout(4, 10, 9, 77, 60, TextPosition::Before),  // P = 90, text 77 before
          layout(3, 11, 13, 40, 40, TextPosition::After),  // P = 143 > Bs, text after
          layout(7, 4, 4)};                             // P = 16: many frames per block
}

// Block index of every token.
inline std::vector<int> block_of(const moddit::BlockGrid& g) {
  std::vector<int> out(static_cast<size_t>(g.starts.back()));
  for (int b = 0; b < g.num_blocks(); ++b)
    for (int t = g.starts[b]; t < g.starts[b + 1]; ++t) out[size_t(t)] = b;
  return out;
}

// Full-sequence block mask (one head) from a token-pair predicate on video tokens
// (video-relative indices); text rows/columns and diagonal blocks live.
inline moddit::BlockMask brute_force_mask(const moddit::TokenLayout& t, const moddit::BlockGrid& g,
                                          const std::function<bool(int64_t, int64_t)>& live) {
  const int nb = g.num_blocks();
  moddit::BlockMask m(1, 1, nb, nb, false);
  const auto blk = block_of(g);
  const int64_t N = t.total_tokens(), v0 = t.video_begin(), V = t.video_tokens();
  for (int64_t i = 0; i < N; ++i)
    for (int64_t j = 0; j < N; ++j) {
      const bool iv = i >= v0 && i < v0 + V, jv = j >= v0 && j < v0 + V;
      const bool on = !iv || !jv || blk[size_t(i)] == blk[size_t(j)] || live(i - v0, j - v0);
      if (on) m.at(0, 0, blk[size_t(i)], blk[size_t(j)]) = 1;
    }
  return m;
}

// A trajectory of random Q/K/V (fresh seed per (step, layer)) with a few
// structured heads: head 0 local, head 1 attends to a "sink" key range.
class RandomTrajectory : public moddit::TrajectorySource {
 public:
  RandomTrajectory(const moddit::TokenLayout& t, int steps, int layers, int heads, int dim,
                   int batch, unsigned seed, int64_t sink_begin = -1)
      : seed_(seed), sink_(sink_begin) {
    info_.tokens = t;
    info_.num_steps = steps;
    info_.batch = batch;
    info_.heads = heads;
    info_.head_dim = dim;
    for (int s = 0; s < steps; ++s) info_.steps.push_back(s);
    for (int l = 0; l < layers; ++l) info_.layers.push_back(l);
    info_.source = "random test trajectory seed " + std::to_string(seed);
  }
  const moddit::TrajectoryInfo& info() const override { return info_; }
  void load(int step, int layer, moddit::HostTensor& q, moddit::HostTensor& k,
            moddit::HostTensor& v) override {
    const int B = info_.batch, H = info_.heads, D = info_.head_dim;
    const int64_t N = info_.tokens.total_tokens();
    std::mt19937 rng(seed_ * 7919u + unsigned(step) * 131u + unsigned(layer));
    std::normal_distribution<float> nd(0.f, 1.f);
    q = moddit::HostTensor(moddit::DType::F32, B, N, H, D);
    k = q;
    v = q;
    for (int64_t i = 0; i < q.numel(); ++i) {
      q.f32()[i] = nd(rng);
      k.f32()[i] = nd(rng);
      v.f32()[i] = nd(rng);
    }
    if (sink_ >= 0 && H > 1)
      for (int b = 0; b < B; ++b)
        for (int64_t n = sink_; n < std::min<int64_t>(N, sink_ + 16); ++n)
          for (int d = 0; d < D; ++d) {
            // Keys of the sink align with every query of head 1 (q gets a shared direction).
            k.f32()[((b * N + n) * H + 1) * D + d] = (d == 0 ? 6.f : 0.f);
          }
    if (sink_ >= 0 && H > 1)
      for (int b = 0; b < B; ++b)
        for (int64_t n = 0; n < N; ++n) q.f32()[((b * N + n) * H + 1) * D + 0] = 3.f;
  }

 private:
  moddit::TrajectoryInfo info_;
  unsigned seed_;
  int64_t sink_;
};

}  // namespace vdit_test
