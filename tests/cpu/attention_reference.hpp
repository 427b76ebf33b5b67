#pragma once
// A naive, double-precision, token-level attention reference for the tests. It
// shares nothing with the kernel but the public structs: it tiles the sequence
// itself, expands the block layout to a per-token key mask, finds the padding
// itself, and computes scores, softmax, out, LSE and map counts directly.
#include <cstdint>
#include <vector>

#include "moddit/backend.hpp"

namespace moddit_test {

struct Reference {
  int64_t B = 0, N = 0, H = 0, D = 0, n = 0;  // n = video blocks per side
  std::vector<uint8_t> head_selected;  // [H]
  std::vector<double> out;             // [B][N][H][D]; selected heads only
  std::vector<double> lse;             // [B][H][N]; -inf for an empty row
  // [B][H][n][n]: exact count of pairs with P < eta on computed video blocks,
  // -1 where the block is not computed (or the head not selected).
  std::vector<int64_t> counts;
  // [B][H][n][n]: pairs whose score lies within the fp32 error band of the
  // threshold; a kernel's count may differ from `counts` by at most this.
  std::vector<int64_t> band;
  // [B][H][n][n] on the same blocks (-1 elsewhere): the block's probability mass
  // summed over its rows (MapStatistic::Mass), its fp32 error bound (the pairs'
  // score and LSE error bands weighted by P), its rows and real keys.
  std::vector<double> mass, mass_error;
  std::vector<int64_t> rows, keys;

  double out_at(int64_t b, int64_t t, int64_t h, int64_t d) const {
    return out[static_cast<size_t>(((b * N + t) * H + h) * D + d)];
  }
  double lse_at(int64_t b, int64_t h, int64_t t) const {
    return lse[static_cast<size_t>((b * H + h) * N + t)];
  }
};

// Block starts by the documented rule: each segment (text, video) tiled from its
// own first token; returns the starts plus the end, and the video block range.
std::vector<int64_t> reference_tiling(const moddit::TokenLayout& t, int block_size,
                                      int* first_video_block, int* num_video_blocks);

Reference naive_attention(const moddit::AttentionCall& call);

}  // namespace moddit_test
