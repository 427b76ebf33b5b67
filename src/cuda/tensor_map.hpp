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

// An FP8 operand array of `rows` rows of `row_bytes` (64 or 128) bytes, read
// in boxes of `box_rows` rows with the swizzle the FP8 tiles use (128-byte for
// 128-byte rows, 64-byte for 64-byte rows).
void make_fp8_tile_map(CUtensorMap* map, const void* base, int row_bytes, int64_t rows, int box_rows,
                       const char* what);

}  // namespace moddit::cuda
