// The FP8 quantization kernels (fp8_quantize.hpp). One CTA per (128-token
// block, selected head): the stats pass sums K and takes |V|'s maximum per
// column over the block's real keys; a per-head pass turns the sums into K's mean
// and the maxima into V's channel scales; the quantize pass writes Q (per-token
// scales, and the LSE shift q . mean_k), the smoothed K (one scale per block)
// and V^T (channel scales, keys permuted for the FP8 P V product), one of the
// three per blockIdx.z. Rules and their reasons: moddit/fp8.hpp.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "cuda/fp8_convert.cuh"
#include "cuda/fp8_quantize.hpp"
#include "moddit/error.hpp"
#include "moddit/fp8.hpp"

namespace moddit::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kRows = fp8::kTokensPerBlock;

__device__ __forceinline__ void load8(const __nv_bfloat16* src, float (&x)[8]) {
  const uint4 u = *reinterpret_cast<const uint4*>(src);
  const __nv_bfloat162* h = reinterpret_cast<const __nv_bfloat162*>(&u);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 f = __bfloat1622float2(h[i]);
    x[2 * i] = f.x, x[2 * i + 1] = f.y;
  }
}
__device__ __forceinline__ void load8(const __half* src, float (&x)[8]) {
  const uint4 u = *reinterpret_cast<const uint4*>(src);
  const __half2* h = reinterpret_cast<const __half2*>(&u);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float2 f = __half22float2(h[i]);
    x[2 * i] = f.x, x[2 * i + 1] = f.y;
  }
}

// The CTA's head: batch item b, real head h, and hb = b * H + h.
struct HeadOf {
  int b, h, hb;
  __device__ HeadOf(const AttentionParams& p, int bs) {
    const int s = bs % p.num_sel_heads;
    b = bs / p.num_sel_heads;
    h = p.heads ? p.heads[s] : s;
    hb = b * p.num_heads + h;
  }
};

__device__ __forceinline__ bool real_key(const AttentionParams& p, int n) {
  return key_is_real(n, p.key_pad_begin, p.key_pad_end);
}

template <typename T>
__device__ __forceinline__ const T* row_of(const void* base, const int64_t (&stride)[3], int b, int h, int n) {
  return static_cast<const T*>(base) + b * stride[0] + int64_t(n) * stride[1] + h * stride[2];
}

