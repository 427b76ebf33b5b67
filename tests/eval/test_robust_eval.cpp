// Caches in the evaluation's baselines are keyed by everything their result
// depends on (issue 13): a static mask planned for one token layout is not reused
// for another layout that happens to have as many video blocks.
#include <gtest/gtest.h>

#include "eval/baselines.hpp"
#include "moddit/block_layout.hpp"

using namespace moddit;

namespace {

TokenLayout video(int64_t f, int64_t h, int64_t w) {
  TokenLayout t;
  t.frames = f;
  t.height = h;
  t.width = w;
  return t;
}

Plan plan_for(eval::StaticMaskPolicy& p, const TokenLayout& t) {
  const BlockGrid g = make_block_grid(t, 64);
  CallInfo c;
  c.step = 5;
  c.num_steps = 10;
  c.batch = 1;
  c.num_heads = 1;
  c.head_dim = 16;
  c.tokens = &t;
  c.grid = &g;
  return p.plan(c);
}

TEST(RobustEval, StaticMaskIsNotReusedForAnotherLayoutOfTheSameBlockCount) {
  // Both 1024 video tokens (16 blocks of 64), with other frame shapes.
  const TokenLayout a = video(2, 16, 32), b = video(16, 8, 8);
  ASSERT_EQ(make_block_grid(a, 64).num_video_blocks, make_block_grid(b, 64).num_video_blocks);
  for (auto kind : {core::StaticMaskKind::Window, core::StaticMaskKind::Radial}) {
    eval::StaticMaskPolicy reused(kind, 0.3, 2), fresh(kind, 0.3, 2);
    const Plan pa = plan_for(reused, a);
    const Plan pr = plan_for(reused, b), pf = plan_for(fresh, b);
    ASSERT_TRUE(pr.groups[0].layout && pf.groups[0].layout);
    EXPECT_EQ(pr.groups[0].layout->col_idx, pf.groups[0].layout->col_idx);
    EXPECT_EQ(pr.groups[0].layout->row_ptr, pf.groups[0].layout->row_ptr);
    // The two layouts do need different masks (else this test would show nothing).
    EXPECT_NE(pa.groups[0].layout->col_idx, pf.groups[0].layout->col_idx);
  }
}

}  // namespace
