#pragma once
// The element-level rules shared by the CPU reference and the CUDA kernels, so
// that they cannot disagree: which keys exist, and when a probability counts as
// "sparse" in the map (paper Eq. 2).
#include <cstdint>

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

}  // namespace moddit
