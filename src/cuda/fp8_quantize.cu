// The FP8 quantization kernel (fp8_quantize.hpp): one persistent kernel whose
// CTAs take items from a counter, in this order: head 0's stats items, then for
// every head h >= 1 its stats items and head h-1's quantize items, then the last
// head's quantize items. A stats item sums K and takes |V|'s maximum per column
// over one 128-token block's real keys; the CTA of a head's last stats item
// turns them into K's mean and V's channel scales and marks the head ready. A
// quantize item waits for its head to be ready and writes one block of Q
// (per-token scales, and the LSE shift q . mean_k), the smoothed K (one scale
// per block) or V^T (channel scales, keys permuted for the FP8 P V product).
// Items wait only on items taken before them, which run on resident CTAs and
// never wait: no deadlock. Rules and their reasons: moddit/fp8.hpp.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>

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

// One item: kind 0 = stats, 1 = Q, 2 = K, 3 = V; hs = b * S + s (selected head),
// blk = the block.
struct Item {
  int kind, hs, blk;
};
__device__ __forceinline__ Item decode_item(int i, int nb, int HS) {
  if (i < nb) return {0, 0, i};
  const int unit = 4 * nb, j = i - nb, h = j / unit + 1, r = j % unit;
  if (h < HS && r < nb) return {0, h, r};
  const int qi = h < HS ? r - nb : r;  // head h - 1's quantize items
  return {1 + qi / nb, h - 1, qi % nb};
}

// The item's head and block: batch item b, real head h, hb = b * H + h, the
// block's tokens [start, end) and its tile.
struct Where {
  int b, h, hb, start, end;
  int64_t tile;
  __device__ Where(const AttentionParams& p, int hs, int blk) {
    const int s = hs % p.num_sel_heads;
    b = hs / p.num_sel_heads;
    h = p.heads ? p.heads[s] : s;
    hb = b * p.num_heads + h;
    start = p.block_starts[blk];
    end = p.block_starts[blk + 1];
    tile = int64_t(hb) * p.num_blocks + blk;
  }
};

__device__ __forceinline__ bool real_key(const AttentionParams& p, int n) {
  return key_is_real(n, p.key_pad_begin, p.key_pad_end);
}

template <typename T>
__device__ __forceinline__ const T* row_of(const void* base, const int64_t (&stride)[3], const Where& w,
                                           int n) {
  return static_cast<const T*>(base) + w.b * stride[0] + int64_t(n) * stride[1] + w.h * stride[2];
}

struct __align__(16) QuantShared {
  union {
    float red[kThreads * 8];      // stats: [rows per pass][D] partials
    uint8_t vt[128 * kRows];      // the V^T tile [D][128]
  };
  float warp_max[kThreads / 32];
  int item, last;
};

// D / 8 threads per row, 8 columns each; kThreads / (D / 8) rows per pass.
template <int D>
struct Lanes {
  static constexpr int CH = D / 8, RPP = kThreads / CH, PASSES = kRows / RPP;
  int c = threadIdx.x % CH, r0 = threadIdx.x / CH;
};

