#pragma once
// The element-level rules shared by the CPU reference and the CUDA kernels, so
// that they cannot disagree: which keys exist, and when a probability counts as
// "sparse" in the map (paper Eq. 2).
#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define MODDIT_HD __host__ __device__ __forceinline__
#else
#define MODDIT_HD inline
#endif

namespace moddit {

// A key takes part in softmax unless it is text padding.
MODDIT_HD bool key_is_real(int64_t key, int64_t pad_begin, int64_t pad_end) {
  return key < pad_begin || key >= pad_end;
}

// P = exp(s - lse) < eta  <=>  s < lse + ln(eta), with s the scaled score. Both
// sides in fp32; this form needs no exp and is what both backends evaluate.
MODDIT_HD bool below_eta(float scaled_score, float row_lse, float log_eta) {
  return scaled_score < row_lse + log_eta;
}

// The map value of MapStatistic::Mass (attention_params.hpp) for a block of
// `rows` query rows and `keys` real keys whose probabilities sum to `mass` over
// the block: rows * keys - keys * mass rounded to the nearest integer and clamped
// to [0, rows * keys] (fp32 sums may exceed a row's 1 by rounding; a NaN mass
// gives 0, never an undefined conversion). The CPU reference and the CUDA map
// kernel round with this one function.
MODDIT_HD int32_t map_mass_value(double mass, int64_t rows, int64_t keys) {
  const double pairs = double(rows) * double(keys);
  double v = pairs - double(keys) * mass;
  v = v > 0.0 ? (v < pairs ? v : pairs) : 0.0;
  return static_cast<int32_t>(v + 0.5);
}

// Floats in an order-preserving uint32 image (-inf < ... < -0 < +0 < ... < +inf;
// NaNs outside that range), so that "the next float" is +1.
MODDIT_HD uint32_t float_order_key(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
MODDIT_HD float float_from_order_key(uint32_t k) {
  const uint32_t u = (k & 0x80000000u) ? (k & 0x7fffffffu) : ~k;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// below_eta on the raw (unscaled) score: for every float s and scale > 0,
//   s < raw_score_threshold(lse, log_eta, scale)  <=>  below_eta(s * scale, lse, log_eta),
// because fl(s * scale) is monotone in s; the threshold is the smallest float t
// with fl(t * scale) >= lse + log_eta. The map pass compares each of its 16384
// scores per tile once instead of multiplying and comparing (CUDA kernel), so the
// counts are the same bit for bit. The bracket around (lse + log_eta) / scale is
// a few floats wide; a bisection over the whole float range covers the rest.
MODDIT_HD float raw_score_threshold(float row_lse, float log_eta, float scale) {
  const float x = row_lse + log_eta;
  if (!(x > -INFINITY)) return -INFINITY;  // -inf (an empty row) or NaN: nothing is below
  auto at_or_above = [&](uint32_t k) { return float_from_order_key(k) * scale >= x; };
  uint32_t lo = float_order_key(-INFINITY), hi = float_order_key(INFINITY);  // false, true
  const float guess = x / scale;
  if (guess == guess) {
    const uint32_t k = float_order_key(guess);
    if (k >= lo + 2 && !at_or_above(k - 2)) lo = k - 2;
    if (k <= hi - 2 && at_or_above(k + 2)) hi = k + 2;
  }
  while (hi - lo > 1) {
    const uint32_t mid = lo + (hi - lo) / 2;
    if (at_or_above(mid)) hi = mid;
    else lo = mid;
  }
  return float_from_order_key(hi);
}

// The same decision as one saturated FMA, so that the GPU's map pass counts on the
// FMA pipe (the compare and select it replaces share the half-rate ALU pipe). For
// a threshold thr with binary exponent E, m = 2^(25 - E) and t = thr * m (exact,
// |t| in [2^25, 2^26)): a float s below thr is at least 2^(E - 24) below it, so
// fma(s, -m, t) >= 2, while s >= thr (or +inf, or NaN) gives <= 0 or NaN; clamped
// to [0, 1] with NaN to 0 (PTX fma.sat) that is exactly 1 or 0. An infinite thr
// works with m = 1. For thr = 0 or |thr| < 2^-102, m would overflow: `exact` is
// false there and the caller compares s < thr instead.
struct SatCount {
  float neg_m, t;
  bool exact;
};
MODDIT_HD SatCount sat_count_params(float thr) {
  if (thr == INFINITY || thr == -INFINITY) return {-1.f, thr, true};
  int e = 0;
  frexpf(thr, &e);  // |thr| in [2^(e-1), 2^e)
  if (thr == 0.f || e - 1 < -102) return {0.f, 0.f, false};
  const float m = ldexpf(1.f, 25 - (e - 1));
  return {-m, thr * m, true};
}
// 1 if s < thr, else 0, for params with `exact` (the host form of the kernel's
// fma.rn.sat.f32).
MODDIT_HD float sat_count(float s, const SatCount& c) {
  const float x = fmaf(s, c.neg_m, c.t);
  return x > 0.f ? (x < 1.f ? x : 1.f) : 0.f;
}

}  // namespace moddit
