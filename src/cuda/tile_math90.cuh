#pragma once
// The per-tile register math of the Hopper kernel (attention_kernel_sm90.cuh), on
// the wgmma m64n128 accumulator layout: a
// thread holds rows g and g + 8 of its warp's 16 and, for key tile column j
// (8 keys), keys j*8 + 2*tq and +1: s[j*4 + 2*i + {0,1}] is row i's pair.
// O has the same layout over D columns: o[j*4 + 2*i + {0,1}], j < D/8.
#include <cmath>
#include <cstdint>

#include "cuda/ptx.cuh"
#include "moddit/attention_params.hpp"
#include "moddit/mask_policy.hpp"

namespace moddit::cuda {

// Scores of keys past the block (kl >= klen) or in the text padding take `fill`:
// -inf in the forward pass (no weight), +inf in the map pass (never below eta).
__device__ __forceinline__ void mask_tile_keys(float (&s)[64], int tq, int kstart, int klen,
                                               const AttentionParams& p, float fill) {
#pragma unroll
  for (int j = 0; j < 16; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int kl = j * 8 + 2 * tq + (e & 1);
      if (kl >= klen || !key_is_real(kstart + kl, p.key_pad_begin, p.key_pad_end)) s[j * 4 + e] = fill;
    }
}

// Whether a tile needs mask_tile_keys: a partial block, or keys in the padding.
__device__ __forceinline__ bool tile_is_partial(int kstart, int klen, int tile_keys,
                                                const AttentionParams& p) {
  return klen < tile_keys || (kstart < p.key_pad_end && kstart + tile_keys > p.key_pad_begin);
}

// Online softmax in base 2 on raw scores: p = 2^(s * scale*log2(e) - m), m in
// scaled units; one FFMA and one MUFU.EX2 per score. Turns s into P and updates
// the running max m and sum l; alpha[i] is the factor O's row i must be scaled by
// (rescale_o), kept apart so that O can still be in flight on the tensor cores.
__device__ __forceinline__ void softmax_tile(float (&s)[64], float (&m_run)[2], float (&l_run)[2],
                                             float scale_log2, float (&alpha)[2]) {
  // Maxima and sums over four partials each: a chain of 16 dependent FMNMX or
  // FADD per row would stall the warp on their latency (Nsight: "wait").
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    float mp[4];
#pragma unroll
    for (int q = 0; q < 4; ++q) mp[q] = fmaxf(s[q * 4 + 2 * i], s[q * 4 + 2 * i + 1]);
#pragma unroll
    for (int j = 4; j < 16; ++j)
      mp[j & 3] = fmaxf(mp[j & 3], fmaxf(s[j * 4 + 2 * i], s[j * 4 + 2 * i + 1]));
    float mx = fmaxf(fmaxf(mp[0], mp[1]), fmaxf(mp[2], mp[3]));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
    const float m_new = fmaxf(m_run[i], mx * scale_log2);
    const float m_use = m_new == -INFINITY ? 0.f : m_new;
    alpha[i] = fast_exp2(m_run[i] - m_use);
    m_run[i] = m_new;
    float sp[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
    for (int j = 0; j < 16; ++j) {
      s[j * 4 + 2 * i] = fast_exp2(fmaf(s[j * 4 + 2 * i], scale_log2, -m_use));
      s[j * 4 + 2 * i + 1] = fast_exp2(fmaf(s[j * 4 + 2 * i + 1], scale_log2, -m_use));
      sp[j & 3] += s[j * 4 + 2 * i] + s[j * 4 + 2 * i + 1];
    }
    l_run[i] = l_run[i] * alpha[i] + ((sp[0] + sp[1]) + (sp[2] + sp[3]));
  }
}

// O's rows times alpha, skipped (warp vote) when no row maximum of the warp moved.
template <int D>
__device__ __forceinline__ void rescale_o(float (&o)[D / 2], const float (&alpha)[2]) {
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    if (__any_sync(0xffffffffu, alpha[i] != 1.f)) {
#pragma unroll
      for (int j = 0; j < D / 8; ++j) {
        o[j * 4 + 2 * i] *= alpha[i];
        o[j * 4 + 2 * i + 1] *= alpha[i];
      }
    }
  }
}

// The thread's scores below eta (mask_policy.hpp's rule, on the scaled score and
// the row's final LSE), summed in 8 chains of 8 adds rather than one of 64.
__device__ __forceinline__ int count_below_eta(const float (&s)[64], const float (&lse_row)[2],
                                               const AttentionParams& p) {
  int part[8] = {0, 0, 0, 0, 0, 0, 0, 0};
#pragma unroll
  for (int j = 0; j < 16; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e)
      part[(j & 1) * 4 + e] += int(below_eta(s[j * 4 + e] * p.softmax_scale, lse_row[e >> 1], p.log_eta));
  return ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
}

// P as the A operand of the P V wgmma (registers, 16 keys per k-step).
template <typename T>
__device__ __forceinline__ void pack_p(const float (&s)[64], uint32_t (&pa)[8][4]) {
#pragma unroll
  for (int kk = 0; kk < 8; ++kk) {
    pa[kk][0] = pack2<T>(s[(2 * kk) * 4 + 0], s[(2 * kk) * 4 + 1]);
    pa[kk][1] = pack2<T>(s[(2 * kk) * 4 + 2], s[(2 * kk) * 4 + 3]);
    pa[kk][2] = pack2<T>(s[(2 * kk + 1) * 4 + 0], s[(2 * kk + 1) * 4 + 1]);
    pa[kk][3] = pack2<T>(s[(2 * kk + 1) * 4 + 2], s[(2 * kk + 1) * 4 + 3]);
  }
}

// Writes the normalised O rows (r0 and r0 + 8 of the query block, those < qlen)
// and their natural-log LSE (when lse is not null; -inf for an empty row).
template <int D, typename T>
__device__ __forceinline__ void store_rows(const float (&o)[D / 2], const float (&m_run)[2],
                                           const float (&l_run)[2], int r0, int tq, int qlen,
                                           int q0, T* Og, int64_t o_stride_n, float* lse,
                                           int64_t row_lse) {
#pragma unroll
  for (int i = 0; i < 2; ++i) {
    float l = l_run[i];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    const float inv = l > 0.f ? 1.f / l : 0.f;
    const int r = r0 + i * 8;
    if (r < qlen) {
      T* orow = Og + int64_t(q0 + r) * o_stride_n;
#pragma unroll
      for (int j = 0; j < D / 8; ++j)
        *reinterpret_cast<uint32_t*>(orow + j * 8 + 2 * tq) =
            pack2<T>(o[j * 4 + 2 * i] * inv, o[j * 4 + 2 * i + 1] * inv);
      if (lse && tq == 0)
        lse[row_lse + q0 + r] = l > 0.f ? (m_run[i] + log2f(l)) * 0.6931471805599453f : -INFINITY;
    }
  }
}

}  // namespace moddit::cuda
