#pragma once
// Token geometry of block masks: which (frame, spatial position) a range of video
// tokens covers, so that masks defined on tokens ("same spatial neighbourhood in
// any frame", "3D window") become exact block masks even when frames do not
// align with blocks. Shared by the Sparse-vDiT modes and the SVG / sliding-tile
// baselines (src/eval).
#include <cstdint>
#include <vector>

#include "moddit/token_layout.hpp"

namespace moddit::geometry {

// The part of a token range inside one frame: spatial indices [s0, s1] (inclusive).
struct FrameSpan {
  int64_t frame, s0, s1;
};
// The part of a token range inside one image row: columns [x0, x1] (inclusive).
struct RowSpan {
  int64_t frame, y, x0, x1;
};

// Video-relative token range [begin, end) split by frame (P tokens per frame).
std::vector<FrameSpan> frame_spans(int64_t begin, int64_t end, int64_t tokens_per_frame);
// Split by frame and image row (width W, P = height * W).
std::vector<RowSpan> row_spans(int64_t begin, int64_t end, int64_t height, int64_t width);

// Distance between the inclusive intervals [a0, a1] and [b0, b1] (0 if they meet).
inline int64_t interval_gap(int64_t a0, int64_t a1, int64_t b0, int64_t b1) {
  const int64_t g1 = b0 - a1, g2 = a0 - b1;
  const int64_t g = g1 > g2 ? g1 : g2;
  return g > 0 ? g : 0;
}

// n x n video mask: qb, kb live iff some query token and some key token have
// |frame difference| <= frame_radius and |spatial index difference| <=
// spatial_radius (frame_radius < 0: any frames). Diagonal blocks always live.
std::vector<uint8_t> frame_window_mask(const TokenLayout& tokens, const BlockGrid& grid,
                                       int64_t frame_radius, int64_t spatial_radius);
// n x n video mask of a 3D window: |df| <= rf, |dy| <= ry, |dx| <= rx.
std::vector<uint8_t> tile_window_mask(const TokenLayout& tokens, const BlockGrid& grid, int64_t rf,
                                      int64_t ry, int64_t rx);
// n x n band |kb - qb| <= radius.
std::vector<uint8_t> band_mask(const BlockGrid& grid, int64_t radius);


}  // namespace moddit::geometry
