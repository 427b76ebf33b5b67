// Mask generation: Top-K line unions / masks trimmed to a target density, frame regions, the
// diagonal, the layout assembly and the linear prediction (DESIGN.md 2).
#include <gtest/gtest.h>

#include <algorithm>
#include <numeric>
#include <random>

#include "core/pattern_basis.hpp"
#include "core/video_mask.hpp"
#include "moddit/error.hpp"
#include "moddit/token_layout.hpp"

using namespace moddit;
using namespace moddit::core;

namespace {

TokenLayout layout(int64_t frames, int64_t P, int64_t text, TextPosition pos) {
  TokenLayout t;
  t.frames = frames;
  t.height = P;
  t.width = 1;
  t.text_tokens = text;
  t.text_valid = text;
  t.text_position = pos;
  return t;
}

// Naive reference: a mask from the first k lines of the ascending order, rebuilt.
std::vector<uint8_t> naive_mask(const PatternBasis& b, const std::vector<double>& lines,
                                const std::vector<uint8_t>& keep, int k) {
  const int n = b.n;
  std::vector<int> order(lines.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int c) { return lines[a] < lines[c]; });
  std::vector<uint8_t> m(static_cast<size_t>(n) * n, 0);
  for (int i = 0; i < n; ++i) m[i * n + i] = 1;
  for (int f = 0; f < b.num_frames(); ++f)
    if (keep[f])
      for (int i = b.frame_lo[f]; i <= b.frame_hi[f]; ++i)
        for (int j = b.frame_lo[f]; j <= b.frame_hi[f]; ++j) m[i * n + j] = 1;
  for (int r = 0; r < k; ++r) {
    const int l = order[r];
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < n; ++j)
        if ((l < 2 * n - 1 && j - i == l - (n - 1)) || (l >= 2 * n - 1 && j == l - (2 * n - 1)))
          m[i * n + j] = 1;
  }
  return m;
}

double density(const std::vector<uint8_t>& m, const std::vector<int64_t>& len) {
  const int n = static_cast<int>(len.size());
  double live = 0, total = 0;
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j) {
      const double w = double(len[i]) * len[j];
      total += w;
      if (m[i * n + j]) live += w;
    }
  return live / total;
}

}  // namespace

TEST(VideoMask, TopKIsTheUnionOfTheLowestLinesPlusDiagonalAndFrames) {
  std::mt19937 rng(21);
  std::uniform_real_distribution<double> u(-1, 1);
  const TokenLayout t = layout(7, 100, 0, TextPosition::None);  // 700 tokens, n = 11 at 64
  const BlockGrid g = make_block_grid(t, 64);
  const PatternBasis b = make_pattern_basis(g, t);
  VideoMaskBuilder builder(b, video_block_lengths(g));
  const int n = b.n;
  std::vector<uint8_t> mask(static_cast<size_t>(n) * n);
  for (int k : {1, 2, 5, 13, 3 * n - 1}) {
    std::vector<double> lines(static_cast<size_t>(b.num_lines()));
    for (auto& x : lines) x = u(rng);
    std::vector<uint8_t> keep(static_cast<size_t>(b.num_frames()));
    for (auto& x : keep) x = rng() % 2;
    const MaskChoice c = builder.build(lines.data(), keep.data(), k, 0.5, mask.data());
    EXPECT_EQ(c.k, k);
    EXPECT_EQ(mask, naive_mask(b, lines, keep, k)) << "k = " << k;
    for (int i = 0; i < n; ++i) EXPECT_TRUE(mask[i * n + i]);
    EXPECT_NEAR(c.density, density(mask, video_block_lengths(g)), 1e-12);
  }
  // All lines: every block (the columns alone cover the grid).
  std::vector<double> lines(static_cast<size_t>(b.num_lines()), 0.0);
  std::vector<uint8_t> none(static_cast<size_t>(b.num_frames()), 0);
  EXPECT_DOUBLE_EQ(builder.build(lines.data(), none.data(), 3 * n - 1, 0.5, mask.data()).density,
                   1.0);
}

bool subset(const std::vector<uint8_t>& a, const std::vector<uint8_t>& b) {
  for (size_t k = 0; k < a.size(); ++k)
    if (a[k] && !b[k]) return false;
  return true;
}

