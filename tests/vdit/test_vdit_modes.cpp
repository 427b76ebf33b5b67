// Each mode's layout against a brute-force token-level construction.
#include <gtest/gtest.h>

#include <cstdlib>
#include <random>

#include "moddit/error.hpp"
#include "moddit/sparse_vdit.hpp"
#include "vdit/geometry.hpp"
#include "vdit_test_util.hpp"

using namespace moddit;
using vdit_test::brute_force_mask;

namespace {

BlockMask layout_mask(const VditHeadChoice& c, const TokenLayout& t, const BlockGrid& g) {
  return to_mask(vdit_group_layout({&c}, 1, t, g));
}

void expect_same(const BlockMask& a, const BlockMask& b, const std::string& what) {
  ASSERT_EQ(a.bits.size(), b.bits.size()) << what;
  for (int qb = 0; qb < a.num_q_blocks; ++qb)
    for (int kb = 0; kb < a.num_k_blocks; ++kb)
      ASSERT_EQ(int(a.at(0, 0, qb, kb)), int(b.at(0, 0, qb, kb)))
          << what << ": block (" << qb << ", " << kb << ")";
}

}  // namespace

TEST(VditModes, MultiDiagonalMatchesTokenLevelConstruction) {
  for (const TokenLayout& t : vdit_test::small_layouts())
    for (int bs : {64, 128}) {
      const BlockGrid g = make_block_grid(t, bs);
      const int64_t P = t.tokens_per_frame();
      for (int w : {0, 1, 3, 9, 40}) {
        VditHeadChoice c{VditMode::MultiDiagonal, w, {}};
        const BlockMask ref = brute_force_mask(t, g, [&](int64_t i, int64_t j) {
          return std::llabs(i % P - j % P) <= w;
        });
        expect_same(layout_mask(c, t, g), ref,
                    t.describe() + " bs " + std::to_string(bs) + " w " + std::to_string(w));
      }
    }
}

TEST(VditModes, DiagonalMatchesTokenLevelConstruction) {
  for (const TokenLayout& t : vdit_test::small_layouts()) {
    const BlockGrid g = make_block_grid(t, 64);
    // Token-level: the video-relative block index of a token, counted by hand.
    auto vblock = [&](int64_t i) { return i / 64; };
    for (int w : {0, 1, 2, 10}) {
      VditHeadChoice c{VditMode::Diagonal, w, {}};
      const BlockMask ref = brute_force_mask(
          t, g, [&](int64_t i, int64_t j) { return std::llabs(vblock(i) - vblock(j)) <= w; });
      expect_same(layout_mask(c, t, g), ref, t.describe() + " w " + std::to_string(w));
    }
  }
}

TEST(VditModes, VerticalStripeMatchesTokenLevelConstruction) {
  std::mt19937 rng(7);
  for (const TokenLayout& t : vdit_test::small_layouts()) {
    const BlockGrid g = make_block_grid(t, 64);
    const int n = g.num_video_blocks;
    VditHeadChoice c{VditMode::VerticalStripe, 0, {}};
    for (int b = 0; b < n; ++b)
      if (rng() % 3 == 0) c.stripes.push_back(b);
    const BlockMask ref = brute_force_mask(t, g, [&](int64_t, int64_t j) {
      return std::find(c.stripes.begin(), c.stripes.end(), int32_t(j / 64)) != c.stripes.end();
    });
    expect_same(layout_mask(c, t, g), ref, t.describe());
  }
}

TEST(VditModes, FullIsDenseAndSkipHasNoLayout) {
  const TokenLayout t = vdit_test::small_layouts()[1];
  const BlockGrid g = make_block_grid(t, 64);
  VditHeadChoice full;
  const BlockMask m = layout_mask(full, t, g);
  for (uint8_t b : m.bits) EXPECT_EQ(b, 1);
  EXPECT_DOUBLE_EQ(vdit_density(full, t, g), 1.0);
  VditHeadChoice skip{VditMode::Skip, 0, {}};
  EXPECT_DOUBLE_EQ(vdit_density(skip, t, g), 0.0);
  EXPECT_THROW(vdit_group_layout({&skip}, 1, t, g), Error);
}

