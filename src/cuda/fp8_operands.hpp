#pragma once
// The quantized operands of a precision-FP8 call (moddit/fp8.hpp), written by
// the quantization kernels (fp8_quantize.cu) and read by the Hopper kernel's
// FP8 path. Indexed by the real head h over all heads (a head subset quantizes
// only its heads); tile t = (b * H + h) * num_blocks + block.
#include <cstdint>

namespace moddit::cuda {

struct Fp8Operands {
  uint8_t* q = nullptr;      // [tiles][128][D] e4m3, rows past a block's end zero
  uint8_t* k = nullptr;      // [tiles][128][D] e4m3, smoothed, padding keys zero
  uint8_t* vt = nullptr;     // [tiles][D][128] e4m3: V^T, keys in fp8::vt_key_of_column order
  float* q_scale = nullptr;  // [B, H, N] per token
  float* lse_shift = nullptr;  // [B, H, N] softmax_scale * q . mean_k (the smoothing's LSE shift)
  float* k_scale = nullptr;  // [tiles]
  float* v_scale = nullptr;  // [B, H, D]
  // Scratch of the quantization: per-tile column sums of K, the mean of K, the
  // column maxima of |V| (as uint bits of non-negative floats, for atomicMax),
  // and its work counter and per-head counters; v_max and sync are zeroed
  // before each call (one memset: they are adjacent).
  float* k_sum = nullptr;    // [tiles][D]
  float* k_mean = nullptr;   // [B, H, D]
  uint32_t* v_max = nullptr; // [B, H, D]
  int* sync = nullptr;       // [1 + 2 B H]: work counter, blocks summed per head, head ready
};

}  // namespace moddit::cuda
