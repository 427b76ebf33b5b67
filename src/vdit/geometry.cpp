#include "vdit/geometry.hpp"

#include <algorithm>
#include <cstdlib>

namespace moddit::geometry {

std::vector<FrameSpan> frame_spans(int64_t begin, int64_t end, int64_t P) {
  std::vector<FrameSpan> out;
  for (int64_t t = begin; t < end;) {
    const int64_t f = t / P, s0 = t % P;
    const int64_t stop = std::min(end, (f + 1) * P);
    out.push_back({f, s0, s0 + (stop - t) - 1});
    t = stop;
  }
  return out;
}

std::vector<RowSpan> row_spans(int64_t begin, int64_t end, int64_t height, int64_t width) {
  std::vector<RowSpan> out;
  const int64_t P = height * width;
  for (int64_t t = begin; t < end;) {
    const int64_t f = t / P, s = t % P, y = s / width, x0 = s % width;
    const int64_t stop = std::min(end, t + (width - x0));
    out.push_back({f, y, x0, x0 + (stop - t) - 1});
    t = stop;
  }
  return out;
}

namespace {
// A span list per video block, so each block pair is a product of short lists.
template <typename Span, typename Split>
std::vector<std::vector<Span>> per_block(const BlockGrid& grid, Split split) {
  std::vector<std::vector<Span>> out(grid.num_video_blocks);
  for (int v = 0; v < grid.num_video_blocks; ++v)
    out[v] = split(grid.video_block_begin(v), grid.video_block_end(v));
  return out;
}

// With any frame allowed, only the union of spatial intervals of a block matters:
// merge them (at most two distinct ones unless the block spans a whole frame).
std::vector<FrameSpan> merge_spatial(std::vector<FrameSpan> spans) {
  std::sort(spans.begin(), spans.end(),
            [](const FrameSpan& a, const FrameSpan& b) { return a.s0 < b.s0; });
  std::vector<FrameSpan> out;
  for (const auto& s : spans) {
    if (!out.empty() && s.s0 <= out.back().s1 + 1) {
      out.back().s1 = std::max(out.back().s1, s.s1);
    } else {
      out.push_back({0, s.s0, s.s1});
    }
  }
  return out;
}

// The n x n video mask where block q sees block k iff some span of q and some
// span of k are `near` (the diagonal block is always live).
template <typename Span, typename Near>
std::vector<uint8_t> span_pair_mask(const std::vector<std::vector<Span>>& spans, Near near) {
  const int n = static_cast<int>(spans.size());
  std::vector<uint8_t> mask(static_cast<size_t>(n) * n, 0);
  for (int q = 0; q < n; ++q)
    for (int k = 0; k < n; ++k) {
      bool live = (q == k);
      for (size_t i = 0; !live && i < spans[q].size(); ++i)
        for (size_t j = 0; !live && j < spans[k].size(); ++j) live = near(spans[q][i], spans[k][j]);
      mask[size_t(q) * n + k] = live;
    }
  return mask;
}
}  // namespace

std::vector<uint8_t> frame_window_mask(const TokenLayout& tokens, const BlockGrid& grid,
                                       int64_t frame_radius, int64_t spatial_radius) {
  const int64_t P = tokens.tokens_per_frame();
  auto spans = per_block<FrameSpan>(
      grid, [P](int64_t a, int64_t b) { return frame_spans(a, b, P); });
  if (frame_radius < 0)
    for (auto& s : spans) s = merge_spatial(std::move(s));
  return span_pair_mask(spans, [&](const FrameSpan& a, const FrameSpan& b) {
    if (frame_radius >= 0 && std::llabs(a.frame - b.frame) > frame_radius) return false;
    return interval_gap(a.s0, a.s1, b.s0, b.s1) <= spatial_radius;
  });
}

std::vector<uint8_t> tile_window_mask(const TokenLayout& tokens, const BlockGrid& grid, int64_t rf,
                                      int64_t ry, int64_t rx) {
  const int64_t H = tokens.height, W = tokens.width;
  auto spans = per_block<RowSpan>(grid, [H, W](int64_t a, int64_t b) { return row_spans(a, b, H, W); });
  return span_pair_mask(spans, [&](const RowSpan& a, const RowSpan& b) {
    return std::llabs(a.frame - b.frame) <= rf && std::llabs(a.y - b.y) <= ry &&
           interval_gap(a.x0, a.x1, b.x0, b.x1) <= rx;
  });
}

std::vector<uint8_t> band_mask(const BlockGrid& grid, int64_t radius) {
  const int n = grid.num_video_blocks;
  std::vector<uint8_t> mask(static_cast<size_t>(n) * n, 0);
  for (int q = 0; q < n; ++q)
    for (int k = 0; k < n; ++k) mask[size_t(q) * n + k] = std::llabs(int64_t(q) - k) <= radius;
  return mask;
}


}  // namespace moddit::geometry
