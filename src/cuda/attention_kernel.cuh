#pragma once
// The block-sparse flash attention kernel (FlashAttention-2 style, sm80 PTX that
// also runs on Hopper). One CTA handles one work item at a time: a (batch, head,
// query block) row of the layout, up to 128 query rows, 16 per warp. It walks
// the row's live key blocks in 64-key tiles (a 128-key block is two tiles; a
// partial block is masked), double-buffering K and V through cp.async, with an
// online softmax in fp32 registers. Dense attention is the same kernel with no
// layout (every key block live).
//
// CTAs are persistent: they take work items from an atomic counter, in the
// order the host sorted them (most live blocks first), so that rows of very
// different lengths balance across SMs.
//
// MAP = true is the second pass for the exact sparsity map (paper Eq. 2): it
// recomputes Q K^T on the live video x video tiles of video query blocks,
// compares each scaled score with the row's final LSE (below_eta) and writes one
// count per (query block, key block). It needs no V and no O. With
// MapStatistic::Mass it sums P = exp(scaled score - LSE) over the block instead
// and writes map_mass_value of the sum (the Hopper map pass counts only, so the
// launcher sends a mass map here on every GPU).
#include <cuda.h>

#include <cmath>
#include <cstdint>

#include "cuda/fp8_operands.hpp"
#include "cuda/ptx.cuh"
#include "cuda/store_rows.cuh"
#include "cuda/work_item.cuh"
#include "moddit/attention_params.hpp"
#include "moddit/mask_policy.hpp"