template <int D, typename T>
__device__ void stats_item(const AttentionParams& p, const Fp8Operands& f, const Where& w, int hs,
                           QuantShared& sm) {
  const Lanes<D> L;
  float ks[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f}, va[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
#pragma unroll
  for (int i = 0; i < L.PASSES; ++i) {
    const int n = w.start + L.r0 + i * L.RPP;
    if (n < w.end && real_key(p, n)) {
      float x[8], y[8];
      load8(row_of<T>(p.k, p.k_stride, w, n) + L.c * 8, x);
      load8(row_of<T>(p.v, p.v_stride, w, n) + L.c * 8, y);
#pragma unroll
      for (int e = 0; e < 8; ++e) {
        ks[e] += x[e];
        va[e] = fmaxf(va[e], fabsf(y[e]));
      }
    }
  }
#pragma unroll
  for (int e = 0; e < 8; ++e) sm.red[L.r0 * D + L.c * 8 + e] = ks[e];
  __syncthreads();
  if (threadIdx.x < D) {
    float sum = 0.f;  // a fixed order: the result does not depend on timing
    for (int r = 0; r < L.RPP; ++r) sum += sm.red[r * D + threadIdx.x];
    f.k_sum[w.tile * D + threadIdx.x] = sum;
  }
  __syncthreads();
#pragma unroll
  for (int e = 0; e < 8; ++e) sm.red[L.r0 * D + L.c * 8 + e] = va[e];
  __syncthreads();
  if (threadIdx.x < D) {
    float m = 0.f;
    for (int r = 0; r < L.RPP; ++r) m = fmaxf(m, sm.red[r * D + threadIdx.x]);
    // Non-negative floats order as their bits: the maximum is exact and
    // independent of the order of the atomics.
    atomicMax(f.v_max + int64_t(w.hb) * D + threadIdx.x, __float_as_uint(m));
  }
  __threadfence();  // this thread's sums and maxima before the head's count
  __syncthreads();
  if (threadIdx.x == 0) sm.last = atomicAdd(f.sync + 1 + hs, 1) == p.num_blocks - 1;
  __syncthreads();
  if (!sm.last) return;
  // The head's last block: its mean and scales, then the head is ready. The
  // head's quantize items wait for this: every thread sums a share of the
  // blocks (8 loads in flight), then the shares are added in a fixed order.
  __threadfence();
  constexpr int G = kThreads / D;
  {
    const int d = threadIdx.x % D, g = threadIdx.x / D;
    const float* col = f.k_sum + int64_t(w.hb) * p.num_blocks * D + d;
    float part = 0.f;
#pragma unroll 8
    for (int blk = g; blk < p.num_blocks; blk += G) part += __ldcg(col + int64_t(blk) * D);
    sm.red[g * D + d] = part;
  }
  __syncthreads();
  if (threadIdx.x < D) {
    float sum = 0.f;
#pragma unroll
    for (int g = 0; g < G; ++g) sum += sm.red[g * D + threadIdx.x];
    const int64_t pad = max(int64_t(0), min(int64_t(p.seq_len), p.key_pad_end) - max(int64_t(0), p.key_pad_begin));
    const int64_t real = int64_t(p.seq_len) - pad;
    const int64_t at = int64_t(w.hb) * D + threadIdx.x;
    f.k_mean[at] = real > 0 ? sum / float(real) : 0.f;
    f.v_scale[at] = fp8::pow2_scale(__uint_as_float(__ldcg(f.v_max + at)));
    __threadfence();
  }
  __syncthreads();
  if (threadIdx.x == 0) atomicExch(f.sync + 1 + p.batch * p.num_sel_heads + hs, 1);
}

// Waits until head hs is ready (its mean and scales are written).
__device__ __forceinline__ void wait_head(const AttentionParams& p, const Fp8Operands& f, int hs) {
  if (threadIdx.x == 0) {
    volatile int* ready = f.sync + 1 + p.batch * p.num_sel_heads + hs;
    while (*ready == 0) __nanosleep(100);
    __threadfence();
  }
  __syncthreads();
}

template <int D, typename T>
__device__ void q_item(const AttentionParams& p, const Fp8Operands& f, const Where& w) {
  const Lanes<D> L;
  float mean[8], x[L.PASSES][8];
#pragma unroll
  for (int e = 0; e < 8; ++e) mean[e] = __ldcg(f.k_mean + int64_t(w.hb) * D + L.c * 8 + e);
#pragma unroll
  for (int i = 0; i < L.PASSES; ++i) {  // every load first: they are all in flight at once
    const int n = w.start + L.r0 + i * L.RPP;
#pragma unroll
    for (int e = 0; e < 8; ++e) x[i][e] = 0.f;
    if (n < w.end) load8(row_of<T>(p.q, p.q_stride, w, n) + L.c * 8, x[i]);
  }
#pragma unroll
  for (int i = 0; i < L.PASSES; ++i) {
    const int r = L.r0 + i * L.RPP, n = w.start + r;
    float amax = 0.f, dot = 0.f;
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      amax = fmaxf(amax, fabsf(x[i][e]));
      dot = fmaf(x[i][e], mean[e], dot);
    }
#pragma unroll
    for (int o = 1; o < L.CH; o <<= 1) {  // the row's CH lanes are adjacent in the warp
      amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
      dot += __shfl_xor_sync(0xffffffffu, dot, o);
    }
    const float s = fp8::pow2_scale(amax), inv = 1.f / s;  // exact: a power of two
    const uint2 out = make_uint2(pack_e4m3x4(x[i][0] * inv, x[i][1] * inv, x[i][2] * inv, x[i][3] * inv),
                                 pack_e4m3x4(x[i][4] * inv, x[i][5] * inv, x[i][6] * inv, x[i][7] * inv));
    *reinterpret_cast<uint2*>(f.q + (w.tile * kRows + r) * D + L.c * 8) = out;
    if (L.c == 0 && n < w.end) {
      f.q_scale[int64_t(w.hb) * p.seq_len + n] = s;
      f.lse_shift[int64_t(w.hb) * p.seq_len + n] = dot * p.softmax_scale;
    }
  }
}

