#pragma once
// The forward epilogue of both attention kernels: a thread's two rows of O,
// normalised, and their LSE. Both kernels hold O in the m16n8 accumulator
// layout (rows g and g + 8 of a warp's 16, columns j*8 + 2*tq and +1), the
// portable one as o[j][4], the Hopper one as o[j*4]; `o_at(j, e)` reads element
// e of column group j in either.
#include <cmath>
#include <cstdint>

#include "cuda/ptx.cuh"

namespace moddit::cuda {

// Writes rows r0 and r0 + 8 of the query block (those < qlen) and their natural-log
// LSE (when lse is not null; -inf for an empty row).
template <int D, typename T, typename OAt>
__device__ __forceinline__ void store_rows(OAt o_at, const float (&m_run)[2], const float (&l_run)[2],
                                           int r0, int tq, int qlen, int q0, T* Og, int64_t o_stride_n,
                                           float* lse, int64_t row_lse) {
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
            pack2<T>(o_at(j, 2 * i) * inv, o_at(j, 2 * i + 1) * inv);
      if (lse && tq == 0)
        lse[row_lse + q0 + r] = l > 0.f ? (m_run[i] + log2f(l)) * 0.6931471805599453f : -INFINITY;
    }
  }
}

}  // namespace moddit::cuda
