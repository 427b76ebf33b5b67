#pragma once
// A block layout: the mask handed to a kernel. For every (batch item, head,
// query block), the ascending list of live key blocks, in CSR form. Text rows
// and columns are ordinary blocks here: the policy that builds a layout makes
// them dense; kernels know nothing of text.
#include <cstdint>
#include <utility>
#include <vector>

#include "moddit/token_layout.hpp"

namespace moddit {

struct BlockLayout {
  int batch = 0;
  int heads = 0;  // the heads this layout covers (all, or one head group)
  int num_q_blocks = 0;
  int num_k_blocks = 0;
  // row r = (b * heads + h) * num_q_blocks + qb; live keys of r:
  // col_idx[row_ptr[r] .. row_ptr[r+1]).
  std::vector<int32_t> row_ptr;
  std::vector<int32_t> col_idx;

  int64_t rows() const { return int64_t(batch) * heads * num_q_blocks; }
  int64_t live_blocks() const { return static_cast<int64_t>(col_idx.size()); }
  // Throws moddit::Error on out-of-range, unsorted or duplicated block indices or
  // inconsistent sizes.
  void validate() const;
};

// A dense boolean block mask [batch][heads][nq][nk], the easy form to build masks in.
struct BlockMask {
  int batch = 0, heads = 0, num_q_blocks = 0, num_k_blocks = 0;
  std::vector<uint8_t> bits;

  BlockMask() = default;
  BlockMask(int batch, int heads, int nq, int nk, bool value = false);
  uint8_t& at(int b, int h, int qb, int kb) {
    return bits[((int64_t(b) * heads + h) * num_q_blocks + qb) * num_k_blocks + kb];
  }
  uint8_t at(int b, int h, int qb, int kb) const {
    return bits[((int64_t(b) * heads + h) * num_q_blocks + qb) * num_k_blocks + kb];
  }
};

BlockLayout to_layout(const BlockMask& mask);
BlockMask to_mask(const BlockLayout& layout);
BlockLayout full_layout(int batch, int heads, int num_blocks);

// Fraction of video x video blocks that are live, weighted by their token pairs
// (the "density" every report uses: 1 = dense, text excluded). Rows must be
// sorted (BlockLayout::validate).
double video_density(const BlockLayout& layout, const BlockGrid& grid);
// The same density of one n x n video mask (row-major bytes, nonzero = live).
double video_mask_density(const uint8_t* video_mask, const BlockGrid& grid);

// The blocks of `grid` that meet the token range [begin, end): [first, last + 1).
std::pair<int, int> blocks_meeting(const BlockGrid& grid, int64_t begin, int64_t end);

// The layout of one chunk call (AttentionCall::chunk, backend.hpp): the rows of the query
// blocks that meet [q_begin, q_end) and, in each, the live key blocks that meet
// [k_begin, k_end). `layout` covers the whole sequence (num_q_blocks =
// num_k_blocks = grid's blocks). An empty result (no live block) means the
// chunk pair contributes nothing: ring attention skips its transfer and call.
BlockLayout slice_layout(const BlockLayout& layout, const BlockGrid& grid, int64_t q_begin,
                         int64_t q_end, int64_t k_begin, int64_t k_end);

// Builds a full-sequence mask for one (batch, head) from an n x n video mask:
// video blocks as given, text rows/columns dense, the diagonal block of every row
// kept. `video_mask` is row-major n x n.
void place_video_mask(const uint8_t* video_mask, const BlockGrid& grid, BlockMask& out, int b,
                      int h);

}  // namespace moddit
