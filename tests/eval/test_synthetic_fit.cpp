// `moddit demo`'s generator (the default SyntheticSpec with the fitted
// head_logit_spread and value_offset) against moddit-tiny, the trained model of
// docs/QUALITY.md: oracle recall and rel_l2 at the demo's default settings (steps
// >= 12 of 50, block 128) must stay near the trained model's. The generator is
// still a procedural stand-in; this only pins how close its statistics are.
#include <gtest/gtest.h>

#include "moddit/eval.hpp"
#include "moddit/trajectory.hpp"

namespace moddit {
namespace {

// moddit-tiny, H200, 2026-12-03, sparse steps >= 12 (docs/quality/attention_stats.json:
// "oracle_recall_global" "all" at densities 0.15 and 0.30; "oracle_rel_l2" at 0.15).
constexpr double kTinyOracleRecall015 = 0.551, kTinyOracleRecall030 = 0.698;
constexpr double kTinyOracleRelL2015 = 0.264;

TEST(SyntheticFit, DemoGeneratorsOracleFollowsModditTinySlow) {
  SyntheticSpec spec;  // the demo's grid: 6 frames x 16x16, 2 layers x 8 heads, 50 steps
  spec.head_logit_spread = kModditTinyHeadLogitSpread;
  spec.value_offset = kModditTinyValueOffset;
  auto source = make_synthetic(spec);
  EvalSettings s;
  s.target_density = 0.15;
  s.policies = parse_policy_list("oracle,oracle:target_density=0.3", s.config, 0.15);
  s.threads = 2;
  const EvalResult r = run_evaluation(*source, s);
  ASSERT_EQ(r.policies.size(), 2u);
  const PolicyResult &at15 = r.policies[0], &at30 = r.policies[1];
  std::printf("[procedural generator, demo spec] oracle recall %.3f at %.4f, %.3f at %.4f; "
              "rel_l2 %.3f at %.4f (moddit-tiny: %.3f, %.3f; %.3f)\n",
              at15.recall, at15.density, at30.recall, at30.density, at15.rel_l2, at15.density,
              kTinyOracleRecall015, kTinyOracleRecall030, kTinyOracleRelL2015);
  // Measured 2026-12-03: 0.538 at 0.1528 and 0.716 at 0.2986 (moddit-tiny
  // interpolated there: 0.554, 0.697); the unfitted generator: 0.573 and 0.828.
  EXPECT_NEAR(at15.recall, kTinyOracleRecall015, 0.03);
  EXPECT_NEAR(at30.recall, kTinyOracleRecall030, 0.03);
  EXPECT_NEAR(at15.rel_l2, kTinyOracleRelL2015, 0.05);  // unfitted: 0.877
}

}  // namespace
}  // namespace moddit
