// The offline search: loss terms, the decision rule at the extremes, stripes.
#include <gtest/gtest.h>

#include <cmath>

#include "moddit/backend.hpp"
#include "moddit/error.hpp"
#include "moddit/sparse_vdit.hpp"
#include "vdit/candidate_runner.hpp"
#include "vdit_test_util.hpp"

using namespace moddit;

namespace {

struct Fixture {
  TokenLayout tokens = vdit_test::layout(3, 12, 16, 40, 30, TextPosition::Before);  // P = 192
  vdit_test::RandomTrajectory traj{tokens, 2, 2, 4, 16, 2, 11, /*sink=*/40 + 100};
  std::shared_ptr<Backend> cpu = make_cpu_backend(2);
  VditSearchOptions options() const {
    VditSearchOptions o;
    o.block_size = 64;
    o.diagonal_windows = {0, 1};
    o.multi_diagonal_windows = {0, 12};
    o.stripe_counts = {1, 2};
    o.stripe_sample_rows = 64;
    return o;
  }
};

}  // namespace

TEST(VditSearch, LossTermsAreNormalisedPerLayer) {
  Fixture f;
  const VditLossTable t = measure_vdit_candidates({&f.traj}, *f.cpu, f.options());
  ASSERT_EQ(t.steps.size(), 2u);
  ASSERT_EQ(t.scored[0].size(), 2u);
  const int n = make_block_grid(f.tokens, 64).num_video_blocks;
  for (const auto& step : t.scored)
    for (const auto& layer : step) {
      ASSERT_EQ(layer.size(), 4u);
      double skip_sum = 0;
      for (const auto& head : layer) {
        ASSERT_EQ(head.size(), 1u + 2 + 2 + 2);  // skip + 2 diagonal + 2 multi-diagonal + 2 stripe
        EXPECT_EQ(head[0].choice.mode, VditMode::Skip);
        EXPECT_EQ(head[0].density, 0.0);
        skip_sum += head[0].nmse;
        for (const VditScored& s : head) {
          EXPECT_GE(s.nmse, 0.0);
          EXPECT_TRUE(std::isfinite(s.nmse));
          if (s.choice.mode != VditMode::Skip) {
            EXPECT_GT(s.density, 0.0);
          }
          if (s.choice.mode == VditMode::VerticalStripe) {
            EXPECT_GE(s.choice.stripes.size(), 1u);
            EXPECT_LE(s.choice.stripes.size(), 2u);
            for (int32_t b : s.choice.stripes) EXPECT_LT(b, n);
          }
        }
        // A wider diagonal window computes more and errs less.
        EXPECT_LT(head[1].density, head[2].density);
        EXPECT_GE(head[1].nmse, head[2].nmse);
      }
      // Skipping every head loses the whole layer output: mean skip nMSE is 1.
      EXPECT_NEAR(skip_sum / 4, 1.0, 1e-9);
    }
}

TEST(VditSearch, PicksFullWhenEpsIsTinyAndTheSparsestWhenHuge) {
  Fixture f;
  const VditLossTable t = measure_vdit_candidates({&f.traj}, *f.cpu, f.options());
  auto modes_of = [](const VditConfig& c) {
    std::vector<VditMode> m;
    for (const auto& s : c.choices)
      for (const auto& l : s)
        for (const auto& h : l) m.push_back(h.mode);
    return m;
  };
  for (VditMode m : modes_of(decide_vdit(t, 0.5, 1e-9))) EXPECT_EQ(m, VditMode::Full);
  EXPECT_DOUBLE_EQ(decide_vdit(t, 0.5, 1e-9).mean_density(), 1.0);
  // Huge eps and a dominant density penalty: the sparsest mode, skip, everywhere.
  for (VditMode m : modes_of(decide_vdit(t, 1e6, 1e30))) EXPECT_EQ(m, VditMode::Skip);
  // Without skip among the candidates: the sparsest remaining one.
  VditSearchOptions o = f.options();
  o.modes = {VditMode::Diagonal, VditMode::MultiDiagonal};
  const VditLossTable t2 = measure_vdit_candidates({&f.traj}, *f.cpu, o);
  const VditConfig sparse = decide_vdit(t2, 1e6, 1e30);
  const BlockGrid g = make_block_grid(f.tokens, 64);
  for (size_t i = 0; i < t2.scored.size(); ++i)
    for (size_t l = 0; l < t2.scored[i].size(); ++l)
      for (size_t h = 0; h < t2.scored[i][l].size(); ++h) {
        double min_density = 1;
        for (const auto& s : t2.scored[i][l][h]) min_density = std::min(min_density, s.density);
        EXPECT_DOUBLE_EQ(vdit_density(sparse.choices[i][l][h], f.tokens, g), min_density);
      }
  // lambda = 0, huge eps: the most accurate candidate (never full: it is no candidate).
  const VditConfig accurate = decide_vdit(t2, 0.0, 1e30);
  for (size_t h = 0; h < 4; ++h) {
    double best = 1e30;
    for (const auto& s : t2.scored[0][0][h]) best = std::min(best, s.nmse);
    const auto& chosen = accurate.choices[0][0][h];
    for (const auto& s : t2.scored[0][0][h])
      if (s.choice == chosen) {
        EXPECT_DOUBLE_EQ(s.nmse, best);
      }
  }
}

