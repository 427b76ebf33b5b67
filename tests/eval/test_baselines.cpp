// Baseline policies: densities at the target, the diagonal kept, the oracle's
// optimality (brute force) and that no policy beats it at equal density.
#include <gtest/gtest.h>

#include <random>

#include "eval/baselines.hpp"
#include "eval/metrics.hpp"
#include "core/static_masks.hpp"
#include "eval_test_util.hpp"
#include "moddit/error.hpp"
#include "moddit/eval.hpp"

namespace moddit {
namespace {

TokenLayout video_layout(int frames, int h, int w) {
  TokenLayout t;
  t.frames = frames;
  t.height = h;
  t.width = w;
  return t;
}

// Largest share of the video x video pairs a single block pair holds.
double max_block_share(const BlockGrid& grid) {
  const double V = grid.video_block_end(grid.num_video_blocks - 1);
  double m = 0;
  for (int i = 0; i < grid.num_video_blocks; ++i)
    m = std::max(m, double(grid.video_block_end(i) - grid.video_block_begin(i)));
  return m * m / (V * V);
}

TEST(StaticMasks, DensityIsTheTargetWithinHalfABlockAndKeepsDiagonal) {
  for (const TokenLayout& t : {video_layout(6, 16, 16), video_layout(5, 9, 13), video_layout(13, 4, 30)})
    for (int bs : {64, 128})
      for (double target : {0.05, 0.15, 0.3, 0.7, 1.0})
        for (auto kind : {core::StaticMaskKind::Window, core::StaticMaskKind::Radial}) {
          const BlockGrid grid = make_block_grid(t, bs);
          const auto m = core::static_video_mask(kind, t, grid, target);
          const int n = grid.num_video_blocks;
          for (int i = 0; i < n; ++i) ASSERT_TRUE(m[i * n + i]);
          const double d = video_mask_density(m.data(), grid);
          const double diag_only = [&] {
            std::vector<uint8_t> dm(m.size(), 0);
            for (int i = 0; i < n; ++i) dm[i * n + i] = 1;
            return video_mask_density(dm.data(), grid);
          }();
          EXPECT_GE(d, diag_only - 1e-12) << t.describe() << " bs " << bs;
          if (target > diag_only) {
            EXPECT_NEAR(d, target, 0.5 * max_block_share(grid) + 1e-12) << t.describe() << " bs " << bs;
          }
        }
}

TEST(StaticMasks, RadialFollowsTheEnergyDecayAndDiffersFromTheWindow) {
  // The demo's geometry: 8 frames of 24 x 32 tokens, 6 blocks of 128 per frame.
  const TokenLayout t = video_layout(8, 24, 32);
  const BlockGrid grid = make_block_grid(t, 128);
  const int n = grid.num_video_blocks, per_frame = 6;
  ASSERT_EQ(n, 48);
  for (double target : {0.10, 0.15, 0.20, 0.30}) {
    const auto w = core::static_video_mask(core::StaticMaskKind::Window, t, grid, target);
    const auto r = core::static_video_mask(core::StaticMaskKind::Radial, t, grid, target);
    EXPECT_NE(w, r) << target;
    EXPECT_NEAR(video_mask_density(r.data(), grid), target, 0.5 / (n * n) + 1e-12);
    // Energy decay: the live blocks per frame pair never grow with the band of
    // the frame distance (0, 1, 2-3, 4-7), and the same spatial block is live
    // at every distance before any other block of the farthest band.
    std::vector<double> per_band(4, 0.0), pairs(4, 0.0);
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < n; ++j) {
        const int df = std::abs(i / per_frame - j / per_frame);
        const int band = df == 0 ? 0 : df == 1 ? 1 : df < 4 ? 2 : 3;
        per_band[band] += r[i * n + j];
        pairs[band] += 1;
      }
    for (int b = 1; b < 4; ++b) EXPECT_LE(per_band[b] / pairs[b], per_band[b - 1] / pairs[b - 1] + 1e-12) << target;
  }
}

TEST(StaticMasks, WindowPrefersNearBlocks) {
  // 8 frames of one block each: the window at 3/8 density is the tridiagonal band.
  const TokenLayout t = video_layout(8, 8, 16);  // 128 tokens per frame
  const BlockGrid grid = make_block_grid(t, 128);
  const auto m = core::static_video_mask(core::StaticMaskKind::Window, t, grid, (8 + 14) / 64.0);
  for (int i = 0; i < 8; ++i)
    for (int j = 0; j < 8; ++j) EXPECT_EQ(m[i * 8 + j], std::abs(i - j) <= 1 ? 1 : 0) << i << "," << j;
}

TEST(Oracle, KeepsMostMassOfAnyMaskWithTheDiagonal) {
  // Brute force over every mask of a 3 x 3 grid (equal blocks) with the diagonal.
  const TokenLayout t = video_layout(3, 8, 8);  // 64 tokens per frame, 3 blocks of 64
  const BlockGrid grid = make_block_grid(t, 64);
  ASSERT_EQ(grid.num_video_blocks, 3);
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<double> mass(9), other(3, 0.0);
    for (double& x : mass) x = u(rng) * u(rng);
    for (int extra = 0; extra <= 6; ++extra) {
      const double target = (3 + extra) / 9.0;
      const auto om = eval::oracle_video_mask(mass.data(), grid, target);
      EXPECT_NEAR(video_mask_density(om.data(), grid), target, 1e-12);
      const double best = eval::kept_mass(om.data(), mass.data(), other.data(), 3);
      for (int bits = 0; bits < 64; ++bits) {
        if (__builtin_popcount(bits) != extra) continue;
        std::vector<uint8_t> m(9, 0);
        int b = 0;
        for (int e = 0; e < 9; ++e) {
          if (e % 4 == 0) m[e] = 1;  // diagonal
          else m[e] = (bits >> b++) & 1;
        }
        EXPECT_LE(eval::kept_mass(m.data(), mass.data(), other.data(), 3), best + 1e-12);
      }
    }
  }
}