// D / 8 threads per row, 8 columns each; kThreads / (D / 8) rows per pass.
template <int D, typename T>
__global__ void __launch_bounds__(kThreads) kv_stats_kernel(const AttentionParams p, const Fp8Operands f) {
  constexpr int CH = D / 8, RPP = kThreads / CH;
  const HeadOf hd(p, blockIdx.y);
  const int blk = blockIdx.x, c = threadIdx.x % CH, r0 = threadIdx.x / CH;
  const int start = p.block_starts[blk], end = p.block_starts[blk + 1];
  float ks[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f}, va[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
  for (int n = start + r0; n < end; n += RPP) {
    if (!real_key(p, n)) continue;
    float x[8];
    load8(row_of<T>(p.k, p.k_stride, hd.b, hd.h, n) + c * 8, x);
#pragma unroll
    for (int e = 0; e < 8; ++e) ks[e] += x[e];
    load8(row_of<T>(p.v, p.v_stride, hd.b, hd.h, n) + c * 8, x);
#pragma unroll
    for (int e = 0; e < 8; ++e) va[e] = fmaxf(va[e], fabsf(x[e]));
  }
  __shared__ float red[RPP][D];
#pragma unroll
  for (int e = 0; e < 8; ++e) red[r0][c * 8 + e] = ks[e];
  __syncthreads();
  const int64_t tile = int64_t(hd.hb) * p.num_blocks + blk;
  if (threadIdx.x < D) {
    float sum = 0.f;  // a fixed order: the result does not depend on timing
    for (int r = 0; r < RPP; ++r) sum += red[r][threadIdx.x];
    f.k_sum[tile * D + threadIdx.x] = sum;
  }
  __syncthreads();
#pragma unroll
  for (int e = 0; e < 8; ++e) red[r0][c * 8 + e] = va[e];
  __syncthreads();
  if (threadIdx.x < D) {
    float m = 0.f;
    for (int r = 0; r < RPP; ++r) m = fmaxf(m, red[r][threadIdx.x]);
    // Non-negative floats order as their bits: the maximum is exact and
    // independent of the order of the atomics.
    atomicMax(f.v_max + int64_t(hd.hb) * D + threadIdx.x, __float_as_uint(m));
  }
}

// One CTA of D threads per head: K's mean and V's channel scales.
template <int D>
__global__ void __launch_bounds__(D) kv_finalize_kernel(const AttentionParams p, const Fp8Operands f) {
  const HeadOf hd(p, blockIdx.x);
  const int d = threadIdx.x;
  const int64_t first = int64_t(hd.hb) * p.num_blocks;
  float sum = 0.f;
  for (int blk = 0; blk < p.num_blocks; ++blk) sum += f.k_sum[(first + blk) * D + d];
  const int64_t pad = max(int64_t(0), min(int64_t(p.seq_len), p.key_pad_end) - max(int64_t(0), p.key_pad_begin));
  const int64_t real = int64_t(p.seq_len) - pad;
  f.k_mean[int64_t(hd.hb) * D + d] = real > 0 ? sum / float(real) : 0.f;
  f.v_scale[int64_t(hd.hb) * D + d] = fp8::pow2_scale(__uint_as_float(f.v_max[int64_t(hd.hb) * D + d]));
}

template <int D, typename T>
__device__ __forceinline__ void quantize_q(const AttentionParams& p, const Fp8Operands& f, const HeadOf& hd,
                                           int blk, int start, int end) {
  constexpr int CH = D / 8, RPP = kThreads / CH;
  const int c = threadIdx.x % CH, r0 = threadIdx.x / CH;
  const int64_t tile = int64_t(hd.hb) * p.num_blocks + blk;
  float mean[8];
#pragma unroll
  for (int e = 0; e < 8; ++e) mean[e] = f.k_mean[int64_t(hd.hb) * D + c * 8 + e];
  for (int r = r0; r < kRows; r += RPP) {
    const int n = start + r;
    float x[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
    if (n < end) load8(row_of<T>(p.q, p.q_stride, hd.b, hd.h, n) + c * 8, x);
    float amax = 0.f, dot = 0.f;
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      amax = fmaxf(amax, fabsf(x[e]));
      dot = fmaf(x[e], mean[e], dot);
    }
#pragma unroll
    for (int o = 1; o < CH; o <<= 1) {  // the row's CH lanes are adjacent in the warp
      amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
      dot += __shfl_xor_sync(0xffffffffu, dot, o);
    }
    const float s = fp8::pow2_scale(amax), inv = 1.f / s;  // exact: a power of two
    const uint2 out = make_uint2(pack_e4m3x4(x[0] * inv, x[1] * inv, x[2] * inv, x[3] * inv),
                                 pack_e4m3x4(x[4] * inv, x[5] * inv, x[6] * inv, x[7] * inv));
    *reinterpret_cast<uint2*>(f.q + (tile * kRows + r) * D + c * 8) = out;
    if (c == 0 && n < end) {
      f.q_scale[int64_t(hd.hb) * p.seq_len + n] = s;
      f.lse_shift[int64_t(hd.hb) * p.seq_len + n] = dot * p.softmax_scale;
    }
  }
}

template <int D, typename T>
__device__ __forceinline__ void quantize_k(const AttentionParams& p, const Fp8Operands& f, const HeadOf& hd,
                                           int blk, int start, int end) {
  constexpr int CH = D / 8, RPP = kThreads / CH, PASSES = kRows / RPP;
  const int c = threadIdx.x % CH, r0 = threadIdx.x / CH;
  const int64_t tile = int64_t(hd.hb) * p.num_blocks + blk;
  float mean[8];
#pragma unroll
  for (int e = 0; e < 8; ++e) mean[e] = f.k_mean[int64_t(hd.hb) * D + c * 8 + e];
  float x[PASSES][8];
  float amax = 0.f;
#pragma unroll
  for (int i = 0; i < PASSES; ++i) {
    const int n = start + r0 + i * RPP;
    const bool ok = n < end && real_key(p, n);
    float y[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
    if (ok) load8(row_of<T>(p.k, p.k_stride, hd.b, hd.h, n) + c * 8, y);
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      x[i][e] = ok ? y[e] - mean[e] : 0.f;
      amax = fmaxf(amax, fabsf(x[i][e]));
    }
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
  __shared__ float warp_max[kThreads / 32];
  if ((threadIdx.x & 31) == 0) warp_max[threadIdx.x >> 5] = amax;
  __syncthreads();
  amax = 0.f;
#pragma unroll
  for (int w = 0; w < kThreads / 32; ++w) amax = fmaxf(amax, warp_max[w]);
  const float s = fp8::pow2_scale(amax), inv = 1.f / s;
  if (threadIdx.x == 0) f.k_scale[tile] = s;
#pragma unroll
  for (int i = 0; i < PASSES; ++i) {
    const uint2 out = make_uint2(
        pack_e4m3x4(x[i][0] * inv, x[i][1] * inv, x[i][2] * inv, x[i][3] * inv),
        pack_e4m3x4(x[i][4] * inv, x[i][5] * inv, x[i][6] * inv, x[i][7] * inv));
    *reinterpret_cast<uint2*>(f.k + (tile * kRows + r0 + i * RPP) * D + c * 8) = out;
  }
}

// V^T of the block: V's column d becomes row d, key r goes to column
// fp8::vt_column_of_key(r); staged in shared memory, written in 16-byte chunks.
template <int D, typename T>
__device__ __forceinline__ void quantize_vt(const AttentionParams& p, const Fp8Operands& f, const HeadOf& hd,
                                            int blk, int start, int end) {
  constexpr int CH = D / 8, RPP = kThreads / CH;
  const int c = threadIdx.x % CH, r0 = threadIdx.x / CH;
  const int64_t tile = int64_t(hd.hb) * p.num_blocks + blk;
  __shared__ __align__(16) uint8_t vt[D][kRows];
  float inv[8];
#pragma unroll
  for (int e = 0; e < 8; ++e) inv[e] = 1.f / f.v_scale[int64_t(hd.hb) * D + c * 8 + e];
  for (int r = r0; r < kRows; r += RPP) {
    const int n = start + r;
    float x[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
    if (n < end && real_key(p, n)) load8(row_of<T>(p.v, p.v_stride, hd.b, hd.h, n) + c * 8, x);
    const uint32_t lo = pack_e4m3x4(x[0] * inv[0], x[1] * inv[1], x[2] * inv[2], x[3] * inv[3]);
    const uint32_t hi = pack_e4m3x4(x[4] * inv[4], x[5] * inv[5], x[6] * inv[6], x[7] * inv[7]);
    const int col = fp8::vt_column_of_key(r);
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      vt[c * 8 + e][col] = uint8_t(lo >> (8 * e));
      vt[c * 8 + 4 + e][col] = uint8_t(hi >> (8 * e));
    }
  }
  __syncthreads();
  uint8_t* dst = f.vt + tile * D * kRows;
  for (int i = threadIdx.x; i < D * kRows / 16; i += kThreads) {
    const int row = i / (kRows / 16), ch = i % (kRows / 16);
    *reinterpret_cast<uint4*>(dst + row * kRows + ch * 16) =
        *reinterpret_cast<const uint4*>(&vt[row][ch * 16]);
  }
}

template <int D, typename T>
__global__ void __launch_bounds__(kThreads) quantize_kernel(const AttentionParams p, const Fp8Operands f) {
  const HeadOf hd(p, blockIdx.y);
  const int blk = blockIdx.x;
  const int start = p.block_starts[blk], end = p.block_starts[blk + 1];
  if (blockIdx.z == 0) quantize_q<D, T>(p, f, hd, blk, start, end);
  else if (blockIdx.z == 1) quantize_k<D, T>(p, f, hd, blk, start, end);
  else quantize_vt<D, T>(p, f, hd, blk, start, end);
}

void check(cudaError_t e, const char* what) {
  MODDIT_CHECK(e == cudaSuccess, "cuda: ", what, ": ", cudaGetErrorString(e));
}

template <int D, typename T>
void launch(const AttentionParams& p, const Fp8Operands& f, cudaStream_t stream) {
  const int heads = p.batch * p.num_sel_heads;
  check(cudaMemsetAsync(f.v_max, 0, size_t(p.batch) * p.num_heads * D * sizeof(uint32_t), stream),
        "fp8 quantize: clear");
  kv_stats_kernel<D, T><<<dim3(p.num_blocks, heads), kThreads, 0, stream>>>(p, f);
  kv_finalize_kernel<D><<<heads, D, 0, stream>>>(p, f);
  quantize_kernel<D, T><<<dim3(p.num_blocks, heads, 3), kThreads, 0, stream>>>(p, f);
  check(cudaGetLastError(), "fp8 quantize launch");
}

}  // namespace

void launch_quantize_fp8(const AttentionParams& p, const Fp8Operands& f, cudaStream_t stream) {
  MODDIT_CHECK(p.max_block_len == kRows, "fp8: needs ", kRows, "-token blocks, got ", p.max_block_len);
  const bool bf16 = p.dtype == DType::BF16;
  MODDIT_CHECK(bf16 || p.dtype == DType::F16, "fp8: dtype ", to_string(p.dtype), " not supported (bf16, f16)");
  if (p.head_dim == 128) {
    if (bf16) launch<128, __nv_bfloat16>(p, f, stream);
    else launch<128, __half>(p, f, stream);
  } else {
    MODDIT_CHECK(p.head_dim == 64, "fp8: head dim ", p.head_dim, " not supported (64, 128)");
    if (bf16) launch<64, __nv_bfloat16>(p, f, stream);
    else launch<64, __half>(p, f, stream);
  }
}

}  // namespace moddit::cuda
