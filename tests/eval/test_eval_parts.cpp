// Pieces of the evaluation: the dense block statistics against a naive double
// computation, masks extracted from plans (head groups, skipped heads), progress.
#include <gtest/gtest.h>

#include "core/video_mask.hpp"

#include <cmath>

#include "eval/baselines.hpp"
#include "eval/dense_stats.hpp"
#include "eval/metrics.hpp"
#include "eval_test_util.hpp"
#include "moddit/backend.hpp"
#include "moddit/eval.hpp"

namespace moddit {
namespace {

TEST(DenseStats, MassAndSparsityCountsMatchNaive) {
  TokenLayout t;
  t.frames = 2;
  t.height = 7;
  t.width = 11;  // 154 video tokens: blocks of 64, 64, 26
  t.text_tokens = 20;
  t.text_valid = 13;
  t.text_position = TextPosition::After;
  test::RandomTrajectory traj(t, 1, 1, 2, 2, 64, 77u);
  HostTensor q, k, v;
  traj.load(0, 0, q, k, v);
  const BlockGrid grid = make_block_grid(t, 64);
  const int64_t N = t.total_tokens(), V = t.video_tokens(), H = 2, D = 64;
  // The LSE from the CPU backend, as the runner does.
  auto backend = make_cpu_backend(1);
  HostTensor out(DType::F32, 2, N, H, D);
  std::vector<float> lse(static_cast<size_t>(2 * H * N));
  AttentionCall call;
  call.q = q.view();
  call.k = k.view();
  call.v = v.view();
  call.out = out.view();
  call.tokens = &t;
  call.block_size = 64;
  call.lse = lse.data();
  backend->attention(call);
  const float eta = 1e-3f;
  eval::DenseBlockStats stats;
  eval::compute_dense_block_stats(q, k, lse.data(), t, grid, 0.f, eta, 2, stats);
  const int n = grid.num_video_blocks;
  ASSERT_EQ(n, 3);
  for (int b = 0; b < 2; ++b)
    for (int h = 0; h < 2; ++h) {
      std::vector<double> mass(9, 0.0), other(3, 0.0);
      std::vector<int> below(9, 0);
      auto qk = [&](int64_t qt, int64_t kt) {
        double s = 0;
        for (int64_t d = 0; d < D; ++d)
          s += double(q.f32()[((b * N + qt) * H + h) * D + d]) * k.f32()[((b * N + kt) * H + h) * D + d];
        return s / std::sqrt(double(D));
      };
      for (int64_t qi = 0; qi < V; ++qi) {
        double mx = -1e300, z = 0;
        for (int64_t kt = 0; kt < N; ++kt)
          if (kt < t.pad_begin() || kt >= t.pad_end()) mx = std::max(mx, qk(qi, kt));
        for (int64_t kt = 0; kt < N; ++kt)
          if (kt < t.pad_begin() || kt >= t.pad_end()) z += std::exp(qk(qi, kt) - mx);
        for (int64_t kt = 0; kt < N; ++kt) {
          if (!(kt < t.pad_begin() || kt >= t.pad_end())) continue;
          const double p = std::exp(qk(qi, kt) - mx) / z;
          if (kt >= V) {
            other[qi / 64] += p;
            continue;
          }
          mass[(qi / 64) * 3 + kt / 64] += p;
          below[(qi / 64) * 3 + kt / 64] += p < eta ? 1 : 0;
        }
      }
      for (int e = 0; e < 9; ++e) {
        EXPECT_NEAR(stats.mass_of(b, h)[e], mass[e], 1e-4 * mass[e] + 1e-9) << e;
        // P is compared with eta in fp32: a pair right at the threshold may flip.
        EXPECT_NEAR(stats.below_eta_of(b, h)[e], below[e], 2) << e;
      }
      for (int i = 0; i < 3; ++i)
        EXPECT_NEAR(stats.other_mass_of(b, h)[i], other[i], 1e-4 * other[i] + 1e-5) << i;
    }
}

TEST(PlanMasks, HeadGroupsAndSkippedHeads) {
  TokenLayout t;
  t.frames = 2;
  t.height = 8;
  t.width = 8;
  const BlockGrid grid = make_block_grid(t, 64);  // n = 2
  const int n = 2;
  Plan p;
  HeadGroup dense;
  dense.heads = {2};
  p.groups.push_back(dense);
  HeadGroup sparse;
  sparse.heads = {0, 3};
  std::vector<uint8_t> masks(static_cast<size_t>(1 * 2 * n * n), 0);
  masks[1] = 1;  // head index 0 of the group: block (0, 1) live
  sparse.layout = core::layout_from_video_masks(masks, grid, 1, 2);
  p.groups.push_back(sparse);
  const auto m = eval::video_masks_of_plan(p, grid, 1, 4);
  auto head = [&](int h) { return m.data() + h * n * n; };
  EXPECT_EQ(std::vector<uint8_t>(head(0), head(0) + 4), (std::vector<uint8_t>{1, 1, 0, 1}));
  EXPECT_EQ(std::vector<uint8_t>(head(1), head(1) + 4), (std::vector<uint8_t>{0, 0, 0, 0}));  // skipped
  EXPECT_EQ(std::vector<uint8_t>(head(2), head(2) + 4), (std::vector<uint8_t>{1, 1, 1, 1}));  // dense
  EXPECT_EQ(std::vector<uint8_t>(head(3), head(3) + 4), (std::vector<uint8_t>{1, 0, 0, 1}));
  EXPECT_DOUBLE_EQ(video_mask_density(head(1), grid), 0.0);
  EXPECT_DOUBLE_EQ(video_mask_density(head(0), grid), 0.75);
}

TEST(EvalRun, ProgressCoversEveryCall) {
  TokenLayout t;
  t.frames = 2;
  t.height = 8;
  t.width = 8;
  test::RandomTrajectory traj(t, 6, 2, 1, 1, 64, 1u);
  EvalSettings s;
  s.config.block_size = 64;
  s.config.warmup_steps = 3;
  s.policies = parse_policy_list("dense,window", s.config, 0.5);
  std::vector<std::pair<int, int>> seen;
  const EvalResult r = run_evaluation(traj, s, [&](int d, int total) { seen.push_back({d, total}); });
  ASSERT_EQ(seen.size(), 1u + 5 * 2);  // steps 1..5 x 2 layers, plus the initial 0
  EXPECT_EQ(seen.front(), std::make_pair(0, 10));
  EXPECT_EQ(seen.back(), std::make_pair(10, 10));
  EXPECT_EQ(r.steps, (std::vector<int>{1, 2, 3, 4, 5}));
}

}  // namespace
}  // namespace moddit
