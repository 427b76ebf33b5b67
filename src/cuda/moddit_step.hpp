#pragma once
// The MOD-DiT step as CUDA kernels (moddit_step.cu), one CTA per head: the fit
// (map fusion, M^T vec(S), the Schur-complement solve, the NAE) and the masks
// (prediction, line ranking, the density-targeted line count, mask bits and the
// layout's row sizes), then the layout rows and their schedule. The host
// orchestration is moddit_device_engine.cpp; the CPU twin of every kernel is in
// src/core (ridge_fit, video_mask, sparsity_map) and the GPU tests compare them.
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace moddit::cuda {

// One video block grid and its ridge factor, on the device.
struct StepGrid {
  int n = 0;       // video blocks per side
  int F = 0;       // frames
  int nb = 0;      // all blocks (text included)
  int fv = 0;      // first video block
  int words = 0;   // 32-bit words per mask row: (n + 31) / 32
  const int32_t* len = nullptr;       // [n] token length of each video block
  const int32_t* frame_lo = nullptr;  // [F] first video block of frame f
  const int32_t* frame_hi = nullptr;  // [F] last video block of frame f (inclusive)
  const int32_t* row_f_lo = nullptr;  // [n] first frame meeting block i
  const int32_t* row_f_hi = nullptr;  // [n] last frame meeting block i
  const int32_t* tiles = nullptr;     // [nb] 64-key tiles of each block (schedule cost)
  const double* dinv = nullptr;       // [2n-1] D^-1 (ridge_fit.hpp)
  const double* sinv = nullptr;       // [(n+F)^2] S^-1, symmetric
  int full_row_tiles = 0;             // tiles of a dense row

  __host__ __device__ int lines() const { return 3 * n - 1; }
  __host__ __device__ int params() const { return 3 * n - 1 + F; }
  __host__ __device__ int diagonals() const { return 2 * n - 1; }
};

// The fit of one batch item's heads (grid = heads).
struct FitArgs {
  StepGrid g;
  const int32_t* counts = nullptr;     // [H, n, n] new map counts, -1 = not computed
  uint16_t* fused = nullptr;           // [H, n, n] the slot's fused counts (updated)
  bool has_previous = false;           // false: blocks not computed become 0
  const uint32_t* live_mask = nullptr; // [H, n, words]: fuse only live blocks; null = all
  double* x = nullptr;                 // [H, p] the fit
  double* nae = nullptr;               // [H] ||S - M x|| / ||S||
  int* bad_count = nullptr;            // set to 1 + block index when a count exceeds its pairs
};
void launch_fit(const FitArgs& a, int heads, cudaStream_t stream);

// The masks of one batch item's heads (grid = heads).
struct MaskArgs {
  StepGrid g;
  const double* xa = nullptr;  // [H, p] older reference (== xb with one reference)
  const double* xb = nullptr;  // [H, p] newer reference; null: no fit yet, all live
  double r = 0.0;              // prediction factor (t - t_b) / (t_b - t_a); 0: use xb
  double tau_e = 0.0;
  int top_k = 0;               // > 0: that many lines; 0: the density target
  double goal = 0.0;           // target_density x (video tokens)^2
  uint32_t* mask = nullptr;    // [H, n, words] out
  int32_t* row_entries = nullptr;  // [H, nb] out: live key blocks per layout row (or null)
  int64_t* live_area = nullptr;    // [H] out: token pairs of the mask
};
void launch_masks(const MaskArgs& a, int heads, cudaStream_t stream);

// The layout rows of one batch item (warp per row), from its masks; row_ptr is
// the scan of all rows' entries. cost[r] = 64-key tiles of row r.
struct LayoutArgs {
  StepGrid g;
  const uint32_t* mask = nullptr;  // [H, n, words]
  const int32_t* row_ptr = nullptr;
  int32_t* col_idx = nullptr;
  int32_t* cost = nullptr;
  int64_t row_begin = 0;           // first row of this batch item
};
void launch_layout_rows(const LayoutArgs& a, int heads, cudaStream_t stream);

// Scratch bytes of scan_rows and schedule_rows for `rows` rows of `nb` blocks.
size_t schedule_scratch_bytes(int64_t rows, int nb);
// row_ptr = [0, inclusive scan of row_entries].
void scan_rows(const int32_t* row_entries, int32_t* row_ptr, int64_t rows, void* scratch,
               size_t scratch_bytes, cudaStream_t stream);
// order = the backend's schedule (cuda_backend.cpp, longest_first with groups):
// each (batch, head)'s nb rows together, groups by total cost largest first, rows
// by cost within a group largest first, ties in index order (stable radix sorts).
void schedule_rows(const int32_t* cost, int64_t rows, int nb, int32_t* order, void* scratch,
                   size_t scratch_bytes, cudaStream_t stream);

// density = sum(live_area) / (count * total_area), written to `out` (pinned host).
void launch_density(const int64_t* live_area, int count, double total_area, float* out,
                    cudaStream_t stream);

}  // namespace moddit::cuda
