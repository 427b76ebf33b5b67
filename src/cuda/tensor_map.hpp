#pragma once
// TMA descriptors of the Hopper kernel: one per Q, K, V tensor, describing it
// as a 4-D array {D, N, H, B} (element strides b, n, h as in AttentionParams) read in
// boxes of 64 columns x 128 rows with the 128-byte swizzle the kernel's tiles
// use (tile_io90.cuh), so that one bulk copy fills one half of a tile. Built on
// the host per call (a driver call, no allocation).
#include <cuda.h>

#include <cstdint>

#include "moddit/tensor.hpp"

namespace moddit::cuda {

// Throws (naming `what`) when the driver refuses the description: unaligned base
// or strides, sizes out of range.
void make_tile_map(CUtensorMap* map, const void* base, DType dtype, const int64_t stride[3],
                   int batch, int seq_len, int heads, int head_dim, const char* what);

}  // namespace moddit::cuda
