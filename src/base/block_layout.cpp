#include "moddit/block_layout.hpp"

#include <algorithm>

#include "moddit/error.hpp"
#include "moddit/size_limits.hpp"

namespace moddit {

void BlockLayout::validate() const {
  MODDIT_CHECK(batch > 0 && heads > 0 && num_q_blocks > 0 && num_k_blocks > 0,
               "block layout: non-positive size (batch ", batch, ", heads ", heads, ", ",
               num_q_blocks, "x", num_k_blocks, " blocks)");
  // rows() is an unchecked product; row_ptr holds int32 offsets.
  checked_product({batch, heads, num_q_blocks}, INT32_MAX, "block layout: batch x heads x blocks");
  MODDIT_CHECK(static_cast<int64_t>(row_ptr.size()) == rows() + 1, "block layout: row_ptr has ",
               row_ptr.size(), " entries, expected batch*heads*num_q_blocks+1 = ", rows() + 1);
  MODDIT_CHECK(row_ptr[0] == 0, "block layout: row_ptr[0] must be 0");
  MODDIT_CHECK(row_ptr.back() == static_cast<int64_t>(col_idx.size()),
               "block layout: row_ptr ends at ", row_ptr.back(), " but col_idx has ",
               col_idx.size(), " entries");
  for (int64_t r = 0; r < rows(); ++r) {
    MODDIT_CHECK(row_ptr[r] <= row_ptr[r + 1], "block layout: row_ptr decreases at row ", r);
    for (int32_t i = row_ptr[r]; i < row_ptr[r + 1]; ++i) {
      const int32_t c = col_idx[i];
      MODDIT_CHECK(c >= 0 && c < num_k_blocks, "block layout: key block index ", c,
                   " out of range [0, ", num_k_blocks, ") in row ", r);
      MODDIT_CHECK(i == row_ptr[r] || col_idx[i - 1] < c, "block layout: key block ", c,
                   " in row ", r, (i > row_ptr[r] && col_idx[i - 1] == c ? " is duplicated" :
                   " is out of ascending order"));
    }
  }
}

BlockMask::BlockMask(int b, int h, int nq, int nk, bool value)
    : batch(b), heads(h), num_q_blocks(nq), num_k_blocks(nk) {
  // Bounded like a layout's rows x blocks (int32 CSR offsets) before allocating.
  bits.assign(static_cast<size_t>(checked_product({b, h, nq, nk}, INT32_MAX,
                                                  "block mask: batch x heads x blocks x blocks")),
              value ? 1 : 0);
}

BlockLayout to_layout(const BlockMask& m) {
  BlockLayout l;
  l.batch = m.batch;
  l.heads = m.heads;
  l.num_q_blocks = m.num_q_blocks;
  l.num_k_blocks = m.num_k_blocks;
  l.row_ptr.reserve(static_cast<size_t>(l.rows() + 1));
  l.row_ptr.push_back(0);
  const uint8_t* p = m.bits.data();
  for (int64_t r = 0; r < l.rows(); ++r) {
    for (int kb = 0; kb < m.num_k_blocks; ++kb, ++p)
      if (*p) l.col_idx.push_back(kb);
    l.row_ptr.push_back(static_cast<int32_t>(l.col_idx.size()));
  }
  return l;
}

BlockMask to_mask(const BlockLayout& l) {
  BlockMask m(l.batch, l.heads, l.num_q_blocks, l.num_k_blocks, false);
  for (int64_t r = 0; r < l.rows(); ++r)
    for (int32_t i = l.row_ptr[r]; i < l.row_ptr[r + 1]; ++i)
      m.bits[static_cast<size_t>(r * l.num_k_blocks + l.col_idx[i])] = 1;
  return m;
}

BlockLayout full_layout(int batch, int heads, int num_blocks) {
  return to_layout(BlockMask(batch, heads, num_blocks, num_blocks, true));
}

// O(rows x log) instead of O(live blocks): rows are sorted, so a row's video key
// blocks are one contiguous run of col_idx, and only partial (shorter than
// block_size) blocks need a lookup.
double video_density(const BlockLayout& l, const BlockGrid& grid) {
  const int fv = grid.first_video_block, n = grid.num_video_blocks, bs = grid.block_size;
  std::vector<int32_t> partial;  // video blocks shorter than block_size (the last one)
  for (int kb = fv; kb < fv + n; ++kb)
    if (grid.block_len(kb) != bs) partial.push_back(kb);
  double live = 0.0;
  for (int b = 0; b < l.batch; ++b)
    for (int h = 0; h < l.heads; ++h)
      for (int qb = fv; qb < fv + n; ++qb) {
        const int64_t r = (int64_t(b) * l.heads + h) * l.num_q_blocks + qb;
        const int32_t* first = l.col_idx.data() + l.row_ptr[r];
        const int32_t* last = l.col_idx.data() + l.row_ptr[r + 1];
        const int32_t* lo = std::lower_bound(first, last, fv);
        const int32_t* hi = std::lower_bound(lo, last, fv + n);
        double keys = double(hi - lo) * bs;
        for (int32_t kb : partial)
          if (std::binary_search(lo, hi, kb)) keys += grid.block_len(kb) - bs;
        live += keys * grid.block_len(qb);
      }
  const double V = grid.starts[fv + n] - grid.starts[fv];
  const double total = V * V * l.batch * l.heads;
  return total > 0 ? live / total : 1.0;
}

double video_mask_density(const uint8_t* mask, const BlockGrid& grid) {
  const int n = grid.num_video_blocks, fv = grid.first_video_block;
  double live = 0.0, total = 0.0;
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) {
      const double pairs = double(grid.block_len(fv + i)) * grid.block_len(fv + j);
      total += pairs;
      if (mask[static_cast<size_t>(i) * n + j]) live += pairs;
    }
  return total > 0 ? live / total : 1.0;
}

void place_video_mask(const uint8_t* video_mask, const BlockGrid& grid, BlockMask& out, int b,
                      int h) {
  const int nb = grid.num_blocks(), fv = grid.first_video_block, n = grid.num_video_blocks;
  MODDIT_CHECK(out.num_q_blocks == nb && out.num_k_blocks == nb,
               "place_video_mask: mask has ", out.num_q_blocks, "x", out.num_k_blocks,
               " blocks, grid has ", nb);
  for (int qb = 0; qb < nb; ++qb)
    for (int kb = 0; kb < nb; ++kb) {
      uint8_t live = 1;  // text rows and columns are dense
      if (grid.is_video(qb) && grid.is_video(kb))
        live = (qb == kb) ? 1 : video_mask[(qb - fv) * n + (kb - fv)];
      out.at(b, h, qb, kb) = live;
    }
}

}  // namespace moddit
