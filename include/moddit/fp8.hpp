#pragma once
// The FP8 (e4m3) quantization rules of precision "fp8" (attention_params.hpp),
// shared by the CUDA kernels (src/cuda/fp8_quantize.cu, the Hopper kernel) and
// the CPU backend's emulation of them, so that both quantize the same way:
//
//   Q   per token (row): q / s_q, s_q = pow2_scale(max |q_row|)
//   K   smoothed, k' = k - mean_k (the mean over the head's real keys; softmax
//       is invariant to it, the LSE shifts by scale * q . mean_k), then per
//       128-token block: k' / s_k, s_k = pow2_scale(max |k'| over the block)
//   V   per channel: v / s_v[d], s_v[d] = pow2_scale(max |v[:, d]| over the
//       head's real keys)
//   P   2^8 * exp(s - m), m the running row maximum of the online softmax at
//       that key tile, rounded to e4m3 for the P V product (the row sum l adds
//       the unrounded values; 2^8 cancels in O = (P V) / l)
//
// Every scale is a power of two: dividing by it is exact, so the products of
// the scales with the fp32 accumulators are exact too, and the map pass can
// compare raw FP8 scores against a threshold divided by the scales bit for bit
// (mask_policy.hpp). Floats carry their own exponent, so a power of two costs
// no precision against amax / 448: only the overflow bound moves, by < 2x.
#include <cmath>
#include <cstdint>

#include "moddit/mask_policy.hpp"  // MODDIT_HD

namespace moddit::fp8 {

constexpr float kMax = 448.f;      // largest finite e4m3 value
constexpr int kMinScaleExp = -60;  // scales are 2^e, e in [kMinScaleExp, kMaxScaleExp]
constexpr int kMaxScaleExp = 60;
constexpr float kPLog2 = 8.f;      // P is scaled by 2^kPLog2 before rounding
constexpr int kTokensPerBlock = 128;  // K scale granularity = the kernel's key tile

// The smallest power of two s with amax <= 448 s, clamped to the exponent range
// (0 and NaN give the smallest, +inf the largest).
MODDIT_HD float pow2_scale(float amax) {
  if (!(amax > 0.f)) return ldexpf(1.f, kMinScaleExp);
  if (amax > kMax * ldexpf(1.f, kMaxScaleExp)) return ldexpf(1.f, kMaxScaleExp);
  int e = 0;
  frexpf(amax / kMax, &e);  // amax / 448 in [2^(e-1), 2^e), up to rounding
  while (e > kMinScaleExp && amax <= kMax * ldexpf(1.f, e - 1)) --e;
  while (amax > kMax * ldexpf(1.f, e)) ++e;
  return ldexpf(1.f, e < kMinScaleExp ? kMinScaleExp : e);
}

// x rounded to the nearest e4m3 value, ties to even, saturating to +-448 (the
// PTX cvt.rn.satfinite.e4m3x2.f32 the GPU uses); NaN stays NaN.
inline float round_e4m3(float x) {
  if (x != x) return x;
  const float a = std::fabs(x);
  float r;
  if (a >= kMax) {
    r = kMax;
  } else if (a < 0x1p-6f) {  // subnormals: steps of 2^-9
    r = std::nearbyint(a * 0x1p9f) * 0x1p-9f;
  } else {
    int e = 0;
    std::frexp(a, &e);                       // a in [2^(e-1), 2^e)
    const float step = std::ldexp(1.f, e - 4);  // 3 mantissa bits
    r = std::nearbyint(a / step) * step;
  }
  return std::signbit(x) ? -r : r;
}

// The map pass counts FP8 scores by saturated FMA (mask_policy.hpp's SatCount)
// with the parameters of a row's threshold multiplied by the key tile's scale
// (exact for powers of two): that stays exact while every product is a normal
// float, which these bounds on the row's raw threshold guarantee for every
// scale exponent in range; other rows compare.
MODDIT_HD bool sat_count_scalable(float thr) {
  const float a = fabsf(thr);
  return a == INFINITY || (a >= 0x1p-40f && a < 0x1p40f);
}

// The key position a V^T tile of the GPU kernel stores at column c of each
// group of 16 (the P V product sums over keys in this order, the order in
// which the QK^T accumulator leaves P in a thread's registers for the FP8
// A operand), and its inverse.
MODDIT_HD int vt_key_of_column(int c) {
  const int t = (c & 15) >> 2, e = c & 3;
  return (c & ~15) + 8 * (e >> 1) + 2 * t + (e & 1);
}
MODDIT_HD int vt_column_of_key(int k) {
  const int r = k & 15;
  return (k & ~15) + 4 * ((r >> 1) & 3) + 2 * (r >> 3) + (r & 1);
}

}  // namespace moddit::fp8
