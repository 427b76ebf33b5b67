#include "core/static_masks.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>

#include "core/target_fill.hpp"
#include "moddit/error.hpp"

namespace moddit {
namespace core {

namespace {

struct Segment {
  double frame = 0, y = 0, x = 0;
  int64_t lo = 0, hi = 0;  // its tokens' spatial indices in the frame, [lo, hi)
};

// Splits video block v at frame boundaries; one segment per frame it touches.
std::vector<Segment> block_segments(const TokenLayout& tokens, const BlockGrid& grid, int v) {
  const int64_t P = tokens.tokens_per_frame(), W = tokens.width;
  const int64_t begin = grid.video_block_begin(v), end = grid.video_block_end(v);
  std::vector<Segment> segs;
  for (int64_t a = begin; a < end;) {
    const int64_t f = a / P;
    const int64_t b = std::min(end, (f + 1) * P);
    double sy = 0, sx = 0;
    for (int64_t t = a; t < b; ++t) {
      const int64_t l = t - f * P;
      sy += double(l / W);
      sx += double(l % W);
    }
    const double cnt = double(b - a);
    segs.push_back({double(f), sy / cnt, sx / cnt, a - f * P, b - f * P});
    a = b;
  }
  return segs;
}

// Radial Attention's band of a frame distance: 0 for the same frame, then
// bit_length(df) (1, 2, 2, 3, 3, 3, 3, 4, ...), so the window halves each time
// the frame distance doubles.
int radial_band(double df) {
  int band = 0;
  for (int64_t d = static_cast<int64_t>(df + 0.5); d > 0; d >>= 1) ++band;
  return band;
}

// (primary, secondary) key of a segment pair; smaller = kept earlier.
std::array<double, 2> pair_key(StaticMaskKind kind, const Segment& a, const Segment& b) {
  const double df = std::fabs(a.frame - b.frame);
  if (kind == StaticMaskKind::Window) {
    const double dy = std::fabs(a.y - b.y), dx = std::fabs(a.x - b.x);
    const double spatial = std::max(dy, dx);
    return {std::max(df, spatial), std::sqrt(df * df + dy * dy + dx * dx)};
  }
  // Radial: the pair is in the mask iff the smallest spatial-index distance of
  // its tokens is below the band's window w / 2^band; the key is the window
  // scale w at which it joins (+1: a window is at least one token wide).
  const double gap = double(std::max<int64_t>({0, b.lo - a.hi + 1, a.lo - b.hi + 1}));
  return {(gap + 1.0) * std::ldexp(1.0, radial_band(df)), df};
}

}  // namespace

std::vector<uint8_t> static_video_mask(StaticMaskKind kind, const TokenLayout& tokens,
                                       const BlockGrid& grid, double target_density) {
  MODDIT_CHECK(target_density >= 0.0 && target_density <= 1.0,
               "static mask: target density must be in [0, 1], got ", target_density);
  const int n = grid.num_video_blocks;
  std::vector<std::vector<Segment>> segs(n);
  for (int v = 0; v < n; ++v) segs[v] = block_segments(tokens, grid, v);

  struct Entry {
    std::array<double, 2> key;
    int i, j;
  };
  std::vector<Entry> entries;
  entries.reserve(static_cast<size_t>(n) * n);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) {
      if (i == j) continue;
      std::array<double, 2> best = {std::numeric_limits<double>::infinity(), 0.0};
      for (const Segment& a : segs[i])
        for (const Segment& b : segs[j]) best = std::min(best, pair_key(kind, a, b));
      entries.push_back({best, i, j});
    }
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) {
    if (a.key != b.key) return a.key < b.key;
    const int da = std::abs(a.i - a.j), db = std::abs(b.i - b.j);
    if (da != db) return da < db;
    return a.i != b.i ? a.i < b.i : a.j < b.j;
  });

  std::vector<uint8_t> mask(static_cast<size_t>(n) * n, 0);
  for (int i = 0; i < n; ++i) mask[static_cast<size_t>(i) * n + i] = 1;
  std::vector<int32_t> order;
  order.reserve(entries.size());
  for (const Entry& e : entries) order.push_back(e.i * n + e.j);
  fill_to_target(order, grid, target_density, mask.data());
  return mask;
}

}  // namespace core
}  // namespace moddit
