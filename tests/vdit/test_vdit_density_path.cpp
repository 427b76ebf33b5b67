// The density decision (decide_vdit_density): a nested path, so the predicted
// loss never rises with the target; the density lands within the tolerance or
// the decision says why; skipped heads are counted at density 0 and reported.
// Loss tables come from random numbers and from the structured test trajectory
// (tests/eval): test-harness data, not a model.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "eval/structured_trajectory.hpp"
#include "moddit/backend.hpp"
#include "moddit/error.hpp"
#include "moddit/sparse_vdit.hpp"
#include "vdit_test_util.hpp"

using namespace moddit;

namespace {

// A loss table of random candidates: skip (density 0) plus `per_head` modes at
// random densities and errors (larger errors where sparser, with noise, so the
// hulls are irregular). Choices are diagonals with the candidate index as window
// (only the table's numbers matter to the decision).
VditLossTable random_table(int steps, int layers, int heads, int per_head, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  VditLossTable t;
  t.shape.num_layers = layers;
  t.shape.num_heads = heads;
  t.shape.head_dim = 16;
  t.shape.num_steps = steps;
  t.shape.block_size = 64;
  t.shape.tokens = vdit_test::layout(3, 12, 16);
  for (int s = 0; s < steps; ++s) t.steps.push_back(s);
  for (int l = 0; l < layers; ++l) t.layers.push_back(l);
  for (int s = 0; s < steps; ++s) {
    t.scored.emplace_back();
    for (int l = 0; l < layers; ++l) {
      t.scored.back().emplace_back();
      for (int h = 0; h < heads; ++h) {
        std::vector<VditScored> cands;
        VditScored skip;
        skip.choice.mode = VditMode::Skip;
        skip.nmse = 0.2 + 1.5 * u(rng);
        cands.push_back(skip);
        for (int c = 0; c < per_head; ++c) {
          VditScored sc;
          sc.choice.mode = VditMode::Diagonal;
          sc.choice.window = c;
          sc.density = 0.03 + 0.9 * u(rng);
          sc.nmse = (1.0 - sc.density) * (0.1 + u(rng));
          cands.push_back(sc);
        }
        t.scored.back().back().push_back(cands);
      }
    }
  }
  return t;
}

// The decided loss and density over a target sweep 0.05..0.5.
void expect_monotone_sweep(const VditLossTable& t, bool expect_on_target) {
  double prev_loss = INFINITY, prev_density = -1;
  for (int k = 5; k <= 50; ++k) {
    const double target = k / 100.0;
    const VditDensityDecision d = decide_vdit_density(t, target);
    EXPECT_LE(d.loss, prev_loss) << "target " << target;
    EXPECT_GE(d.density, prev_density) << "target " << target;
    prev_loss = d.loss;
    prev_density = d.density;
    const bool on = std::abs(d.density - target) <= kVditDensityTolerance;
    EXPECT_EQ(on, d.off_target.empty()) << target << ": " << d.off_target;
    if (expect_on_target) {
      EXPECT_TRUE(on) << target << ": density " << d.density;
    }
    // Closest on the path: never more than half the move at the target away.
    if (!on && d.density < target) {
      EXPECT_LE(target - d.density, d.next_step / 2 + 1e-12);
    }
  }
}

}  // namespace

TEST(VditDensityPath, RandomTablesLossNeverRisesWithTheTarget) {
  for (unsigned seed : {1u, 2u, 3u}) {
    // 256 heads: one move changes the density by < 1/256, so every target is met.
    expect_monotone_sweep(random_table(4, 4, 16, 6, seed), /*expect_on_target=*/true);
    // 12 heads: moves are coarse; a target off by more than 0.005 is explained.
    expect_monotone_sweep(random_table(1, 2, 6, 3, seed + 10), /*expect_on_target=*/false);
  }
}

