// The generator's two fitting knobs (SyntheticSpec::head_logit_spread and
// value_offset, used by `moddit demo`): each changes only what it says, and 0
// is the unfitted generator bit for bit.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "expect_error.hpp"
#include "moddit/trajectory.hpp"

namespace moddit {
namespace {

SyntheticSpec knob_spec() {
  SyntheticSpec s;
  s.frames = 3;
  s.height = 6;
  s.width = 8;
  s.text_tokens = 5;
  s.text_valid = 4;
  s.text_position = "before";
  s.num_steps = 6;
  s.layers = 2;
  s.heads = 5;
  s.head_dim = 24;
  return s;
}

struct Qkv {
  HostTensor q, k, v;
};

Qkv load(const SyntheticSpec& spec, int step, int layer) {
  Qkv t;
  make_synthetic(spec)->load(step, layer, t.q, t.k, t.v);
  return t;
}

bool same(const HostTensor& a, const HostTensor& b) {
  return a.numel() == b.numel() && std::equal(a.f32(), a.f32() + a.numel(), b.f32());
}

TEST(SyntheticKnobs, ValueOffsetChangesOnlyTheValuesByOneVectorPerHead) {
  SyntheticSpec spec = knob_spec();
  const Qkv base = load(spec, 4, 1);
  spec.value_offset = 0.3;
  const Qkv off = load(spec, 4, 1);
  EXPECT_TRUE(same(base.q, off.q));
  EXPECT_TRUE(same(base.k, off.k));
  EXPECT_FALSE(same(base.v, off.v));
  // The difference is the same vector for every real token of a head (padded text
  // rows are random either way), and a different one per head.
  const TokenLayout L = make_synthetic(spec)->info().tokens;
  const int64_t N = L.total_tokens(), H = spec.heads, D = spec.head_dim;
  std::vector<double> first(static_cast<size_t>(H * D));
  for (int64_t n = 0; n < N; ++n) {
    if (n >= L.pad_begin() && n < L.pad_end()) continue;
    for (int64_t i = 0; i < H * D; ++i) {
      const double d = double(off.v.f32()[n * H * D + i]) - base.v.f32()[n * H * D + i];
      if (n == 0) first[static_cast<size_t>(i)] = d;
      EXPECT_NEAR(d, first[static_cast<size_t>(i)], 1e-5) << "token " << n << " index " << i;
    }
  }
  double diff01 = 0;
  for (int64_t d = 0; d < D; ++d) diff01 += std::fabs(first[d] - first[D + d]);
  EXPECT_GT(diff01, 0.1);
}

TEST(SyntheticKnobs, HeadLogitSpreadScalesEachHeadsQueriesOnly) {
  SyntheticSpec spec = knob_spec();
  const Qkv base = load(spec, 5, 0);
  spec.head_logit_spread = 1.5;
  const Qkv sp = load(spec, 5, 0);
  EXPECT_TRUE(same(base.k, sp.k));
  EXPECT_TRUE(same(base.v, sp.v));
  // Per head, q is the unfitted q times one factor; the factors of a layer are
  // exp(1.5 z), z evenly over [-1, 1] in some order.
  const TokenLayout L = make_synthetic(spec)->info().tokens;
  const int64_t H = spec.heads, D = spec.head_dim;
  std::vector<double> factors;
  for (int64_t h = 0; h < H; ++h) {
    double num = 0, den = 0;
    for (int64_t n = L.video_begin(); n < L.video_begin() + L.video_tokens(); ++n)
      for (int64_t d = 0; d < D; ++d) {
        const double a = base.q.f32()[(n * H + h) * D + d], b = sp.q.f32()[(n * H + h) * D + d];
        num += a * b;
        den += a * a;
      }
    const double f = num / den;
    for (int64_t n = L.video_begin(); n < L.video_begin() + L.video_tokens(); ++n)
      for (int64_t d = 0; d < D; ++d) {
        const double a = base.q.f32()[(n * H + h) * D + d], b = sp.q.f32()[(n * H + h) * D + d];
        ASSERT_NEAR(b, f * a, 1e-4 * (1 + std::fabs(f * a))) << "head " << h;
      }
    factors.push_back(f);
  }
  std::sort(factors.begin(), factors.end());
  for (int64_t r = 0; r < H; ++r)
    EXPECT_NEAR(factors[r], std::exp(1.5 * (-1.0 + 2.0 * r / (H - 1))), 1e-4 * factors[r]) << r;
}

TEST(SyntheticKnobs, BadKnobsAreRefusedByName) {
  for (double bad : {-0.1, 4.5, std::nan("")}) {
    SyntheticSpec s = knob_spec();
    s.head_logit_spread = bad;
    test::expect_error([&] { make_synthetic(s); }, "head_logit_spread");
  }
  for (double bad : {-1.0, 101.0, double(INFINITY)}) {
    SyntheticSpec s = knob_spec();
    s.value_offset = bad;
    test::expect_error([&] { make_synthetic(s); }, "value_offset");
  }
}

TEST(SyntheticKnobs, TheDescriptionNamesTheKnobsOnlyWhenSet) {
  SyntheticSpec s = knob_spec();
  EXPECT_EQ(s.describe().find("spread"), std::string::npos);
  EXPECT_EQ(s.describe().find("offset"), std::string::npos);
  s.head_logit_spread = kModditTinyHeadLogitSpread;
  s.value_offset = kModditTinyValueOffset;
  EXPECT_NE(s.describe().find("head logit spread 3.5"), std::string::npos) << s.describe();
  EXPECT_NE(s.describe().find("value offset 0.3"), std::string::npos) << s.describe();
  EXPECT_NE(s.describe().find("fitted to moddit-tiny"), std::string::npos) << s.describe();
  EXPECT_NE(s.describe().find("not a real model"), std::string::npos) << s.describe();
}

}  // namespace
}  // namespace moddit
