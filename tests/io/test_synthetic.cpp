#include <gtest/gtest.h>

#include <cmath>

#include "eval/synthetic.hpp"
#include "io_test_util.hpp"
#include "moddit/error.hpp"
#include "moddit/trajectory.hpp"

namespace moddit {
namespace {

using synthetic::HeadKind;

// Attention statistics of one head, from a small dense softmax over a sample of
// video query rows (padding keys excluded, scale 1/sqrt(D)).
struct HeadStats {
  double local = 0;     // mass on the same frame, |dy| <= 2 and |dx| <= 2
  double temporal = 0;  // mass on the same (y, x) in other frames
  double sink = 0;      // mass on the sink tokens
  double text = 0;      // mass on the valid text tokens
  double entropy = 0;   // normalised by log(#keys)
};

HeadStats head_stats(const SyntheticSpec& spec, const TokenLayout& L, const HostTensor& q,
                     const HostTensor& k, int head, int b = 0, int query_stride = 5) {
  const int64_t N = L.total_tokens(), H = q.shape[2], D = q.shape[3];
  const float scale = 1.f / std::sqrt(static_cast<float>(D));
  const auto sinks = synthetic::sink_tokens(spec, b);
  const int64_t vb = L.video_begin(), P = L.tokens_per_frame();
  std::vector<double> p(static_cast<size_t>(N));
  HeadStats st;
  int rows = 0;
  const int64_t nkeys = N - (L.pad_end() - L.pad_begin());
  for (int64_t i = vb; i < vb + L.video_tokens(); i += query_stride) {
    const float* qi = q.f32() + ((b * N + i) * H + head) * D;
    double mx = -1e300;
    for (int64_t j = 0; j < N; ++j) {
      if (j >= L.pad_begin() && j < L.pad_end()) {
        p[static_cast<size_t>(j)] = -1e300;
        continue;
      }
      const float* kj = k.f32() + ((b * N + j) * H + head) * D;
      double dot = 0;
      for (int64_t d = 0; d < D; ++d) dot += double(qi[d]) * kj[d];
      p[static_cast<size_t>(j)] = dot * scale;
      mx = std::max(mx, p[static_cast<size_t>(j)]);
    }
    double sum = 0;
    for (auto& x : p) sum += (x = x <= -1e299 ? 0.0 : std::exp(x - mx));
    const int64_t vi = i - vb, fi = vi / P, yi = (vi % P) / L.width, xi = vi % L.width;
    double ent = 0;
    for (int64_t j = 0; j < N; ++j) {
      const double pj = p[static_cast<size_t>(j)] / sum;
      if (pj > 0) ent -= pj * std::log(pj);
      if (j < vb || j >= vb + L.video_tokens()) continue;
      const int64_t vj = j - vb, fj = vj / P, yj = (vj % P) / L.width, xj = vj % L.width;
      if (fj == fi && std::abs(yj - yi) <= 2 && std::abs(xj - xi) <= 2) st.local += pj;
      if (fj != fi && yj == yi && xj == xi) st.temporal += pj;
    }
    for (int64_t s : sinks) st.sink += p[static_cast<size_t>(s)] / sum;
    for (int64_t j = L.text_begin(); j < L.pad_begin(); ++j) st.text += p[static_cast<size_t>(j)] / sum;
    st.entropy += ent / std::log(static_cast<double>(nkeys));
    ++rows;
  }
  st.local /= rows;
  st.temporal /= rows;
  st.sink /= rows;
  st.text /= rows;
  st.entropy /= rows;
  return st;
}

// Mean stats over every head of `kind` in every layer at `step`.
HeadStats kind_stats(TrajectorySource& src, const SyntheticSpec& spec, HeadKind kind, int step,
                     int* found = nullptr) {
  HeadStats acc;
  int n = 0;
  HostTensor q, k, v;
  for (int l = 0; l < spec.layers; ++l) {
    src.load(step, l, q, k, v);
    for (int h = 0; h < spec.heads; ++h) {
      if (synthetic::head_kind(spec, l, h) != kind) continue;
      const HeadStats s = head_stats(spec, src.info().tokens, q, k, h);
      acc.local += s.local;
      acc.temporal += s.temporal;
      acc.sink += s.sink;
      acc.text += s.text;
      acc.entropy += s.entropy;
      ++n;
    }
  }
  if (found) *found = n;
  if (n > 0) {
    acc.local /= n;
    acc.temporal /= n;
    acc.sink /= n;
    acc.text /= n;
    acc.entropy /= n;
  }
  return acc;
}

SyntheticSpec small_spec() {
  SyntheticSpec s;  // the demo default: 6 frames x 16x16, 2 layers, 8 heads, D = 64
  s.num_steps = 20;
  s.seed = test::test_seed();
  return s;
}

TEST(Synthetic, InfoShapesAndLabel) {
  SyntheticSpec spec = small_spec();
  spec.text_tokens = 20;
  spec.text_valid = 13;
  spec.text_position = "before";
  spec.batch = 2;
  auto src = make_synthetic(spec);
  const TrajectoryInfo& info = src->info();
  EXPECT_EQ(info.tokens.total_tokens(), 20 + 6 * 16 * 16);
  EXPECT_EQ(info.tokens.text_position, TextPosition::Before);
  EXPECT_EQ(info.num_steps, 20);
  EXPECT_EQ(info.steps.size(), 20u);
  EXPECT_EQ(info.steps.front(), 0);
  EXPECT_EQ(info.steps.back(), 19);
  EXPECT_EQ(info.layers, (std::vector<int>{0, 1}));
  EXPECT_EQ(info.batch, 2);
  EXPECT_EQ(info.heads, 8);
  EXPECT_EQ(info.head_dim, 64);
  EXPECT_NE(info.source.find("synthetic"), std::string::npos);
  EXPECT_EQ(info.source, spec.describe());
  HostTensor q, k, v;
  src->load(3, 1, q, k, v);
  for (const HostTensor* t : {&q, &k, &v}) {
    EXPECT_EQ(t->dtype, DType::F32);
    EXPECT_EQ(t->shape[0], 2);
    EXPECT_EQ(t->shape[1], 20 + 1536);
    EXPECT_EQ(t->shape[2], 8);
    EXPECT_EQ(t->shape[3], 64);
    for (int64_t i = 0; i < t->numel(); ++i) ASSERT_TRUE(std::isfinite(t->f32()[i]));
  }
  EXPECT_THROW(src->load(20, 0, q, k, v), Error);
  EXPECT_THROW(src->load(0, 2, q, k, v), Error);
  EXPECT_THROW(src->load(-1, 0, q, k, v), Error);
  // Every kind appears in every layer when heads >= 4.
  for (int l = 0; l < spec.layers; ++l) {
    int seen[4] = {0, 0, 0, 0};
    for (int h = 0; h < spec.heads; ++h) ++seen[static_cast<int>(synthetic::head_kind(spec, l, h))];
    for (int kk = 0; kk < 4; ++kk) EXPECT_EQ(seen[kk], 2) << "layer " << l;
  }
}

TEST(Synthetic, RejectsBadSpecs) {
  SyntheticSpec s = small_spec();
  s.head_dim = 15;
  EXPECT_THROW(make_synthetic(s), Error);
  s = small_spec();
  s.text_tokens = 4;
  s.text_valid = 5;
  s.text_position = "after";
  EXPECT_THROW(make_synthetic(s), Error);
  s = small_spec();
  s.text_position = "sideways";
  EXPECT_THROW(make_synthetic(s), Error);
  s = small_spec();
  s.frames = 0;
  EXPECT_THROW(make_synthetic(s), Error);
}

TEST(Synthetic, DeterministicPerSeedAndOrderIndependent) {
  SyntheticSpec spec = small_spec();
  spec.text_tokens = 9;
  spec.text_valid = 6;
  spec.text_position = "after";
  auto a = make_synthetic(spec);
  auto b = make_synthetic(spec);
  HostTensor qa, ka, va, qb, kb, vb;
  b->load(17, 0, qb, kb, vb);  // different history: another step cached
  a->load(11, 1, qa, ka, va);
  b->load(11, 1, qb, kb, vb);
  EXPECT_EQ(qa.bytes, qb.bytes);
  EXPECT_EQ(ka.bytes, kb.bytes);
  EXPECT_EQ(va.bytes, vb.bytes);

  SyntheticSpec other = spec;
  other.seed = spec.seed + 1;
  auto c = make_synthetic(other);
  HostTensor qc, kc, vc;
  c->load(11, 1, qc, kc, vc);
  EXPECT_NE(qa.bytes, qc.bytes);
  EXPECT_NE(ka.bytes, kc.bytes);
  EXPECT_NE(va.bytes, vc.bytes);
  // Different seeds differ substantially, not in a few elements.
  double diff = 0, norm = 0;
  for (int64_t i = 0; i < qa.numel(); ++i) {
    diff += std::pow(double(qa.f32()[i]) - qc.f32()[i], 2);
    norm += std::pow(double(qa.f32()[i]), 2);
  }
  EXPECT_GT(diff / norm, 0.1);
}

TEST(Synthetic, PaddingRowsAreRandomAndChangeBetweenCalls) {
  SyntheticSpec spec = small_spec();
  spec.frames = 2;
  spec.text_tokens = 16;
  spec.text_valid = 10;
  spec.text_position = "before";
  auto src = make_synthetic(spec);
  HostTensor q0, k0, v0, q1, k1, v1;
  src->load(4, 0, q0, k0, v0);
  src->load(5, 0, q1, k1, v1);
  const int64_t row = 8 * 64;  // H * D floats per token
  double sq = 0;
  int64_t n = 0;
  for (int64_t t = 10; t < 16; ++t)
    for (int64_t i = 0; i < row; ++i) {
      const float x = q0.f32()[t * row + i];
      sq += double(x) * x;
      ++n;
      EXPECT_NE(x, q1.f32()[t * row + i]);
    }
  EXPECT_NEAR(sq / n, 1.0, 0.15);  // unit-variance noise
}

TEST(Synthetic, HeadKindsHaveTheirPatterns) {
  SyntheticSpec spec = small_spec();
  auto src = make_synthetic(spec);
  const int last = spec.num_steps - 1;
  int n = 0;
  const HeadStats spatial = kind_stats(*src, spec, HeadKind::Spatial, last, &n);
  ASSERT_GT(n, 0);
  const HeadStats temporal = kind_stats(*src, spec, HeadKind::Temporal, last);
  const HeadStats sink = kind_stats(*src, spec, HeadKind::Sink, last);
  const HeadStats mixed = kind_stats(*src, spec, HeadKind::Mixed, last);
  std::printf("last step  local temporal sink entropy\n");
  for (auto [name, s] : {std::pair<const char*, HeadStats>{"spatial", spatial}, {"temporal", temporal},
                         {"sink", sink}, {"mixed", mixed}})
    std::printf("%-9s %6.3f %8.3f %6.3f %7.3f\n", name, s.local, s.temporal, s.sink, s.entropy);
  // Spatial: most mass in a 5x5 neighbourhood of its own frame (25 of 1536 keys).
  EXPECT_GT(spatial.local, 0.6);
  EXPECT_LT(spatial.temporal, 0.1);
  // Temporal: the same position in the 5 other frames (5 of 1536 keys).
  EXPECT_GT(temporal.temporal, 0.4);
  EXPECT_GT(temporal.temporal, 5 * spatial.temporal);
  // Sink: a few keys take most of the mass.
  EXPECT_GT(sink.sink, 0.5);
  EXPECT_GT(sink.sink, 5 * spatial.sink);
  // Peaked but not one-hot.
  for (const HeadStats& s : {spatial, temporal, sink, mixed}) {
    EXPECT_GT(s.entropy, 0.03);
    EXPECT_LT(s.entropy, 0.8);
  }
}

TEST(Synthetic, VideoQueriesAttendToValidText) {
  SyntheticSpec spec = small_spec();
  spec.frames = 3;
  spec.text_tokens = 40;
  spec.text_valid = 25;
  spec.text_position = "before";
  auto src = make_synthetic(spec);
  const int last = spec.num_steps - 1;
  const HeadStats mixed = kind_stats(*src, spec, HeadKind::Mixed, last);
  const HeadStats spatial = kind_stats(*src, spec, HeadKind::Spatial, last);
  std::printf("text mass: mixed %.3f, spatial %.3f\n", mixed.text, spatial.text);
  // Mixed heads give text a real share (designed 10-35% before content effects),
  // spatial heads a small one (2-8%); neither ignores it nor is swamped by it.
  EXPECT_GT(mixed.text, 0.04);
  EXPECT_LT(mixed.text, 0.7);
  EXPECT_GT(spatial.text, 0.003);
  EXPECT_LT(spatial.text, 0.3);
  EXPECT_GT(mixed.text, spatial.text);
}

TEST(Synthetic, EarlyStepsAreDiffuse) {
  SyntheticSpec spec = small_spec();
  spec.text_tokens = 30;
  spec.text_valid = 20;
  spec.text_position = "after";
  auto src = make_synthetic(spec);
  double e_first = 0, e_last = 0;
  for (HeadKind kind : {HeadKind::Spatial, HeadKind::Temporal, HeadKind::Sink, HeadKind::Mixed}) {
    const HeadStats a = kind_stats(*src, spec, kind, 0);
    const HeadStats b = kind_stats(*src, spec, kind, spec.num_steps - 1);
    std::printf("%-9s entropy step 0 %.3f, last step %.3f\n", synthetic::to_string(kind), a.entropy,
                b.entropy);
    EXPECT_GT(a.entropy, b.entropy + 0.1) << synthetic::to_string(kind);
    e_first += a.entropy / 4;
    e_last += b.entropy / 4;
  }
  EXPECT_GT(e_first, e_last + 0.2);
}

TEST(Synthetic, PatternsDriftSmoothlyOverSteps) {
  SyntheticSpec spec = small_spec();
  auto src = make_synthetic(spec);
  HostTensor q[3], k[3], v[3];
  const int steps[3] = {10, 11, 19};
  for (int i = 0; i < 3; ++i) src->load(steps[i], 0, q[i], k[i], v[i]);
  auto rel = [](const HostTensor& a, const HostTensor& b) {
    double d = 0, n = 0;
    for (int64_t i = 0; i < a.numel(); ++i) {
      d += std::pow(double(a.f32()[i]) - b.f32()[i], 2);
      n += std::pow(double(a.f32()[i]), 2);
    }
    return std::sqrt(d / n);
  };
  const double near = rel(q[0], q[1]), far = rel(q[0], q[2]);
  std::printf("q change: step 10->11 %.3f, 10->19 %.3f\n", near, far);
  EXPECT_GT(near, 0.0);
  EXPECT_LT(near, far);
}

TEST(Synthetic, RoundTripsThroughTrajectoryFile) {
  test::ScratchDir dir;
  SyntheticSpec spec = small_spec();
  spec.frames = 2;
  spec.height = 4;
  spec.width = 6;
  spec.num_steps = 3;
  spec.text_tokens = 7;
  spec.text_valid = 5;
  spec.text_position = "before";
  spec.batch = 2;
  auto src = make_synthetic(spec);
  const std::string path = dir.file("synthetic.safetensors");
  write_trajectory(*src, path, DType::F32);
  auto file = open_trajectory(path);
  EXPECT_EQ(file->info().source, spec.describe());
  EXPECT_EQ(file->info().steps, src->info().steps);
  EXPECT_EQ(file->info().layers, src->info().layers);
  EXPECT_EQ(file->info().tokens.text_valid, 5);
  HostTensor q0, k0, v0, q1, k1, v1;
  for (int s = 0; s < 3; ++s)
    for (int l = 0; l < spec.layers; ++l) {
      src->load(s, l, q0, k0, v0);
      file->load(s, l, q1, k1, v1);
      EXPECT_EQ(q0.bytes, q1.bytes);
      EXPECT_EQ(k0.bytes, k1.bytes);
      EXPECT_EQ(v0.bytes, v1.bytes);
    }
}

}  // namespace
}  // namespace moddit