TEST(VideoMask, TargetDensityIsMetWithinHalfABlockByTrimmingTheLastLine) {
  std::mt19937 rng(22);
  std::uniform_real_distribution<double> u(-1, 1);
  const TokenLayout t = layout(5, 150, 70, TextPosition::Before);  // partial last block
  const BlockGrid g = make_block_grid(t, 64);
  const PatternBasis b = make_pattern_basis(g, t);
  const std::vector<int64_t> len = video_block_lengths(g);
  const double V = std::accumulate(len.begin(), len.end(), 0.0);
  const double half_block = 0.5 * double(len[0]) * len[0] / (V * V);
  VideoMaskBuilder builder(b, len);
  const int n = b.n;
  std::vector<uint8_t> mask(static_cast<size_t>(n) * n);
  const std::vector<uint8_t> none(static_cast<size_t>(b.num_frames()), 0);
  const double diagonal = density(naive_mask(b, std::vector<double>(b.num_lines(), 0.0), none, 0), len);
  for (int trial = 0; trial < 20; ++trial)
    for (double target : {0.2, 0.37, 0.6, 0.9}) {
      std::vector<double> lines(static_cast<size_t>(b.num_lines()));
      for (auto& x : lines) x = u(rng);
      std::vector<uint8_t> keep(static_cast<size_t>(b.num_frames()), 0);
      keep[1] = 1;
      const MaskChoice c = builder.build(lines.data(), keep.data(), 0, target, mask.data());
      // The whole lines kept, then part of the next one.
      EXPECT_TRUE(subset(naive_mask(b, lines, keep, c.k), mask)) << target;
      EXPECT_TRUE(subset(mask, naive_mask(b, lines, keep, c.k + 1))) << target;
      EXPECT_NEAR(c.density, target, half_block + 1e-12) << target;
      EXPECT_NEAR(c.density, density(mask, len), 1e-12);
      for (int i = 0; i < n; ++i) EXPECT_TRUE(mask[i * n + i]);
    }
  // Below the diagonal: the diagonal alone.
  std::vector<double> lines(static_cast<size_t>(b.num_lines()), 0.0);
  std::vector<uint8_t> all(static_cast<size_t>(b.num_frames()), 1);
  const MaskChoice c = builder.build(lines.data(), all.data(), 0, diagonal / 2, mask.data());
  EXPECT_EQ(c.k, 0);
  EXPECT_DOUBLE_EQ(c.density, diagonal);
  // Every line: the whole grid.
  EXPECT_DOUBLE_EQ(builder.build(lines.data(), none.data(), 0, 1.0, mask.data()).density, 1.0);
}

TEST(VideoMask, KeptFramesAboveTheTargetAreTrimmedFarthestFromTheDiagonalFirst) {
  std::mt19937 rng(24);
  std::uniform_real_distribution<double> u(-1, 1);
  const TokenLayout t = layout(3, 1280, 0, TextPosition::None);  // n = 30 at 128, 10 per frame
  const BlockGrid g = make_block_grid(t, 128);
  const PatternBasis b = make_pattern_basis(g, t);
  const std::vector<int64_t> len = video_block_lengths(g);
  VideoMaskBuilder builder(b, len);
  const int n = b.n;
  std::vector<uint8_t> mask(static_cast<size_t>(n) * n);
  std::vector<double> lines(static_cast<size_t>(b.num_lines()));
  for (auto& x : lines) x = u(rng);
  const std::vector<uint8_t> all(static_cast<size_t>(b.num_frames()), 1);
  const std::vector<uint8_t> frames = naive_mask(b, lines, all, 0);
  ASSERT_NEAR(density(frames, len), 1.0 / 3, 1e-12);
  for (double target : {0.1, 0.2, 0.3}) {
    const MaskChoice c = builder.build(lines.data(), all.data(), 0, target, mask.data());
    EXPECT_EQ(c.k, 0);
    EXPECT_TRUE(subset(mask, frames));
    EXPECT_NEAR(c.density, target, 0.5 / (n * n) + 1e-12);
    // Distance d is taken only once distance d - 1 is whole.
    int whole_below = n;
    for (int d = 1; d < n; ++d) {
      int live = 0, in_frames = 0;
      for (int i = 0; i < n; ++i)
        for (int j : {i - d, i + d})
          if (j >= 0 && j < n && frames[i * n + j]) {
            ++in_frames;
            live += mask[i * n + j];
          }
      if (live > 0) {
        EXPECT_LT(d - 1, whole_below) << target;
      }
      if (live < in_frames && whole_below == n) whole_below = d;
    }
  }
}

