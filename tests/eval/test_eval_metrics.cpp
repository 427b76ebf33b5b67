// The runner's recall, rel_l2 and density against naive double-precision
// recomputations from Q/K/V and the masks each policy ran.
#include <gtest/gtest.h>

#include <cmath>

#include "eval_test_util.hpp"
#include "moddit/eval.hpp"

namespace moddit {
namespace {

TokenLayout text_before_layout() {
  TokenLayout t;
  t.frames = 3;
  t.height = 8;
  t.width = 10;  // 80 tokens per frame: frames do not align with 64-token blocks
  t.text_tokens = 37;  // partial text block
  t.text_valid = 30;   // 7 padded keys
  t.text_position = TextPosition::Before;
  return t;
}

EvalSettings small_settings(const std::string& policies, double density) {
  EvalSettings s;
  s.config.block_size = 64;
  s.config.warmup_steps = 4;
  s.config.interval = 2;
  s.policies = parse_policy_list(policies, s.config, density);
  s.target_density = density;
  s.config.target_density = density;
  s.keep_masks = true;
  s.threads = 2;
  return s;
}

TEST(EvalMetrics, RecallRelL2DensityMatchNaiveDoubleSlow) {
  const TokenLayout tokens = text_before_layout();
  test::RandomTrajectory traj(tokens, /*steps=*/7, /*layers=*/1, /*batch=*/2, /*heads=*/2,
                              /*dim=*/64, 1234u);
  const EvalSettings settings = small_settings("dense,moddit,oracle,window,radial", 0.4);
  const EvalResult r = run_evaluation(traj, settings);
  const BlockGrid grid = make_block_grid(tokens, 64);
  const int n = grid.num_video_blocks;
  ASSERT_EQ(r.num_video_blocks, n);
  ASSERT_EQ(r.steps.front(), 2);  // warmup - 2
  const int64_t V = tokens.video_tokens();

  int checked = 0;
  for (const PolicyResult& p : r.policies) {
    for (const CallMetrics& c : p.calls) {
      if (c.step != 2 && c.step != 4 && c.step != 6) continue;  // record, sparse, refresh
      HostTensor q, k, v;
      traj.load(c.step, c.layer, q, k, v);
      for (int h = 0; h < 2; ++h) {
        double kept = 0, err2 = 0, ref2 = 0, live_pairs = 0;
        for (int b = 0; b < 2; ++b) {
          const uint8_t* m = c.video_masks.data() + (static_cast<size_t>(b) * 2 + h) * n * n;
          for (int i = 0; i < n; ++i) EXPECT_TRUE(m[i * n + i]) << p.label << " diagonal";
          for (int i = 0; i < n; ++i)
            for (int j = 0; j < n; ++j)
              if (m[i * n + j])
                live_pairs += double(grid.video_block_end(i) - grid.video_block_begin(i)) *
                              double(grid.video_block_end(j) - grid.video_block_begin(j));
          const auto dense = test::naive_video_rows(q, k, v, tokens, grid, b, h, nullptr);
          const auto sparse = test::naive_video_rows(q, k, v, tokens, grid, b, h, m);
          for (double x : sparse.kept) kept += x;
          for (size_t e = 0; e < dense.out.size(); ++e) {
            err2 += (sparse.out[e] - dense.out[e]) * (sparse.out[e] - dense.out[e]);
            ref2 += dense.out[e] * dense.out[e];
          }
        }
        const double recall = kept / (2.0 * V);
        const double rel_l2 = std::sqrt(err2 / ref2);
        const double density = live_pairs / (2.0 * V * V);
        const HeadMetrics& hm = c.heads[h];
        EXPECT_NEAR(hm.recall, recall, 1e-4 * recall) << p.label << " step " << c.step;
        EXPECT_NEAR(hm.density, density, 1e-12) << p.label << " step " << c.step;
        // fp32 backend against double: a small absolute floor for the dense rows.
        EXPECT_NEAR(hm.rel_l2, rel_l2, 2e-3 * rel_l2 + 2e-5) << p.label << " step " << c.step;
        ++checked;
      }
    }
  }
  EXPECT_EQ(checked, 5 * 3 * 2);
}

TEST(EvalMetrics, AggregatesAreMeansOfThePerCallValues) {
  const TokenLayout tokens = text_before_layout();
  test::RandomTrajectory traj(tokens, 8, 2, 1, 3, 64, 99u);
  const EvalResult r = run_evaluation(traj, small_settings("moddit,oracle", 0.3));
  for (const PolicyResult& p : r.policies) {
    double sum = 0;
    int count = 0;
    for (const CallMetrics& c : p.calls)
      if (c.step >= r.sparse_from_step)
        for (const HeadMetrics& h : c.heads) {
          sum += h.recall;
          ++count;
        }
    ASSERT_GT(count, 0);
    EXPECT_NEAR(p.recall, sum / count, 1e-12);
    EXPECT_EQ(p.per_step.steps.size(), r.steps.size());
    EXPECT_EQ(p.sparse_calls, 4 * 2);  // steps 4..7, 2 layers
    // Before the warm-up every policy is dense.
    for (const CallMetrics& c : p.calls)
      if (c.step < r.sparse_from_step) {
        for (const HeadMetrics& h : c.heads) EXPECT_DOUBLE_EQ(h.density, 1.0);
      }
  }
  const PolicyResult& m = r.policies[0];
  ASSERT_EQ(m.kind, "moddit");
  EXPECT_FALSE(m.fits.empty());
  EXPECT_GE(m.nae, 0.0);
  // Steps with a fit have an NAE, others none.
  for (size_t i = 0; i < m.per_step.steps.size(); ++i) {
    const int s = m.per_step.steps[i];
    const bool fit = s == 2 || s == 3 || s == 6;
    EXPECT_EQ(std::isfinite(m.per_step.nae[i]), fit) << "step " << s;
  }
}

}  // namespace
}  // namespace moddit