TEST(Oracle, RecallAtLeastEveryPolicyAtEqualDensitySlow) {
  const TokenLayout t = video_layout(4, 8, 16);  // 512 video tokens, 8 blocks of 64
  test::RandomTrajectory traj(t, 8, 2, 1, 4, 64, 5u);
  EvalSettings s;
  s.config.block_size = 64;
  s.config.warmup_steps = 4;
  s.config.interval = 2;
  s.target_density = 0.25;
  s.config.target_density = 0.25;
  s.policies = parse_policy_list("oracle,window,radial,moddit", s.config, 0.25);
  s.threads = 2;
  const EvalResult r = run_evaluation(traj, s);
  const PolicyResult& oracle = r.policies[0];
  for (size_t p = 1; p < r.policies.size(); ++p) {
    const PolicyResult& other = r.policies[p];
    ASSERT_EQ(other.calls.size(), oracle.calls.size());
    for (size_t c = 0; c < other.calls.size(); ++c) {
      if (other.calls[c].step < r.sparse_from_step) continue;
      for (int h = 0; h < 4; ++h) {
        const HeadMetrics& o = oracle.calls[c].heads[h];
        const HeadMetrics& x = other.calls[c].heads[h];
        if (other.kind == "moddit") {
          // MOD-DiT's density differs: compare with the oracle at its own density.
          EXPECT_GE(other.calls[c].oracle_recall_same_density[h], x.recall - 1e-12);
        } else {
          ASSERT_NEAR(o.density, x.density, 1e-12) << other.label;
          EXPECT_GE(o.recall, x.recall - 1e-12) << other.label << " call " << c << " head " << h;
        }
      }
    }
    EXPECT_GE(oracle.recall + 1e-12, other.kind == "moddit" ? 0.0 : other.recall);
  }
  // Every policy at the target, MOD-DiT included (within half a block of 64 x 64
  // out of 512 x 512).
  for (const PolicyResult& p : r.policies) EXPECT_NEAR(p.density, 0.25, 0.5 / 64 + 1e-12) << p.label;
}

TEST(Baselines, DenseBeforeWarmupAndLayoutsKeepTextAndDiagonal) {
  TokenLayout t = video_layout(3, 8, 10);
  t.text_tokens = 37;
  t.text_valid = 30;
  t.text_position = TextPosition::After;
  const BlockGrid grid = make_block_grid(t, 64);
  CallInfo call;
  call.num_steps = 10;
  call.batch = 2;
  call.num_heads = 3;
  call.head_dim = 64;
  call.tokens = &t;
  call.grid = &grid;
  eval::StaticMaskPolicy radial(core::StaticMaskKind::Radial, 0.2, 5);
  call.step = 4;
  Plan p = radial.plan(call);
  ASSERT_EQ(p.groups.size(), 1u);
  EXPECT_FALSE(p.groups[0].layout.has_value());  // dense in the warm-up
  call.step = 5;
  p = radial.plan(call);
  ASSERT_TRUE(p.groups[0].layout.has_value());
  const BlockLayout& l = *p.groups[0].layout;
  l.validate();
  const BlockMask m = to_mask(l);
  const int nb = grid.num_blocks();
  for (int b = 0; b < 2; ++b)
    for (int h = 0; h < 3; ++h)
      for (int qb = 0; qb < nb; ++qb) {
        EXPECT_TRUE(m.at(b, h, qb, qb));
        for (int kb = 0; kb < nb; ++kb) {
          if (!grid.is_video(qb) || !grid.is_video(kb)) {
            EXPECT_TRUE(m.at(b, h, qb, kb));
          }
        }
      }

  eval::OraclePolicy oracle(0.2, 5);
  EXPECT_THROW(oracle.plan(call), Error);  // no dense stats for this call
  eval::DenseBlockStats stats;
  stats.batch = 2;
  stats.heads = 3;
  stats.n = grid.num_video_blocks;
  stats.step = 5;
  stats.layer = 0;
  stats.mass.assign(static_cast<size_t>(2 * 3 * stats.n * stats.n), 1.0);
  stats.other_mass.assign(static_cast<size_t>(2 * 3 * stats.n), 0.0);
  oracle.set_dense_stats(&stats);
  EXPECT_NO_THROW(oracle.plan(call));
  call.step = 6;
  EXPECT_THROW(oracle.plan(call), Error);  // stale
}

}  // namespace
}  // namespace moddit