TEST(VideoMask, TooLargeTopKIsAnErrorNamingTopK) {
  const TokenLayout t = layout(4, 64, 0, TextPosition::None);
  const BlockGrid g = make_block_grid(t, 64);
  const PatternBasis b = make_pattern_basis(g, t);
  VideoMaskBuilder builder(b, video_block_lengths(g));
  std::vector<double> lines(static_cast<size_t>(b.num_lines()), 0.1);
  std::vector<uint8_t> keep(4, 0), mask(16);
  EXPECT_NO_THROW(builder.build(lines.data(), keep.data(), 11, 0.5, mask.data()));
  try {
    builder.build(lines.data(), keep.data(), 12, 0.5, mask.data());
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("top_k"), std::string::npos) << e.what();
  }
}

TEST(VideoMask, LayoutRowsEqualPlaceVideoMask) {
  std::mt19937 rng(23);
  for (TextPosition pos : {TextPosition::None, TextPosition::Before, TextPosition::After}) {
    const TokenLayout t = layout(3, 90, pos == TextPosition::None ? 0 : 100, pos);
    const BlockGrid g = make_block_grid(t, 64);
    const int n = g.num_video_blocks, nb = g.num_blocks();
    BlockMask ref(2, 3, nb, nb);
    BlockLayout got;
    got.batch = 2;
    got.heads = 3;
    got.num_q_blocks = got.num_k_blocks = nb;
    std::vector<std::vector<uint8_t>> masks;
    for (int bi = 0; bi < 2; ++bi)
      for (int h = 0; h < 3; ++h) {
        std::vector<uint8_t> vm(static_cast<size_t>(n) * n);
        for (auto& x : vm) x = rng() % 3 == 0;
        for (int i = 0; i < n; ++i) vm[i * n + i] = 1;  // the layout keeps the diagonal
        masks.push_back(vm);
        place_video_mask(vm.data(), g, ref, bi, h);
        append_layout_rows(vm.data(), g, got);
      }
    got.validate();
    const BlockLayout want = to_layout(ref);
    EXPECT_EQ(got.row_ptr, want.row_ptr);
    EXPECT_EQ(got.col_idx, want.col_idx);
    // The layout's density is the mean of its masks' (two ways of one function).
    double mean = 0;
    for (int bi = 0; bi < 2; ++bi)
      for (int h = 0; h < 3; ++h) mean += video_mask_density(masks[bi * 3 + h].data(), g) / 6;
    const double d = video_density(got, g);
    EXPECT_NEAR(d, mean, 1e-12 * d);
    EXPECT_LT(d, 1.0);
  }
}

TEST(Prediction, LinearExtrapolationThroughTheTwoReferences) {
  std::mt19937 rng(24);
  std::uniform_real_distribution<double> u(-2, 2);
  std::vector<double> xa(9), xb(9), out(9);
  for (auto& x : xa) x = u(rng);
  for (auto& x : xb) x = u(rng);
  // At the references the prediction is the reference itself.
  predict_linear(xa.data(), 10, xb.data(), 11, 11, 9, out.data());
  for (int i = 0; i < 9; ++i) EXPECT_DOUBLE_EQ(out[i], xb[i]);
  predict_linear(xa.data(), 10, xb.data(), 11, 10, 9, out.data());
  for (int i = 0; i < 9; ++i) EXPECT_NEAR(out[i], xa[i], 1e-12);
  // x(t) = x_b + (x_b - x_a)(t - t_b)/(t_b - t_a)
  predict_linear(xa.data(), 11, xb.data(), 22, 29, 9, out.data());
  for (int i = 0; i < 9; ++i)
    EXPECT_NEAR(out[i], xb[i] + (xb[i] - xa[i]) * 7.0 / 11.0, 1e-12 * (1 + std::abs(out[i])));
  EXPECT_THROW(predict_linear(xa.data(), 5, xb.data(), 5, 6, 9, out.data()), Error);
}
