#pragma once
// Shared-memory tiles of the Hopper kernel: one 128-token block per tile, in the
// 128-byte swizzled layout that TMA writes and wgmma reads (each 64-column half of
// a [rows][D] tile is a region of rows x 128 bytes whose 16-byte chunks are XORed
// with row % 8), the bulk copies that fill them and the wgmma descriptors that
// read them.
#include "cuda/attention_kernel.cuh"
#include "cuda/wgmma.cuh"
#include "cuda/work_item.cuh"

namespace moddit::cuda {

constexpr int kKeys90 = 128;  // keys per tile = one 128-token block

// One tile of 128 rows from row `row` of head h, batch b, by TMA: D / 64 boxes of
// 64 columns, each into its 128-row region of the swizzled tile; rows past the
// tensor's end come as zeros. Completes on mbarrier `bar` (bytes counted there).
template <int D>
__device__ __forceinline__ void tma_load_tile(uint32_t smem, const CUtensorMap* map, int row, int h,
                                              int b, uint32_t bar) {
#pragma unroll
  for (int half = 0; half < D / 64; ++half)
    asm volatile(
        "cp.async.bulk.tensor.4d.shared::cluster.global.mbarrier::complete_tx::bytes"
        " [%0], [%1, {%2, %3, %4, %5}], [%6];\n" ::"r"(smem + half * 128 * 128),
        "l"(reinterpret_cast<uint64_t>(map)), "r"(half * 64), "r"(row), "r"(h), "r"(b), "r"(bar)
        : "memory");
}
template <int D, typename T>
constexpr uint32_t kTileBytes90 = 128 * D * sizeof(T);

// wgmma shared-memory descriptor; swizzle 1 = 128-byte, 2 = 64-byte.
__device__ __forceinline__ uint64_t gmma_desc(uint32_t addr, uint32_t lbo, uint32_t sbo,
                                              uint64_t swizzle = 1) {
  return uint64_t((addr & 0x3FFFF) >> 4) | (uint64_t((lbo >> 4) & 0x3FFF) << 16) |
         (uint64_t((sbo >> 4) & 0x3FFF) << 32) | (swizzle << 62);
}

// One FP8 operand tile by TMA from a 2-D map of block tiles (tensor_map.hpp's
// make_fp8_tile_map): the box at row `row` (one bulk copy).
__device__ __forceinline__ void tma_load_rows(uint32_t smem, const CUtensorMap* map, int row,
                                              uint32_t bar) {
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes"
      " [%0], [%1, {%2, %3}], [%4];\n" ::"r"(smem),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(0), "r"(row), "r"(bar)
      : "memory");
}

}  // namespace moddit::cuda
