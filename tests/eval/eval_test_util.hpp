#pragma once
// Helpers of the eval tests: a small random trajectory with structure (so that
// masks matter) and naive double-precision references for attention with a
// block mask, recall and the relative L2 error.
#include <cmath>
#include <random>
#include <vector>

#include "moddit/host_tensor.hpp"
#include "moddit/token_layout.hpp"
#include "moddit/trajectory.hpp"

namespace moddit::test {

// Q/K/V with a per-(step, layer) seed: random Gaussian plus a shared low-rank
// term that makes some keys popular, scaled so the softmax is peaky.
class RandomTrajectory : public TrajectorySource {
 public:
  RandomTrajectory(const TokenLayout& tokens, int steps, int layers, int batch, int heads, int dim,
                   unsigned seed)
      : seed_(seed) {
    info_.tokens = tokens;
    info_.num_steps = steps;
    info_.batch = batch;
    info_.heads = heads;
    info_.head_dim = dim;
    for (int s = 0; s < steps; ++s) info_.steps.push_back(s);
    for (int l = 0; l < layers; ++l) info_.layers.push_back(l);
    info_.source = "random test trajectory";
  }
  const TrajectoryInfo& info() const override { return info_; }
  void load(int step, int layer, HostTensor& q, HostTensor& k, HostTensor& v) override {
    const int64_t B = info_.batch, N = info_.tokens.total_tokens(), H = info_.heads,
                  D = info_.head_dim;
    std::mt19937 rng(seed_ * 7919u + unsigned(step) * 131u + unsigned(layer));
    std::normal_distribution<float> g(0.f, 1.f);
    q = HostTensor(DType::F32, B, N, H, D);
    k = HostTensor(DType::F32, B, N, H, D);
    v = HostTensor(DType::F32, B, N, H, D);
    std::vector<float> dir(static_cast<size_t>(H * D));
    for (auto& x : dir) x = g(rng);
    const float sharp = 2.0f + 0.05f * float(step);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t n = 0; n < N; ++n)
        for (int64_t h = 0; h < H; ++h) {
          const float pop = (n % 17 == 3) ? 1.5f : 0.f;  // popular keys: vertical stripes
          const float local = std::sin(0.05f * float(n) + float(h));  // smooth in the sequence
          for (int64_t d = 0; d < D; ++d) {
            const size_t i = static_cast<size_t>(((b * N + n) * H + h) * D + d);
            const float dd = dir[static_cast<size_t>(h * D + d)];
            q.f32()[i] = sharp * (0.4f * g(rng) + 0.6f * dd + 0.5f * local * (d % 2 ? 1 : -1));
            k.f32()[i] = 0.4f * g(rng) + pop * dd + 0.5f * local * (d % 2 ? 1 : -1);
            v.f32()[i] = g(rng);
          }
        }
  }

 private:
  TrajectoryInfo info_;
  unsigned seed_;
};

// Naive attention of one (b, h) in double: for every video query row, P over the
// real keys allowed by `video_mask` (text keys always allowed; video keys when
// their block pair is live) -> the output rows (V x D) and the mass of the dense
// P inside the mask per row. `video_mask` null = dense.
struct NaiveHeadResult {
  std::vector<double> out;     // V x D
  std::vector<double> kept;    // V: dense P mass inside the mask
};

inline NaiveHeadResult naive_video_rows(const HostTensor& q, const HostTensor& k,
                                        const HostTensor& v, const TokenLayout& tokens,
                                        const BlockGrid& grid, int b, int h,
                                        const uint8_t* video_mask) {
  const int64_t N = q.shape[1], H = q.shape[2], D = q.shape[3];
  const int64_t vb = tokens.video_begin(), V = tokens.video_tokens();
  const int n = grid.num_video_blocks;
  auto at = [&](const HostTensor& t, int64_t tok, int64_t d) {
    return double(t.f32()[((int64_t(b) * N + tok) * H + h) * D + d]);
  };
  auto video_block = [&](int64_t rel) {
    for (int j = 0; j < n; ++j)
      if (rel >= grid.video_block_begin(j) && rel < grid.video_block_end(j)) return j;
    return -1;
  };
  const double scale = 1.0 / std::sqrt(double(D));
  NaiveHeadResult r;
  r.out.assign(static_cast<size_t>(V * D), 0.0);
  r.kept.assign(static_cast<size_t>(V), 0.0);
  std::vector<double> s(static_cast<size_t>(N));
  for (int64_t qi = 0; qi < V; ++qi) {
    const int64_t qt = vb + qi;
    const int bi = video_block(qi);
    double mx_all = -1e300, mx_live = -1e300;
    std::vector<char> real(static_cast<size_t>(N)), live(static_cast<size_t>(N));
    for (int64_t kt = 0; kt < N; ++kt) {
      real[kt] = kt < tokens.pad_begin() || kt >= tokens.pad_end();
      const bool is_video = kt >= vb && kt < vb + V;
      live[kt] = real[kt] && (!is_video || !video_mask ||
                              video_mask[bi * n + video_block(kt - vb)] || bi == video_block(kt - vb));
      double dot = 0;
      for (int64_t d = 0; d < D; ++d) dot += at(q, qt, d) * at(k, kt, d);
      s[kt] = dot * scale;
      if (real[kt]) mx_all = std::max(mx_all, s[kt]);
      if (live[kt]) mx_live = std::max(mx_live, s[kt]);
    }
    double z_all = 0, z_live = 0;
    for (int64_t kt = 0; kt < N; ++kt) {
      if (real[kt]) z_all += std::exp(s[kt] - mx_all);
      if (live[kt]) z_live += std::exp(s[kt] - mx_live);
    }
    for (int64_t kt = 0; kt < N; ++kt) {
      if (!live[kt]) continue;
      r.kept[qi] += std::exp(s[kt] - mx_all) / z_all;
      const double p = std::exp(s[kt] - mx_live) / z_live;
      for (int64_t d = 0; d < D; ++d) r.out[qi * D + d] += p * at(v, kt, d);
    }
  }
  return r;
}

}  // namespace moddit::test
