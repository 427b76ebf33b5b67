#pragma once
// Host entry points of the CUDA attention kernels (attention_kernels.cu). The
// params hold device pointers only (grid starts, heads and layout already copied
// to the device by the backend).
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/fp8_operands.hpp"
#include "moddit/attention_params.hpp"

namespace moddit::cuda {

// A persistent launch: `num_items` work items (layout rows r = (b * S + s) *
// num_blocks + qb), taken in the order `order` (device; null = identity) through
// the atomic `counter` (device int, reset to 0 by the launcher).
struct Schedule {
  const int32_t* order = nullptr;
  int num_items = 0;
  int* counter = nullptr;
  bool wgmma = false;  // Hopper (sm_90a) kernels; 128-token blocks only
  bool map_compare = false;  // Hopper map pass: count by compare only (tests)
  const Fp8Operands* fp8 = nullptr;  // precision FP8: the operands launch_quantize_fp8 wrote
};

// Forward pass: out and (if p.lse) the row LSE. `lse_out` must be non-null when a
// map pass follows (the backend passes scratch when the caller asked for no LSE).
void launch_forward(const AttentionParams& p, float* lse_out, const Schedule& s, int num_sms,
                    cudaStream_t stream);
// Map pass (after the forward pass): exact counts on live video x video blocks,
// using the final LSE in `lse`.
void launch_map(const AttentionParams& p, const float* lse, const Schedule& s, int num_sms,
                cudaStream_t stream);
// Writes zeros into `num_heads` heads (device list) of a [B, N, H, D] tensor of
// 2-byte elements.
void launch_zero_heads(void* out, const int64_t stride[3], int B, int N, int D, const int32_t* heads,
                       int num_heads, int elem_bytes, cudaStream_t stream);
void launch_fill_i32(int32_t* dst, int32_t value, size_t count, cudaStream_t stream);

}  // namespace moddit::cuda
