#pragma once
// A test trajectory with the head types that stress a block mask, built from
// explicit features so that each head does what its name says:
//   spatial  a local neighbourhood in the query's own frame;
//   sink     a few single "sink" key tokens take a large share of every row
//            (about a fifth each), the rest local;
//   scene    the same spatial position in the frames of the query's scene: the
//            content changes at a scene cut (frame `cut`), so attention across
//            the cut is weak;
//   text     video queries attend to the (padded) text keys and locally.
// Head h has kind h % 4. Content is fixed per (layer, head); a step adds less
// noise as it advances, like a denoising schedule.
#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "moddit/host_tensor.hpp"
#include "moddit/token_layout.hpp"
#include "moddit/trajectory.hpp"

namespace moddit::test {

enum class StructuredHead { Spatial = 0, Sink = 1, Scene = 2, Text = 3 };

class StructuredTrajectory : public TrajectorySource {
 public:
  StructuredTrajectory(const TokenLayout& tokens, int steps, int layers, int heads, int dim,
                       unsigned seed)
      : seed_(seed) {
    info_.tokens = tokens;
    info_.num_steps = steps;
    info_.batch = 1;
    info_.heads = heads;
    info_.head_dim = dim;
    for (int s = 0; s < steps; ++s) info_.steps.push_back(s);
    for (int l = 0; l < layers; ++l) info_.layers.push_back(l);
    info_.source = "structured test trajectory (sink, scene cut, text heads)";
  }
  static StructuredHead kind(int head) { return static_cast<StructuredHead>(head % 4); }
  int scene_cut() const { return static_cast<int>(info_.tokens.frames / 2); }
  // Sequence indices of the sink tokens (video tokens).
  std::vector<int64_t> sinks() const {
    const TokenLayout& t = info_.tokens;
    const int64_t V = t.video_tokens(), v0 = t.video_begin();
    return {v0 + V / 7, v0 + (3 * V) / 7, v0 + (5 * V) / 7};
  }
  const TrajectoryInfo& info() const override { return info_; }

  void load(int step, int layer, HostTensor& q, HostTensor& k, HostTensor& v) override {
    const TokenLayout& t = info_.tokens;
    const int64_t N = t.total_tokens(), H = info_.heads, D = info_.head_dim;
    const int64_t v0 = t.video_begin(), V = t.video_tokens(), P = t.tokens_per_frame();
    std::mt19937 noise_rng(seed_ * 7919u + unsigned(step) * 131u + unsigned(layer));
    std::normal_distribution<float> g(0.f, 1.f);
    q = HostTensor(DType::F32, 1, N, H, D);
    k = HostTensor(DType::F32, 1, N, H, D);
    v = HostTensor(DType::F32, 1, N, H, D);
    const float noise = 0.6f / (1.0f + 0.3f * float(step));
    const std::vector<int64_t> sink = sinks();
    for (int64_t h = 0; h < H; ++h) {
      std::mt19937 rng(seed_ * 31u + unsigned(layer) * 977u + unsigned(h));
      std::vector<float> scene_a(D), scene_b(D), text_dir(D), sink_dir(D);
      for (auto* vec : {&scene_a, &scene_b, &text_dir, &sink_dir})
        for (auto& x : *vec) x = g(rng) / std::sqrt(float(D));
      const StructuredHead kd = kind(int(h));
      for (int64_t n = 0; n < N; ++n) {
        const bool video = n >= v0 && n < v0 + V;
        const int64_t rel = video ? n - v0 : 0;
        const float f = float(rel / P), y = float((rel % P) / t.width), x = float(rel % t.width);
        const bool late = video && rel / P >= scene_cut();
        const bool is_sink = std::find(sink.begin(), sink.end(), n) != sink.end();
        float* qi = q.f32() + (n * H + h) * D;
        float* ki = k.f32() + (n * H + h) * D;
        float* vi = v.f32() + (n * H + h) * D;
        for (int64_t d = 0; d < D; ++d) {
          // Positional features: frequency pairs over (frame, y, x).
          const int64_t axis = d % 3, freq = (d / 6) % 4;
          const float pos = axis == 0 ? f : axis == 1 ? y : x;
          const float w = 0.5f / float(1 << freq);
          const float feat = (d / 3) % 2 ? std::sin(w * pos) : std::cos(w * pos);
          float wq = 1.f, wk = 1.f;  // weights of the positional part
          if (kd == StructuredHead::Scene && axis == 0) wq = wk = 0.f;  // any frame
          float qv = video ? 1.5f * wq * feat : 0.f, kv = video ? 1.5f * wk * feat : 0.f;
          if (kd == StructuredHead::Scene && video) {
            const float c = late ? scene_b[d] : scene_a[d];
            qv += 6.f * c;
            kv += 6.f * c;
          }
          if (kd == StructuredHead::Sink) {
            qv += video ? 4.f * sink_dir[d] : 0.f;
            if (is_sink) kv += sink_strength_ * sink_dir[d];
          }
          if (kd == StructuredHead::Text) {
            qv += video ? 4.f * text_dir[d] : 0.f;
            if (!video) kv += 4.f * text_dir[d];
          }
          qi[d] = qv + noise * g(noise_rng);
          ki[d] = kv + noise * g(noise_rng);
          vi[d] = g(noise_rng);
        }
      }
    }
  }

 private:
  TrajectoryInfo info_;
  unsigned seed_;
  float sink_strength_ = 4.f;  // a sink key takes about a fifth of a row (test_target_density)

 public:
  void set_sink_strength(float s) { sink_strength_ = s; }
};

}  // namespace moddit::test