template <int D, typename T>
__device__ void k_item(const AttentionParams& p, const Fp8Operands& f, const Where& w, QuantShared& sm) {
  const Lanes<D> L;
  float mean[8], x[L.PASSES][8];
#pragma unroll
  for (int e = 0; e < 8; ++e) mean[e] = __ldcg(f.k_mean + int64_t(w.hb) * D + L.c * 8 + e);
  float amax = 0.f;
#pragma unroll
  for (int i = 0; i < L.PASSES; ++i) {
    const int n = w.start + L.r0 + i * L.RPP;
    const bool ok = n < w.end && real_key(p, n);
    float y[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
    if (ok) load8(row_of<T>(p.k, p.k_stride, w, n) + L.c * 8, y);
#pragma unroll
    for (int e = 0; e < 8; ++e) {
      x[i][e] = ok ? y[e] - mean[e] : 0.f;
      amax = fmaxf(amax, fabsf(x[i][e]));
    }
  }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
  if ((threadIdx.x & 31) == 0) sm.warp_max[threadIdx.x >> 5] = amax;
  __syncthreads();
  amax = 0.f;
#pragma unroll
  for (int i = 0; i < kThreads / 32; ++i) amax = fmaxf(amax, sm.warp_max[i]);
  const float s = fp8::pow2_scale(amax), inv = 1.f / s;
  if (threadIdx.x == 0) f.k_scale[w.tile] = s;
#pragma unroll
  for (int i = 0; i < L.PASSES; ++i) {
    const uint2 out = make_uint2(
        pack_e4m3x4(x[i][0] * inv, x[i][1] * inv, x[i][2] * inv, x[i][3] * inv),
        pack_e4m3x4(x[i][4] * inv, x[i][5] * inv, x[i][6] * inv, x[i][7] * inv));
    *reinterpret_cast<uint2*>(f.k + (w.tile * kRows + L.r0 + i * L.RPP) * D + L.c * 8) = out;
  }
}

// V^T of the block: V's column d becomes row d and key k goes to column
// fp8::vt_column_of_key(k). A lane owns one group of 4 columns (4 keys) and 8
// channels, so that it writes each channel's 4 bytes as one word: a warp's 32
// lanes write 32 consecutive words (no bank conflict); then 16-byte rows out.
template <int D, typename T>
__device__ void v_item(const AttentionParams& p, const Fp8Operands& f, const Where& w, QuantShared& sm) {
  constexpr int CH = D / 8;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int c = warp; c < CH; c += kThreads / 32) {
    float inv[8], x[4][8];
#pragma unroll
    for (int e = 0; e < 8; ++e) inv[e] = 1.f / __ldcg(f.v_scale + int64_t(w.hb) * D + c * 8 + e);
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int n = w.start + fp8::vt_key_of_column(4 * lane + j);
#pragma unroll
      for (int e = 0; e < 8; ++e) x[j][e] = 0.f;
      if (n < w.end && real_key(p, n)) load8(row_of<T>(p.v, p.v_stride, w, n) + c * 8, x[j]);
    }
#pragma unroll
    for (int e = 0; e < 8; ++e)
      *reinterpret_cast<uint32_t*>(&sm.vt[(c * 8 + e) * kRows + 4 * lane]) =
          pack_e4m3x4(x[0][e] * inv[e], x[1][e] * inv[e], x[2][e] * inv[e], x[3][e] * inv[e]);
  }
  __syncthreads();
  uint8_t* dst = f.vt + w.tile * D * kRows;
  for (int i = threadIdx.x; i < D * kRows / 16; i += kThreads)
    reinterpret_cast<uint4*>(dst)[i] = reinterpret_cast<const uint4*>(sm.vt)[i];
}

