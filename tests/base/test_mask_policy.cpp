// The mask policy's raw-score threshold must decide exactly as below_eta on the
// scaled score does, for every float: the CUDA map pass counts with it.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

#include "moddit/mask_policy.hpp"

namespace moddit {
namespace {

float step(float f, int ulps) {
  return float_from_order_key(float_order_key(f) + static_cast<uint32_t>(ulps));
}

TEST(MaskPolicy, OrderKeyIsMonotone) {
  const float xs[] = {-INFINITY, -3e38f, -1.f, -1e-45f, -0.f, 0.f, 1e-45f, 1e-38f, 1.f, 3e38f, INFINITY};
  for (size_t i = 0; i + 1 < sizeof xs / sizeof xs[0]; ++i) {
    EXPECT_LE(float_order_key(xs[i]), float_order_key(xs[i + 1])) << xs[i];
    EXPECT_EQ(float_from_order_key(float_order_key(xs[i])), xs[i]);
  }
  EXPECT_EQ(step(1.f, 1), std::nextafter(1.f, 2.f));
  EXPECT_EQ(step(-1.f, 1), std::nextafter(-1.f, 0.f));
}

// For random rows: the threshold and the floats around it, and random scores,
// decide as below_eta(s * scale) does.
TEST(MaskPolicy, RawThresholdMatchesBelowEta) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> lse_d(-10.f, 30.f), s_d(-200.f, 200.f);
  const float scales[] = {0.125f, 0.0883883476f, 1.f / 3.f, 1.f, 7.5f, 1e-3f, 1e-30f};
  const float log_etas[] = {std::log(1e-3f), std::log(1e-6f), std::log(0.05f), 0.f};
  int checked = 0;
  for (float scale : scales)
    for (float log_eta : log_etas)
      for (int r = 0; r < 200; ++r) {
        const float lse = r == 0 ? -log_eta : lse_d(rng);  // r == 0: threshold exactly 0
        const float t = raw_score_threshold(lse, log_eta, scale);
        ASSERT_TRUE(std::isfinite(t)) << lse << " " << scale;
        for (int d = -40; d <= 40; ++d) {
          const float s = step(t, d);
          ASSERT_EQ(s < t, below_eta(s * scale, lse, log_eta))
              << "s=" << s << " t=" << t << " lse=" << lse << " scale=" << scale;
          ++checked;
        }
        for (int i = 0; i < 50; ++i) {
          const float s = s_d(rng) / scale;
          ASSERT_EQ(s < t, below_eta(s * scale, lse, log_eta)) << s << " " << lse << " " << scale;
        }
      }
  EXPECT_GT(checked, 100000);
}

TEST(MaskPolicy, RawThresholdEdges) {
  // An empty row (lse -inf): nothing counts, not even -inf scores (masked keys).
  EXPECT_EQ(raw_score_threshold(-INFINITY, std::log(1e-3f), 0.1f), -INFINITY);
  EXPECT_FALSE(-INFINITY < raw_score_threshold(-INFINITY, std::log(1e-3f), 0.1f));
  EXPECT_FALSE(std::numeric_limits<float>::quiet_NaN() < raw_score_threshold(2.f, -1.f, 0.1f));
  // +inf (the fill of keys outside a tile) is never below.
  EXPECT_FALSE(INFINITY < raw_score_threshold(3e38f, 3e38f, 0.5f));
  // A scale so small that (lse + log_eta) / scale overflows: the bisection finds it.
  const float t = raw_score_threshold(-5.f, -1.f, 1e-38f);
  EXPECT_EQ(t, -std::numeric_limits<float>::max());
  EXPECT_EQ(-3e38f < t, below_eta(-3e38f * 1e-38f, -5.f, -1.f));
  EXPECT_EQ(step(t, -1) * 1e-38f < -6.f, true);
  EXPECT_EQ(t * 1e-38f < -6.f, false);
}

// The saturated-FMA count is the compare s < thr, for thresholds over the whole
// exponent range, the floats around them, scores far off, +inf (masked keys),
// and NaN.
TEST(MaskPolicy, SatCountMatchesCompare) {
  std::mt19937 rng(11);
  std::uniform_int_distribution<int> exp_d(-102, 127);
  std::uniform_real_distribution<float> frac(1.f, 2.f);
  int checked = 0;
  for (int r = 0; r < 4000; ++r) {
    float thr = std::ldexp(frac(rng), exp_d(rng)) * (r % 2 ? -1.f : 1.f);
    if (!std::isfinite(thr)) thr = r % 2 ? -3e38f : 3e38f;
    if (r < 4) thr = (r < 2 ? 1.f : -1.f) * std::ldexp(1.f, r % 2 ? -102 : 127);  // powers of two at the ends
    const SatCount c = sat_count_params(thr);
    ASSERT_TRUE(c.exact) << thr;
    for (int d = -40; d <= 40; ++d) {
      const float s = step(thr, d);
      ASSERT_EQ(sat_count(s, c), s < thr ? 1.f : 0.f) << "s=" << s << " thr=" << thr;
      ++checked;
    }
    const float far[] = {INFINITY, -3e38f, 3e38f, 0.f, -0.f, 1e-45f, -1e-45f, thr * 0.5f, thr * 2.f,
                         std::numeric_limits<float>::quiet_NaN()};
    for (float s : far) ASSERT_EQ(sat_count(s, c), s < thr ? 1.f : 0.f) << "s=" << s << " thr=" << thr;
  }
  EXPECT_GT(checked, 300000);
  for (float thr : {INFINITY, -INFINITY})
    for (float s : {INFINITY, 5.f, -3e38f, std::numeric_limits<float>::quiet_NaN()}) {
      const SatCount c = sat_count_params(thr);
      ASSERT_TRUE(c.exact);
      EXPECT_EQ(sat_count(s, c), s < thr ? 1.f : 0.f) << s << " " << thr;
    }
  // Where m would overflow the caller must compare.
  EXPECT_FALSE(sat_count_params(0.f).exact);
  EXPECT_FALSE(sat_count_params(-0.f).exact);
  EXPECT_FALSE(sat_count_params(std::ldexp(1.f, -103)).exact);
  EXPECT_FALSE(sat_count_params(-1e-45f).exact);
}

}  // namespace
}  // namespace moddit

namespace moddit {
namespace {

// The mass map's value: rows * keys minus keys * mass, rounded, within [0, pairs].
TEST(MaskPolicy, MapMassValueRoundsAndClamps) {
  EXPECT_EQ(map_mass_value(0.0, 64, 64), 4096);            // no mass: all "sparse"
  EXPECT_EQ(map_mass_value(64.0, 64, 64), 0);              // every row's whole mass
  EXPECT_EQ(map_mass_value(64.0000001, 64, 64), 0);        // fp32 sums may exceed it
  EXPECT_EQ(map_mass_value(-1e-7, 64, 64), 4096);
  EXPECT_EQ(map_mass_value(16.0, 64, 64), 4096 - 1024);    // a quarter of the rows' mass
  EXPECT_EQ(map_mass_value(1.0 / 64 * 0.49, 64, 64), 4096);  // rounds to the nearest
  EXPECT_EQ(map_mass_value(1.0 / 64 * 0.51, 64, 64), 4095);
  EXPECT_EQ(map_mass_value(3.0, 123, 6), 123 * 6 - 18);   // a partial block
  EXPECT_EQ(map_mass_value(std::nan(""), 64, 64), 0);
}

}  // namespace
}  // namespace moddit
