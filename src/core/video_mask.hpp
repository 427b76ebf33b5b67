#pragma once
// MOD-DiT mask generation (paper 5.2-5.3, DESIGN.md 2): linear prediction of the
// line intensities, Top-K (or target-density) union of diagonals and columns,
// kept frame regions, the diagonal block of every row; and the assembly of n x n
// video masks into the full-sequence block layout handed to a kernel.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "core/pattern_basis.hpp"
#include "moddit/block_layout.hpp"

namespace moddit {
namespace core {

// x(t) = x_b + (x_b - x_a) (t - t_b) / (t_b - t_a), for `count` values (t_a != t_b).
void predict_linear(const double* x_a, int t_a, const double* x_b, int t_b, int t, int count,
                    double* out);

struct MaskChoice {
  int k = 0;             // lines kept
  double density = 0.0;  // token-pair weighted video x video density of the mask
};

// Builds n x n video masks for one grid; reuses its buffers between heads.
// Mask bytes are 0 or 1.
class VideoMaskBuilder {
 public:
  // block_len: token length of each of the n video blocks.
  VideoMaskBuilder(const PatternBasis& basis, std::vector<int64_t> block_len);

  // lines: the 3n-1 line intensities (parameter order: diagonals then columns);
  // keep_frame: F flags. top_k > 0 keeps that many lines (must be <= 3n-1) and
  // every kept frame. top_k == 0 lands on target_density: the diagonal, then the
  // kept frames' blocks nearest the diagonal first, then the lines in rank order,
  // the last of them (or of the frames) trimmed block by block so that the mask
  // ends within half a block's area of the target (never below the diagonal).
  // MaskChoice::k is then the number of whole lines kept.
  // mask: n*n bytes, row-major, 1 = live; always contains the diagonal.
  MaskChoice build(const double* lines, const uint8_t* keep_frame, int top_k,
                   double target_density, uint8_t* mask);
  // Live blocks per row of the last mask built (the diagonal included).
  const std::vector<int32_t>& row_live() const { return row_live_; }

 private:
  void add_line(int line, uint8_t* mask);
  int build_to_target(const uint8_t* keep_frame, double goal, uint8_t* mask);
  // visit(i, j) for the blocks of a line, i ascending.
  template <class Visit>
  void walk_line(int line, Visit visit) const {
    const int n = basis_.n;
    if (line < 2 * n - 1) {
      const int d = line - (n - 1);
      for (int i = std::max(0, -d); i < std::min(n, n - d); ++i) visit(i, i + d);
    } else {
      for (int i = 0; i < n; ++i) visit(i, line - (2 * n - 1));
    }
  }
  // Branch-free: masks overlap heavily, so "already live" is unpredictable.
  void add(uint8_t* mask, int i, int j) {
    uint8_t& m = mask[static_cast<size_t>(i) * basis_.n + j];
    const int fresh = 1 - m;
    m = 1;
    live_ += fresh * lenf_[i] * lenf_[j];
    row_live_[i] += fresh;
  }

  PatternBasis basis_;
  std::vector<int64_t> len_;
  std::vector<double> lenf_;
  std::vector<int32_t> row_live_;
  double total_ = 0.0;
  double live_ = 0.0;
  std::vector<int32_t> order_;
  std::vector<uint8_t> sel_;  // selected lines (top_k path)
  // Target path: kept-frame blocks, their area by distance |j - i|, line ranks.
  std::vector<uint8_t> frame_;
  std::vector<double> dist_area_;
  std::vector<int32_t> rank_;
};

// Appends the grid's rows for one (batch item, head) to a layout under
// construction (rows in layout order): text rows and columns dense, video blocks
// from the n x n mask, the diagonal block always live. Equals
// to_layout(place_video_mask(...)) without the dense nb x nb intermediate.
void append_layout_rows(const uint8_t* video_mask, const BlockGrid& grid, BlockLayout& layout);

// The block layout of one call from per-(b, h) n x n video masks [B, H, n, n]
// (append_layout_rows for each, in layout order): the one layout builder of
// every policy.
BlockLayout layout_from_video_masks(const std::vector<uint8_t>& masks, const BlockGrid& grid,
                                    int batch, int heads);

// The same in two passes, so that many (batch, head) row sets can be written in
// parallel into one preallocated layout: the number of live key blocks of the
// grid's rows for one mask, then the rows themselves. write_layout_rows fills
// row_end[0..nb) with end offsets (base + running count) and col[0..entries).
int64_t layout_entries(const uint8_t* video_mask, const BlockGrid& grid);
// The same from the live blocks per video row (VideoMaskBuilder::row_live).
int64_t layout_entries_from_rows(const std::vector<int32_t>& row_live, const BlockGrid& grid);

// Packs n*n mask bytes (0/1) into bits (bit k of word k/64), 8 bytes at a time.
void pack_mask_bits(const uint8_t* mask, size_t count, uint64_t* bits);
void write_layout_rows(const uint8_t* video_mask, const BlockGrid& grid, int32_t base,
                       int32_t* row_end, int32_t* col);

// Block lengths of the n video blocks of a grid.
std::vector<int64_t> video_block_lengths(const BlockGrid& grid);

}  // namespace core
}  // namespace moddit