template <int D, typename T>
__global__ void __launch_bounds__(kThreads) quantize_fp8_kernel(const AttentionParams p, const Fp8Operands f) {
  __shared__ QuantShared sm;
  const int nb = p.num_blocks, HS = p.batch * p.num_sel_heads, total = 4 * nb * HS;
  for (;;) {
    if (threadIdx.x == 0) sm.item = atomicAdd(f.sync, 1);
    __syncthreads();
    const int i = sm.item;
    if (i >= total) break;
    const Item it = decode_item(i, nb, HS);
    const Where w(p, it.hs, it.blk);
    if (it.kind == 0) {
      stats_item<D, T>(p, f, w, it.hs, sm);
    } else {
      wait_head(p, f, it.hs);
      if (it.kind == 1) q_item<D, T>(p, f, w);
      else if (it.kind == 2) k_item<D, T>(p, f, w, sm);
      else v_item<D, T>(p, f, w, sm);
    }
    __syncthreads();  // shared memory and sm.item are free for the next item
  }
}

void check(cudaError_t e, const char* what) {
  MODDIT_CHECK(e == cudaSuccess, "cuda: ", what, ": ", cudaGetErrorString(e));
}

template <int D, typename T>
void launch(const AttentionParams& p, const Fp8Operands& f, int num_sms, cudaStream_t stream) {
  const int items = 4 * p.num_blocks * p.batch * p.num_sel_heads;
  const size_t zero = reinterpret_cast<const char*>(f.sync + 1 + 2 * p.batch * p.num_heads) -
                      reinterpret_cast<const char*>(f.v_max);
  check(cudaMemsetAsync(f.v_max, 0, zero, stream), "fp8 quantize: clear");
  int per_sm = 0;
  check(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, quantize_fp8_kernel<D, T>, kThreads, 0),
        "fp8 quantize: occupancy");
  const int grid = std::max(1, std::min(items, num_sms * std::max(per_sm, 1)));
  quantize_fp8_kernel<D, T><<<grid, kThreads, 0, stream>>>(p, f);
  check(cudaGetLastError(), "fp8 quantize launch");
}

}  // namespace

void launch_quantize_fp8(const AttentionParams& p, const Fp8Operands& f, int num_sms, cudaStream_t stream) {
  MODDIT_CHECK(p.max_block_len == kRows, "fp8: needs ", kRows, "-token blocks, got ", p.max_block_len);
  const bool bf16 = p.dtype == DType::BF16;
  MODDIT_CHECK(bf16 || p.dtype == DType::F16, "fp8: dtype ", to_string(p.dtype), " not supported (bf16, f16)");
  if (p.head_dim == 128) {
    if (bf16) launch<128, __nv_bfloat16>(p, f, num_sms, stream);
    else launch<128, __half>(p, f, num_sms, stream);
  } else {
    MODDIT_CHECK(p.head_dim == 64, "fp8: head dim ", p.head_dim, " not supported (64, 128)");
    if (bf16) launch<64, __nv_bfloat16>(p, f, num_sms, stream);
    else launch<64, __half>(p, f, num_sms, stream);
  }
}

}  // namespace moddit::cuda
