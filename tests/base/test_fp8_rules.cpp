// The FP8 rules of moddit/fp8.hpp: e4m3 rounding against an independent decoder
// of all 256 codes, the power-of-two scales, and the V^T key permutation.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <set>
#include <vector>

#include "moddit/fp8.hpp"

using namespace moddit;

namespace {

// Decodes an e4m3 (fn) code: 1 sign, 4 exponent (bias 7), 3 mantissa bits; the
// codes 0x7f and 0xff are NaN, there are no infinities.
float decode_e4m3(int code) {
  const int sign = code >> 7, exp = (code >> 3) & 15, man = code & 7;
  if (exp == 15 && man == 7) return std::numeric_limits<float>::quiet_NaN();
  const float mag = exp == 0 ? std::ldexp(float(man), -9) : std::ldexp(1.f + man / 8.f, exp - 7);
  return sign ? -mag : mag;
}

std::vector<float> finite_nonneg_values() {
  std::vector<float> v;
  for (int c = 0; c < 128; ++c)
    if (!std::isnan(decode_e4m3(c))) v.push_back(decode_e4m3(c));
  return v;  // ascending: codes order as magnitudes
}

}  // namespace

TEST(Fp8Rules, EveryCodeRoundsToItself) {
  for (int c = 0; c < 256; ++c) {
    const float x = decode_e4m3(c);
    if (std::isnan(x)) continue;
    EXPECT_EQ(fp8::round_e4m3(x), x) << "code " << c;
  }
  EXPECT_EQ(finite_nonneg_values().back(), fp8::kMax);
}

TEST(Fp8Rules, RoundsToNearestEvenAndSaturates) {
  const std::vector<float> vals = finite_nonneg_values();
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> lg(-14.f, 10.f);
  for (int i = 0; i < 20000; ++i) {
    const float x = std::exp2(lg(rng)) * (i % 2 ? -1.f : 1.f);
    const float a = std::fabs(x);
    // The nearest value (ties: the even code, i.e. the even index), 448 above.
    float want = fp8::kMax;
    for (size_t j = 0; j + 1 < vals.size(); ++j) {
      if (a > vals[j + 1]) continue;
      const float lo = vals[j], hi = vals[j + 1];
      if (a - lo < hi - a) want = lo;
      else if (a - lo > hi - a) want = hi;
      else want = (j % 2 == 0) ? lo : hi;
      break;
    }
    ASSERT_EQ(fp8::round_e4m3(x), x < 0 ? -want : want) << x;
  }
  EXPECT_EQ(fp8::round_e4m3(1e30f), 448.f);
  EXPECT_EQ(fp8::round_e4m3(-std::numeric_limits<float>::infinity()), -448.f);
  EXPECT_TRUE(std::isnan(fp8::round_e4m3(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_EQ(fp8::round_e4m3(std::ldexp(1.f, -10)), 0.f);                 // tie to even (0)
  EXPECT_EQ(fp8::round_e4m3(3 * std::ldexp(1.f, -10)), std::ldexp(1.f, -8));  // tie to even
}

TEST(Fp8Rules, ScalesArePowersOfTwoThatFit) {
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> lg(-40.f, 40.f);
  for (int i = 0; i < 5000; ++i) {
    const float amax = std::exp2(lg(rng));
    const float s = fp8::pow2_scale(amax);
    int e = 0;
    EXPECT_EQ(std::frexp(s, &e), 0.5f) << amax;  // a power of two
    EXPECT_LE(amax / s, fp8::kMax) << amax;
    EXPECT_GT(amax / s, fp8::kMax / 2) << amax;  // the smallest that fits
  }
  EXPECT_EQ(fp8::pow2_scale(448.f), 1.f);
  EXPECT_EQ(fp8::pow2_scale(448.5f), 2.f);
  EXPECT_EQ(fp8::pow2_scale(0.f), std::ldexp(1.f, fp8::kMinScaleExp));
  EXPECT_EQ(fp8::pow2_scale(std::numeric_limits<float>::quiet_NaN()), std::ldexp(1.f, fp8::kMinScaleExp));
  EXPECT_EQ(fp8::pow2_scale(std::numeric_limits<float>::infinity()), std::ldexp(1.f, fp8::kMaxScaleExp));
}

TEST(Fp8Rules, VtPermutationIsABijectionWithinGroupsOf16) {
  std::set<int> seen;
  for (int c = 0; c < 128; ++c) {
    const int k = fp8::vt_key_of_column(c);
    EXPECT_EQ(k / 16, c / 16);
    EXPECT_EQ(fp8::vt_column_of_key(k), c);
    seen.insert(k);
  }
  EXPECT_EQ(seen.size(), 128u);
  // The accumulator order: column 4 t + e holds keys 2t, 2t+1, 8+2t, 9+2t.
  EXPECT_EQ(fp8::vt_key_of_column(2), 8);
  EXPECT_EQ(fp8::vt_key_of_column(4), 2);
  EXPECT_EQ(fp8::vt_key_of_column(7), 11);
}