TEST(VditDensityPath, SkipIsCountedAtDensityZeroAndReported) {
  const VditLossTable t = random_table(2, 2, 8, 4, 7);
  const VditDensityDecision d = decide_vdit_density(t, 0.2);
  int64_t skips = 0, heads = 0;
  double density = 0;
  for (size_t i = 0; i < t.scored.size(); ++i)
    for (size_t l = 0; l < t.scored[i].size(); ++l)
      for (size_t h = 0; h < t.scored[i][l].size(); ++h) {
        const VditHeadChoice& c = d.config.choices[i][l][h];
        ++heads;
        if (c.mode == VditMode::Skip) {
          ++skips;
          continue;  // density 0
        }
        if (c.mode == VditMode::Full) {
          density += 1;
          continue;
        }
        density += t.scored[i][l][h][size_t(c.window) + 1].density;
      }
  EXPECT_EQ(d.heads, heads);
  EXPECT_EQ(d.skip_heads, skips);
  EXPECT_GT(skips, 0);  // at 0.2 some heads are dropped on this table
  EXPECT_NEAR(d.density, density / double(heads), 1e-12);
  // The lowest target starts from all skips: density 0 is reachable.
  EXPECT_DOUBLE_EQ(decide_vdit_density(t, 0.001).min_density, 0.0);
  const std::string summary = vdit_summary_table(d.config);
  EXPECT_NE(summary.find("skip heads: " + std::to_string(skips) + " of " + std::to_string(heads) +
                         " (step, layer, head) decisions, counted at density 0"),
            std::string::npos)
      << summary;
}

TEST(VditDensityPath, WeightsSetWhatCountsAndUnusedStepsStayFull) {
  const VditLossTable t = random_table(3, 2, 16, 5, 9);
  // Step 0 is never used; step 2 counts twice (e.g. it also stands for step 3).
  const std::vector<std::vector<double>> w = {{0, 0}, {1, 1}, {2, 2}};
  const VditDensityDecision d = decide_vdit_density(t, 0.25, w);
  for (const auto& layer : d.config.choices[0])
    for (const VditHeadChoice& c : layer) EXPECT_EQ(c.mode, VditMode::Full);
  double sum = 0, wsum = 0;
  for (size_t i = 1; i < 3; ++i)
    for (size_t l = 0; l < 2; ++l)
      for (size_t h = 0; h < 16; ++h) {
        const VditHeadChoice& c = d.config.choices[i][l][h];
        const double dens = c.mode == VditMode::Full   ? 1.0
                            : c.mode == VditMode::Skip ? 0.0
                                                       : t.scored[i][l][h][size_t(c.window) + 1].density;
        sum += w[i][l] * dens;
        wsum += w[i][l];
      }
  EXPECT_NEAR(d.density, sum / wsum, 1e-12);
  EXPECT_NEAR(d.density, 0.25, kVditDensityTolerance);
  EXPECT_EQ(d.heads, 2 * 2 * 16);
  EXPECT_THROW(decide_vdit_density(t, 0.25, {{1, 1}}), Error);            // one step of three
  EXPECT_THROW(decide_vdit_density(t, 0.25, {{0, 0}, {0, 0}, {0, 0}}), Error);  // nothing counts
  EXPECT_THROW(decide_vdit_density(t, 0.25, {{1, 1}, {1, -1}, {1, 1}}), Error);
  EXPECT_THROW(decide_vdit_density(t, 0.0), Error);
}

TEST(VditDensityPath, StructuredTrajectoryLossNeverRisesWithTheTargetSlow) {
  const TokenLayout tokens = vdit_test::layout(3, 12, 16, 40, 30, TextPosition::Before);
  test::StructuredTrajectory traj(tokens, 4, 2, 8, 16, 5);
  VditSearchOptions o;
  o.block_size = 64;
  o.diagonal_windows = {0, 1, 2};
  o.multi_diagonal_windows = {0, 12};
  o.stripe_counts = {1, 2};
  o.stripe_sample_rows = 64;
  std::shared_ptr<Backend> cpu = make_cpu_backend(2);
  const VditLossTable t = measure_vdit_candidates({&traj}, *cpu, o);
  expect_monotone_sweep(t, /*expect_on_target=*/false);
  for (double target : {0.1, 0.2, 0.35}) {
    const VditDensityDecision d = decide_vdit_density(t, target);
    // The table's densities are the modes' own: the config agrees with the decision.
    EXPECT_NEAR(d.config.mean_density(), d.density, 1e-12);
    d.config.validate();
    // The recorded rate and "no eps" (the largest double) survive the config file.
    const VditConfig back = vdit_config_from_json(vdit_config_to_json(d.config));
    EXPECT_EQ(back.search.eps, d.config.search.eps);
    EXPECT_DOUBLE_EQ(back.search.lambda, d.config.search.lambda);
    EXPECT_GT(d.config.search.lambda, 0.0);
  }
}