TEST(VditSearch, DropsCandidatesThatComputeEverything) {
  Fixture f;
  VditSearchOptions o = f.options();
  o.modes = {VditMode::MultiDiagonal, VditMode::VerticalStripe};
  o.multi_diagonal_windows = {0, 192};  // 192 >= P: every block
  o.stripe_counts = {1, 100};           // 100 >= n: every block
  const VditLossTable t = measure_vdit_candidates({&f.traj}, *f.cpu, o);
  for (const auto& head : t.scored[0][0]) {
    ASSERT_EQ(head.size(), 2u);
    for (const auto& s : head) EXPECT_LT(s.density, 1.0);
  }
}

TEST(VditSearch, StripesFollowTheAttentionSink) {
  Fixture f;
  VditSearchOptions o = f.options();
  o.modes = {VditMode::VerticalStripe};
  o.stripe_counts = {1};
  const VditLossTable t = measure_vdit_candidates({&f.traj}, *f.cpu, o);
  // Head 1 attends to keys [140, 156) = video tokens [100, 116): video block 1.
  for (const auto& step : t.scored)
    for (const auto& layer : step) {
      ASSERT_EQ(layer[1][0].choice.stripes.size(), 1u);
      EXPECT_EQ(layer[1][0].choice.stripes[0], 1);
    }
}

TEST(VditSearch, DensityTargetIsMetOrExplained) {
  Fixture f;
  const VditLossTable t = measure_vdit_candidates({&f.traj}, *f.cpu, f.options());
  for (double target : {0.3, 0.6}) {
    const VditDensityDecision d = decide_vdit_density(t, target);
    EXPECT_DOUBLE_EQ(decide_vdit_for_density(t, target).mean_density(), d.config.mean_density());
    EXPECT_NEAR(d.config.mean_density(), d.density, 1e-12);
    // 16 (step, layer, head) decisions: a move can be coarser than the tolerance,
    // and then the decision says so; it is never more than half a move away.
    if (std::abs(d.density - target) > kVditDensityTolerance) {
      EXPECT_FALSE(d.off_target.empty()) << target;
    }
    EXPECT_LE(std::abs(d.density - target), 0.5 * std::max(d.next_step, 1.0 / 16) + 1e-12) << target;
  }
}

TEST(VditSearch, AveragesOverSeveralTrajectoriesAndRefusesMixedShapes) {
  Fixture f;
  vdit_test::RandomTrajectory other(f.tokens, 2, 2, 4, 16, 1, 99);
  const VditLossTable t = measure_vdit_candidates({&f.traj, &other}, *f.cpu, f.options());
  EXPECT_EQ(t.calibration.size(), 2u);
  vdit_test::RandomTrajectory wrong(vdit_test::layout(3, 8, 11), 2, 2, 4, 16, 1, 5);
  EXPECT_THROW(measure_vdit_candidates({&f.traj, &wrong}, *f.cpu, f.options()), Error);
  VditSearchOptions bad = f.options();
  bad.modes = {VditMode::Full};
  EXPECT_THROW(measure_vdit_candidates({&f.traj}, *f.cpu, bad), Error);
}

TEST(VditSearch, DropBatchItemsKeepsTheLaterItems) {
  const TokenLayout t = vdit_test::layout(2, 4, 5, 6, 6, TextPosition::After);
  auto full = std::make_unique<vdit_test::RandomTrajectory>(t, 2, 1, 3, 8, 3, 17);
  HostTensor q, k, v;
  full->load(1, 0, q, k, v);
  auto sliced = drop_batch_items(std::move(full), 2);
  EXPECT_EQ(sliced->info().batch, 1);
  HostTensor q1, k1, v1;
  sliced->load(1, 0, q1, k1, v1);
  ASSERT_EQ(q1.shape[0], 1);
  const int64_t item = q.numel() / 3;
  for (int64_t i = 0; i < item; ++i) {
    ASSERT_EQ(q1.f32()[i], q.f32()[2 * item + i]);
    ASSERT_EQ(v1.f32()[i], v.f32()[2 * item + i]);
  }
  EXPECT_THROW(drop_batch_items(std::move(sliced), 1), Error);
}

// The search's candidate runner refuses K or V whose shape is not Q's, before it
// reads them (the GPU path converts all three with Q's element count).
TEST(VditSearch, CandidateRunnerRefusesKeysOfAnotherShape) {
  Fixture f;
  vdit::CandidateRunner runner(*f.cpu, f.tokens, 64, 1);
  const int64_t N = f.tokens.total_tokens();
  HostTensor q(DType::F32, 1, N, 2, 16), k(DType::F32, 1, N - 1, 2, 16), v = q;
  try {
    runner.load(0, q, k, v);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("must have q's shape"), std::string::npos) << e.what();
  }
  EXPECT_THROW(runner.load(0, q, q, HostTensor(DType::F32, 1, N, 2, 8)), Error);
  runner.load(0, q, q, q);  // the same shapes load
}