namespace moddit::cuda {

constexpr int kTileKeys = 64;    // keys per inner tile
constexpr int kMaxQueryRows = 128;

struct KernelArgs {
  AttentionParams p;
  const int32_t* order;  // work items, longest first (null = identity)
  int num_items;
  int* counter;          // atomic work counter (0 at launch)
  float* lse;            // forward: where to write the LSE (may be null); map: the LSE to read
  CUtensorMap tq, tk, tv;  // Hopper kernel: TMA descriptors of Q, K, V (tensor_map.hpp)
  bool map_compare;        // Hopper map pass: count by compare only (tests)
  Fp8Operands fp8;         // precision FP8: the quantized operands (Hopper kernel)
};

// Element offset of (row, 16-byte chunk) in a [rows][D] tile whose chunks are
// XOR-swizzled by row, so that ldmatrix's 8 row addresses hit 8 distinct bank groups.
template <int D>
__device__ __forceinline__ int swz(int row, int chunk) {
  return row * D + ((chunk ^ (row & 7)) << 3);
}

template <int D, typename T>
__device__ __forceinline__ void load_rows(T* smem, const T* g, int64_t stride_n, int start, int len,
                                          int rows, int tid, int nthreads) {
  constexpr int kChunks = D / 8;
  const uint32_t base = smem_addr(smem);
  for (int idx = tid; idx < rows * kChunks; idx += nthreads) {
    const int r = idx / kChunks, c = idx % kChunks;
    const bool ok = r < len;
    const T* src = ok ? g + int64_t(start + r) * stride_n + c * 8 : g;
    cp_async16(base + swz<D>(r, c) * 2, src, ok);
  }
}

// S(16 x 64) = Q(warp's 16 rows) K(tile)^T, fp32.
template <int D, typename T>
__device__ __forceinline__ void qk_tile(float (&s)[8][4], const T* sQ, const T* sK, int warp,
                                        int lane) {
#pragma unroll
  for (int j = 0; j < 8; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
  const uint32_t qa = smem_addr(sQ), ka = smem_addr(sK);
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    uint32_t a[4];
    ldmatrix_x4(a, qa + swz<D>(warp * 16 + (lane & 15), kk * 2 + (lane >> 4)) * 2);
#pragma unroll
    for (int np = 0; np < 4; ++np) {
      uint32_t b[4];
      ldmatrix_x4(b, ka + swz<D>(np * 16 + (lane & 7) + ((lane >> 4) << 3),
                                 kk * 2 + ((lane >> 3) & 1)) * 2);
      mma16816<T>(s[2 * np], a, b[0], b[1]);
      mma16816<T>(s[2 * np + 1], a, b[2], b[3]);
    }
  }
}

// Position in the list of live key blocks, advanced one 64-key tile at a time.
struct TileCursor {
  int i;    // index into the row's live list
  int sub;  // 64-key tile within the block
};

template <int D, typename T, bool MAP>
__global__ void __launch_bounds__(256, 2) attention_kernel(const KernelArgs a) {
  extern __shared__ __align__(128) unsigned char smem_raw[];
  T* sQ = reinterpret_cast<T*>(smem_raw);
  T* sK = sQ + kMaxQueryRows * D;        // 2 buffers of kTileKeys x D
  T* sV = sK + 2 * kTileKeys * D;        // 2 buffers (forward only)
  __shared__ int s_item;
  __shared__ int s_count[8];
  __shared__ float s_mass[8];

  const AttentionParams& p = a.p;
  const int tid = threadIdx.x, nthreads = blockDim.x;
  const int warp = tid >> 5, lane = tid & 31;
  const int g = lane >> 2, tq = lane & 3;
  const int q_rows = (nthreads >> 5) * 16;
  const float scale_log2 = p.softmax_scale * 1.4426950408889634f;
  const int fvb = p.first_video_block, nvb = p.num_video_blocks;

  for (;;) {
    __syncthreads();  // the previous item is done with shared memory and s_item
    if (tid == 0) s_item = atomicAdd(a.counter, 1);
    __syncthreads();
    const int item = s_item;
    if (item >= a.num_items) break;
    const int row = a.order ? a.order[item] : item;
    WorkItem w;
    if (!decode_work_item<MAP>(p, row, w)) continue;
    const int qb = w.qb, b = w.b, h = w.h, q0 = w.q0, qlen = w.qlen;
    const int32_t* live = w.live;
    const int lo = w.lo, hi = w.hi;
    auto block_of = [&](int i) { return live ? live[i] : i; };

    const T* Qg = static_cast<const T*>(p.q) + b * p.q_stride[0] + h * p.q_stride[2];
    const T* Kg = static_cast<const T*>(p.k) + b * p.k_stride[0] + h * p.k_stride[2];
    const T* Vg = static_cast<const T*>(p.v) + b * p.v_stride[0] + h * p.v_stride[2];
    // Rows of Q, O and the LSE from the query buffer's first token, keys from
    // the key buffer's (a chunk call's buffers start inside the sequence).
    const int64_t row_lse = (int64_t(b) * p.num_heads + h) * p.q_tokens;
    const int q0r = q0 - p.q_token_begin;

    load_rows<D, T>(sQ, Qg, p.q_stride[1], q0r, qlen, q_rows, tid, nthreads);
    TileCursor cur{lo, 0};
    if (cur.i < hi) {
      const int2 ks = key_span(p, block_of(cur.i));
      load_rows<D, T>(sK, Kg, p.k_stride[1], ks.x - p.k_token_begin, min(kTileKeys, ks.y - ks.x),
                      kTileKeys, tid, nthreads);
    }
    cp_async_commit();

    // Per thread: rows g and g + 8 of the warp's 16.
    float o[MAP ? 1 : D / 8][4];
    float m_run[2] = {-INFINITY, -INFINITY}, l_run[2] = {0.f, 0.f};
    float lse_row[2] = {0.f, 0.f};
    int count = 0;
    float mass = 0.f;  // MapStatistic::Mass: this thread's share of the block's summed P
    const bool mass_map = MAP && p.map_statistic == MapStatistic::Mass;
    if constexpr (!MAP) {
#pragma unroll
      for (int j = 0; j < D / 8; ++j) o[j][0] = o[j][1] = o[j][2] = o[j][3] = 0.f;
    } else {
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        const int r = warp * 16 + g + i * 8;
        lse_row[i] = r < qlen ? a.lse[row_lse + q0r + r] : -INFINITY;  // rows past the block count nothing
      }
    }
    int buf = 0;
    while (cur.i < hi) {
      const int kb = block_of(cur.i);
      const int2 span = key_span(p, kb);
      const int kb_begin = span.x, kb_end = span.y;
      const int kstart = kb_begin + cur.sub * kTileKeys;
      const int klen = min(kTileKeys, kb_end - kstart);
      TileCursor nxt = cur;
      if (kstart + kTileKeys < kb_end) ++nxt.sub; else { ++nxt.i; nxt.sub = 0; }

      cp_async_wait<0>();
      __syncthreads();  // K tile (and Q) visible; everyone is done with the other buffers
      if constexpr (!MAP) {
        load_rows<D, T>(sV + buf * kTileKeys * D, Vg, p.v_stride[1], kstart - p.k_token_begin, klen,
                        kTileKeys, tid, nthreads);
        cp_async_commit();
      }
      float s[8][4];
      qk_tile<D, T>(s, sQ, sK + buf * kTileKeys * D, warp, lane);
      if (nxt.i < hi) {
        const int2 nspan = key_span(p, block_of(nxt.i));
        const int nks = nspan.x + nxt.sub * kTileKeys;
        load_rows<D, T>(sK + (buf ^ 1) * kTileKeys * D, Kg, p.k_stride[1], nks - p.k_token_begin,
                        min(kTileKeys, nspan.y - nks), kTileKeys, tid, nthreads);
      }
      cp_async_commit();

      const bool partial = klen < kTileKeys ||
                           (kstart < p.key_pad_end && kstart + kTileKeys > p.key_pad_begin);
      if constexpr (MAP) {
#pragma unroll
        for (int j = 0; j < 8; ++j)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int kl = j * 8 + 2 * tq + (e & 1);
            const bool real = !partial || (kl < klen && key_is_real(kstart + kl, p.key_pad_begin,
                                                                     p.key_pad_end));
            if (mass_map) {
              // Rows past the block have lse = -inf: they add nothing (not exp(+inf)).
              const float l = lse_row[e >> 1];
              mass += (real && l > -INFINITY) ? expf(s[j][e] * p.softmax_scale - l) : 0.f;
            } else {
              count += (real && below_eta(s[j][e] * p.softmax_scale, lse_row[e >> 1], p.log_eta)) ? 1 : 0;
            }
          }
        if (nxt.i != cur.i) {  // end of this key block: one value per (query block, key block)
#pragma unroll
          for (int off = 16; off > 0; off >>= 1) {
            count += __shfl_xor_sync(0xffffffffu, count, off);
            mass += __shfl_xor_sync(0xffffffffu, mass, off);
          }
          if (lane == 0) {
            s_count[warp] = count;
            s_mass[warp] = mass;
          }
          count = 0;
          mass = 0.f;
          __syncthreads();
          if (tid == 0) {
            int total = 0;
            double total_mass = 0.0;
            for (int w = 0; w < (nthreads >> 5); ++w) {
              total += s_count[w];
              total_mass += s_mass[w];
            }
            const int64_t n = nvb;
            // A video key block holds no padding (padding is text): its keys are its span.
            p.map_counts[((int64_t(b) * p.num_heads + h) * n + (qb - fvb)) * n + (kb - fvb)] =
                mass_map ? map_mass_value(total_mass, qlen, kb_end - kb_begin) : total;
          }
        }
      } else {
        if (partial) {  // keys past the block or text padding take no part
#pragma unroll
          for (int j = 0; j < 8; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
              const int kl = j * 8 + 2 * tq + (e & 1);
              if (kl >= klen || !key_is_real(kstart + kl, p.key_pad_begin, p.key_pad_end))
                s[j][e] = -INFINITY;
            }
        }
        // Online softmax in base 2 on raw scores: p = 2^(s * scale*log2(e) - m), m in
        // scaled units; one FFMA and one MUFU.EX2 per score.
#pragma unroll
        for (int i = 0; i < 2; ++i) {
          float mx = -INFINITY;
#pragma unroll
          for (int j = 0; j < 8; ++j) mx = fmaxf(mx, fmaxf(s[j][2 * i], s[j][2 * i + 1]));
          mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
          mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
          const float m_new = fmaxf(m_run[i], mx * scale_log2);
          const float m_use = m_new == -INFINITY ? 0.f : m_new;  // a row with no key yet
          const float alpha = fast_exp2(m_run[i] - m_use);
          m_run[i] = m_new;
          float sum = 0.f;
#pragma unroll
          for (int j = 0; j < 8; ++j) {
            s[j][2 * i] = fast_exp2(fmaf(s[j][2 * i], scale_log2, -m_use));
            s[j][2 * i + 1] = fast_exp2(fmaf(s[j][2 * i + 1], scale_log2, -m_use));
            sum += s[j][2 * i] + s[j][2 * i + 1];
          }
          l_run[i] = l_run[i] * alpha + sum;
#pragma unroll
          for (int j = 0; j < D / 8; ++j) {
            o[j][2 * i] *= alpha;
            o[j][2 * i + 1] *= alpha;
          }
        }
        cp_async_wait<1>();  // V tile landed (the K prefetch may still fly)
        __syncthreads();
        const uint32_t va = smem_addr(sV + buf * kTileKeys * D);
#pragma unroll
        for (int kk = 0; kk < kTileKeys / 16; ++kk) {
          uint32_t pa[4];
          pa[0] = pack2<T>(s[2 * kk][0], s[2 * kk][1]);
          pa[1] = pack2<T>(s[2 * kk][2], s[2 * kk][3]);
          pa[2] = pack2<T>(s[2 * kk + 1][0], s[2 * kk + 1][1]);
          pa[3] = pack2<T>(s[2 * kk + 1][2], s[2 * kk + 1][3]);
#pragma unroll
          for (int dp = 0; dp < D / 16; ++dp) {
            uint32_t vb[4];
            ldmatrix_x4_trans(vb, va + swz<D>(kk * 16 + (lane & 7) + (((lane >> 3) & 1) << 3),
                                              dp * 2 + (lane >> 4)) * 2);
            mma16816<T>(o[2 * dp], pa, vb[0], vb[1]);
            mma16816<T>(o[2 * dp + 1], pa, vb[2], vb[3]);
          }
        }
      }
      buf ^= 1;
      cur = nxt;
    }
    cp_async_wait<0>();  // nothing may still be writing shared memory (e.g. an empty row's Q)

    if constexpr (!MAP) {
      T* Og = static_cast<T*>(p.out) + b * p.o_stride[0] + h * p.o_stride[2];
      store_rows<D, T>([&](int j, int e) { return o[j][e]; }, m_run, l_run, warp * 16 + g, tq, qlen,
                       q0r, Og, p.o_stride[1], a.lse, row_lse);
    }
  }
}

}  // namespace moddit::cuda
