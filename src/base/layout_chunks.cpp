// Chunks of a sequence for ring attention: which blocks a token range meets, and
// the rows and key blocks of a whole-sequence layout that one chunk pair needs.
#include <algorithm>

#include "moddit/block_layout.hpp"
#include "moddit/error.hpp"

namespace moddit {

std::pair<int, int> blocks_meeting(const BlockGrid& grid, int64_t begin, int64_t end) {
  MODDIT_CHECK(!grid.starts.empty() && begin >= 0 && begin < end && end <= grid.starts.back(),
               "token range [", begin, ", ", end, ") is empty or outside the sequence of ",
               grid.starts.empty() ? 0 : grid.starts.back(), " tokens");
  const auto& s = grid.starts;
  const int first = static_cast<int>(std::upper_bound(s.begin(), s.end(), begin) - s.begin()) - 1;
  const int last = static_cast<int>(std::lower_bound(s.begin(), s.end(), end) - s.begin());
  return {first, last};
}

BlockLayout slice_layout(const BlockLayout& l, const BlockGrid& grid, int64_t q_begin,
                         int64_t q_end, int64_t k_begin, int64_t k_end) {
  const int nb = grid.num_blocks();
  MODDIT_CHECK(l.num_q_blocks == nb && l.num_k_blocks == nb, "slice_layout: the layout is ",
               l.num_q_blocks, "x", l.num_k_blocks, " blocks, the grid has ", nb,
               " (slice a whole-sequence layout)");
  MODDIT_CHECK(static_cast<int64_t>(l.row_ptr.size()) == l.rows() + 1,
               "slice_layout: row_ptr has ", l.row_ptr.size(), " entries, expected ", l.rows() + 1);
  const auto qb = blocks_meeting(grid, q_begin, q_end);
  const auto kb = blocks_meeting(grid, k_begin, k_end);
  BlockLayout out;
  out.batch = l.batch;
  out.heads = l.heads;
  out.num_q_blocks = qb.second - qb.first;
  out.num_k_blocks = nb;
  out.row_ptr.reserve(static_cast<size_t>(out.rows()) + 1);
  out.row_ptr.push_back(0);
  for (int64_t t = 0; t < int64_t(l.batch) * l.heads; ++t)
    for (int q = qb.first; q < qb.second; ++q) {
      const int64_t r = t * nb + q;
      const int32_t* row = l.col_idx.data() + l.row_ptr[r];
      const int32_t* end = l.col_idx.data() + l.row_ptr[r + 1];
      const int32_t* a = std::lower_bound(row, end, kb.first);  // rows are ascending
      const int32_t* e = std::lower_bound(a, end, kb.second);
      out.col_idx.insert(out.col_idx.end(), a, e);
      out.row_ptr.push_back(static_cast<int32_t>(out.col_idx.size()));
    }
  return out;
}

}  // namespace moddit
