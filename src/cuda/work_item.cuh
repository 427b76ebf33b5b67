#pragma once
// One work item of the persistent schedule, shared by the portable and the Hopper
// kernels: a layout row (batch, selected head, query block) and the range of its
// live key blocks to visit.
#include <cstdint>

#include "moddit/attention_params.hpp"

namespace moddit {
namespace cuda {

struct WorkItem {
  int qb = 0, b = 0, h = 0;   // query block, batch item, head
  int q0 = 0, qlen = 0;       // the query block's tokens within the call's query range
  const int32_t* live = nullptr;  // the row's live key blocks; null = every block
  int lo = 0, hi = 0;         // visit live[lo..hi) (or blocks lo..hi)
};

// Key block kb's keys within the call's key range: [x, y) (the whole block on a
// whole-sequence call). Token indices are the sequence's; the kernels subtract
// k_token_begin (q_token_begin) where they address the buffers.
__device__ __forceinline__ int2 key_span(const AttentionParams& p, int kb) {
  return make_int2(max(p.block_starts[kb], p.k_token_begin),
                   min(p.block_starts[kb + 1], p.k_token_begin + p.k_tokens));
}

// Decodes layout row `row` (rows are the call's query blocks, AttentionParams).
// The map pass visits only video x video blocks: it skips text query blocks
// (returns false) and narrows [lo, hi) to the video key blocks, one contiguous
// range since live lists are ascending.
template <bool MAP>
__device__ __forceinline__ bool decode_work_item(const AttentionParams& p, int row, WorkItem& w) {
  const int nq = p.num_q_blocks;
  const int fvb = p.first_video_block, nvb = p.num_video_blocks;
  w.qb = p.q_block_begin + row % nq;
  const int bs = row / nq;
  const int sel = bs % p.num_sel_heads;
  w.b = bs / p.num_sel_heads;
  w.h = p.heads ? p.heads[sel] : sel;
  if (MAP && (w.qb < fvb || w.qb >= fvb + nvb)) return false;
  w.q0 = max(p.block_starts[w.qb], p.q_token_begin);
  w.qlen = min(p.block_starts[w.qb + 1], p.q_token_begin + p.q_tokens) - w.q0;
  w.live = nullptr;
  w.lo = p.k_block_begin;
  w.hi = p.k_block_end;
  if (p.layout_row_ptr) {
    // A layout row lists only key blocks that meet the call's key range (a chunk
    // call's included): visit all of them, from the first.
    const int beg = p.layout_row_ptr[row];
    w.live = p.layout_col_idx + beg;
    w.lo = 0;
    w.hi = p.layout_row_ptr[row + 1] - beg;
  }
  if (MAP) {
    if (w.live) {
      // Text blocks are the first fvb and the last nb - fvb - nvb of the grid and
      // a live list is ascending without repeats, so at most that many entries
      // sit at either end: scan them rather than bisect (each probe is a
      // dependent load; without text there is none).
      while (w.lo < w.hi && w.live[w.lo] < fvb) ++w.lo;
      while (w.hi > w.lo && w.live[w.hi - 1] >= fvb + nvb) --w.hi;
    } else {
      w.lo = fvb;
      w.hi = fvb + nvb;
    }
  }
  return true;
}

}  // namespace cuda
}  // namespace moddit
