#pragma once
// The MOD-DiT pattern basis (paper Eq. 3, DESIGN.md 2) on the n x n video block
// grid, and the O(n^2) operations on it that the fit needs. Internal header: the
// CUDA backend reuses it (and ridge_fit.hpp) to run the same fit on the device.
//
// Parameter order (the vector X of Eq. 4), p = 3n - 1 + F parameters:
//   [0, 2n-1)        diagonal C_delta, delta = k - (n-1)  (j - i = delta)
//   [2n-1, 3n-1)     column D_j, j = k - (2n-1)
//   [3n-1, 3n-1+F)   frame region E_f: the square [lo_f, hi_f]^2 of the blocks whose
//                    token ranges intersect frame f (frames unaligned with blocks give
//                    overlapping squares; frames are never floored to whole blocks)
#include <cstdint>
#include <vector>

#include "moddit/token_layout.hpp"

namespace moddit {
namespace core {

struct PatternBasis {
  int n = 0;                       // video blocks per side
  std::vector<int32_t> frame_lo;   // first video block intersecting frame f
  std::vector<int32_t> frame_hi;   // last video block intersecting frame f (inclusive)

  int num_frames() const { return static_cast<int>(frame_lo.size()); }
  int num_lines() const { return 3 * n - 1; }  // diagonals + columns
  int num_params() const { return 3 * n - 1 + num_frames(); }
  int diag_index(int delta) const { return delta + n - 1; }
  int column_index(int j) const { return 2 * n - 1 + j; }
  int frame_index(int f) const { return 3 * n - 1 + f; }
  bool operator==(const PatternBasis& o) const {
    return n == o.n && frame_lo == o.frame_lo && frame_hi == o.frame_hi;
  }
  bool operator<(const PatternBasis& o) const;
};

// The basis of a grid: frame f covers video tokens [f*P, (f+1)*P), P = tokens per frame.
PatternBasis make_pattern_basis(const BlockGrid& grid, const TokenLayout& tokens);
// Same, from frame token count and per-block token ranges (video-relative).
PatternBasis make_pattern_basis(const std::vector<int64_t>& video_block_starts /* n+1 */,
                                int64_t tokens_per_frame, int64_t frames);

// M^T M (p x p, row-major, symmetric), computed analytically from the supports.
std::vector<double> basis_gram(const PatternBasis& basis);

// M^T vec(S) for one row-major n x n map (the diagonal, column and frame sums),
// written to out[0..p). O(n^2 + F).
void basis_project(const PatternBasis& basis, const float* map, double* out);

// M x as a row-major n x n map. O(n^2 + sum_f L_f^2).
void basis_reconstruct(const PatternBasis& basis, const double* x, double* out);

// The explicit design matrix (n^2 x p, row-major): tests and references only.
std::vector<double> basis_matrix(const PatternBasis& basis);

}  // namespace core
}  // namespace moddit