TEST(VditModes, DensityAgreesWithTheLayoutDensity) {
  for (const TokenLayout& t : vdit_test::small_layouts()) {
    const BlockGrid g = make_block_grid(t, 64);
    const std::vector<VditHeadChoice> cs = {{VditMode::Diagonal, 1, {}},
                                            {VditMode::MultiDiagonal, 2, {}},
                                            {VditMode::VerticalStripe, 0, {0}}};
    std::vector<const VditHeadChoice*> ptrs;
    for (const auto& c : cs) ptrs.push_back(&c);
    const BlockLayout l = vdit_group_layout(ptrs, 2, t, g);  // batch 2, 3 heads
    l.validate();
    double mean = 0;
    for (const auto& c : cs) {
      const double d = vdit_density(c, t, g);
      EXPECT_GT(d, 0.0);
      EXPECT_LE(d, 1.0);
      mean += d / cs.size();
    }
    EXPECT_NEAR(video_density(l, g), mean, 1e-12 * (1 + mean));
  }
}

TEST(VditModes, RejectsBadParameters) {
  const TokenLayout t = vdit_test::small_layouts()[0];
  const BlockGrid g = make_block_grid(t, 64);
  EXPECT_THROW(vdit_video_mask({VditMode::Diagonal, -1, {}}, t, g), Error);
  EXPECT_THROW(vdit_video_mask({VditMode::VerticalStripe, 0, {g.num_video_blocks}}, t, g), Error);
  EXPECT_THROW(vdit_mode_from_string("diagonals"), Error);
  for (int m = 0; m < kNumVditModes; ++m)
    EXPECT_EQ(int(vdit_mode_from_string(to_string(VditMode(m)))), m);
}

TEST(Geometry, TileWindowMatchesTokenLevelConstruction) {
  for (const TokenLayout& t : vdit_test::small_layouts()) {
    const BlockGrid g = make_block_grid(t, 64);
    const int64_t P = t.tokens_per_frame(), W = t.width;
    for (auto [rf, ry, rx] : {std::tuple<int, int, int>{0, 0, 0}, {1, 1, 2}, {0, 3, 1}, {2, 0, 5}}) {
      const auto video = geometry::tile_window_mask(t, g, rf, ry, rx);
      BlockMask got(1, 1, g.num_blocks(), g.num_blocks());
      place_video_mask(video.data(), g, got, 0, 0);
      const BlockMask ref = brute_force_mask(t, g, [&](int64_t i, int64_t j) {
        return std::llabs(i / P - j / P) <= rf && std::llabs(i % P / W - j % P / W) <= ry &&
               std::llabs(i % W - j % W) <= rx;
      });
      expect_same(got, ref, t.describe() + " tile");
    }
  }
}

TEST(Geometry, FrameWindowMatchesTokenLevelConstruction) {
  for (const TokenLayout& t : vdit_test::small_layouts()) {
    const BlockGrid g = make_block_grid(t, 64);
    const int64_t P = t.tokens_per_frame();
    for (auto [rf, rs] : {std::pair<int, int>{0, 0}, {0, 7}, {1, 3}, {2, 50}}) {
      const auto video = geometry::frame_window_mask(t, g, rf, rs);
      BlockMask got(1, 1, g.num_blocks(), g.num_blocks());
      place_video_mask(video.data(), g, got, 0, 0);
      const BlockMask ref = brute_force_mask(t, g, [&](int64_t i, int64_t j) {
        return std::llabs(i / P - j / P) <= rf && std::llabs(i % P - j % P) <= rs;
      });
      expect_same(got, ref, t.describe() + " frame window");
    }
  }
}
