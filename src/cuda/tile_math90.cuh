#pragma once
// The per-tile register math of the Hopper kernel (attention_kernel_sm90.cuh), on
// the wgmma m64n128 accumulator layout: a
// thread holds rows g and g + 8 of its warp's 16 and, for key tile column j
// (8 keys), keys j*8 + 2*tq and +1: s[j*4 + 2*i + {0,1}] is row i's pair.
// O has the same layout over D columns: o[j*4 + 2*i + {0,1}], j < D/8.
#include <cmath>
#include <cstdint>

#include "cuda/fp8_convert.cuh"
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

// Online softmax in base 2 on raw scores: p = 2^(s * scale[i] - m + p_log2),
// scale[i] = row i's scale * log2(e) (FP8: times its Q and the tile's K scale),
// m in scaled units, p_log2 the lift of P before it is rounded (FP8: 2^8; it
// cancels in O / l); one FFMA and one MUFU.EX2 per score. Turns s into P and
// updates the running max m and sum l; alpha[i] is the factor O's row i must be
// scaled by (rescale_o), kept apart so that O can still be in flight on the
// tensor cores.
__device__ __forceinline__ void softmax_tile(float (&s)[64], float (&m_run)[2], float (&l_run)[2],
                                             const float (&scale)[2], float p_log2,
                                             float (&alpha)[2]) {
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
    const float m_new = fmaxf(m_run[i], mx * scale[i]);
    const float m_use = m_new == -INFINITY ? 0.f : m_new;
    alpha[i] = fast_exp2(m_run[i] - m_use);
    m_run[i] = m_new;
    const float bias = p_log2 - m_use;
    float sp[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
    for (int j = 0; j < 16; ++j) {
      s[j * 4 + 2 * i] = fast_exp2(fmaf(s[j * 4 + 2 * i], scale[i], bias));
      s[j * 4 + 2 * i + 1] = fast_exp2(fmaf(s[j * 4 + 2 * i + 1], scale[i], bias));
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

// The thread's scores below eta. Both forms give mask_policy.hpp's decision bit
// for bit; the first takes two FMA-pipe instructions per score (an FFMA.SAT that
// is 1 or 0, an FADD), the second, for rows whose threshold is 0 or tiny, a
// compare and a select on the half-rate ALU pipe. Sums in 8 chains.
__device__ __forceinline__ float fma_sat(float a, float b, float c) {
  float r;
  asm("fma.rn.sat.f32 %0, %1, %2, %3;\n" : "=f"(r) : "f"(a), "f"(b), "f"(c));
  return r;
}
__device__ __forceinline__ int count_below_fma(const float (&s)[64], const SatCount (&c)[2]) {
  float part[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
#pragma unroll
  for (int j = 0; j < 16; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e)
      part[(j & 1) * 4 + e] += fma_sat(s[j * 4 + e], c[e >> 1].neg_m, c[e >> 1].t);
  return int(((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7])));
}
__device__ __forceinline__ int count_below_compare(const float (&s)[64], const float (&thr)[2]) {
  int part[8] = {0, 0, 0, 0, 0, 0, 0, 0};
#pragma unroll
  for (int j = 0; j < 16; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) part[(j & 1) * 4 + e] += s[j * 4 + e] < thr[e >> 1] ? 1 : 0;
  return ((part[0] + part[1]) + (part[2] + part[3])) + ((part[4] + part[5]) + (part[6] + part[7]));
}

// P as the A operand of the P V wgmma, in registers: bf16 8 k-steps of 16 keys,
// FP8 4 k-steps of 32.
template <bool FP8>
using PRegs = uint32_t[FP8 ? 4 : 8][4];

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

// FP8: register r of k-step kk holds row g (r even) or g + 8 (r odd) of the
// column groups 4 kk + 2 (r / 2) and + 1, i.e. keys 2 tq, 2 tq + 1, 8 + 2 tq,
// 9 + 2 tq of a 16-key group: the A operand's columns 4 tq .. 4 tq + 3, which
// is the key order fp8::vt_key_of_column gives the V^T tile.
__device__ __forceinline__ void pack_p_fp8(const float (&s)[64], uint32_t (&pa)[4][4]) {
#pragma unroll
  for (int kk = 0; kk < 4; ++kk)
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const int j = 4 * kk + 2 * (r >> 1), i = r & 1;
      pa[kk][r] = pack_e4m3x4(s[j * 4 + 2 * i], s[j * 4 + 2 * i + 1], s[(j + 1) * 4 + 2 * i],
                              s[(j + 1) * 4 + 2 * i + 1]);
    }
}

}  // namespace moddit::cuda
