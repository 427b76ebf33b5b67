#pragma once
// Shared-memory tiles of the Hopper kernel: one 128-token block per tile, in the
// 128-byte swizzled layout wgmma reads (each 64-column half of a [rows][D] tile
// is a region of rows x 128 bytes whose 16-byte chunks are XORed with row % 8),
// the cp.async copies that fill them and the wgmma descriptors that read them.
#include "cuda/attention_kernel.cuh"
#include "cuda/wgmma.cuh"
#include "cuda/work_item.cuh"

namespace moddit::cuda {

constexpr int kKeys90 = 128;  // keys per tile = one 128-token block

// Element offset of (row, 16-byte chunk) in a tile of R rows.
template <int R>
__device__ __forceinline__ int swz90(int row, int chunk) {
  return (chunk >> 3) * (R * 64) + row * 64 + (((chunk & 7) ^ (row & 7)) << 3);
}

// R rows by NT threads: thread t copies chunk t % (D/8) of rows t / (D/8) + k * step,
// so the chunk, the swizzle phase and the address increments are fixed per thread.
template <int D, typename T, int NT = 256, int R = 128>
__device__ __forceinline__ void load_rows90(T* smem, const T* g, int64_t stride_n, int start,
                                            int len, int tid) {
  constexpr int kChunks = D / 8, kStep = NT / kChunks;
  const int c = tid % kChunks, r0 = tid / kChunks;
  const uint32_t dst = smem_addr(smem) + swz90<R>(r0, c) * 2;
  const T* src = g + int64_t(start + r0) * stride_n + c * 8;
  const int64_t src_step = int64_t(kStep) * stride_n;
#pragma unroll
  for (int k = 0; k < R / kStep; ++k) {
    const bool ok = r0 + k * kStep < len;
    cp_async16(dst + k * kStep * 128, ok ? src + k * src_step : g, ok);
  }
}

// wgmma shared-memory descriptor, 128-byte swizzle.
__device__ __forceinline__ uint64_t gmma_desc(uint32_t addr, uint32_t lbo, uint32_t sbo) {
  return uint64_t((addr & 0x3FFFF) >> 4) | (uint64_t((lbo >> 4) & 0x3FFF) << 16) |
         (uint64_t((sbo >> 4) & 0x3FFF) << 32) | (uint64_t(1) << 62);
}

}  // namespace moddit::cuda
