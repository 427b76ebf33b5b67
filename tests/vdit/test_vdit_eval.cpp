// Sparse-vDiT and SVG inside the evaluation runner: density matched, share of
// heads per mode reported, the search's origin in the notes.
#include <gtest/gtest.h>

#include <cmath>

#include "moddit/eval.hpp"

using namespace moddit;

TEST(VditInEval, RunsAtTheTargetDensityAndReportsHeadModes) {
  SyntheticSpec spec;
  spec.frames = 3;
  spec.height = 8;
  spec.width = 16;
  spec.num_steps = 14;
  spec.layers = 1;
  spec.heads = 4;
  auto traj = make_synthetic(spec);
  EvalSettings s;
  s.config.block_size = 64;
  s.target_density = 0.3;
  s.config.target_density = 0.3;
  s.policies = parse_policy_list("dense,svg,sparse_vdit", s.config, 0.3);
  s.threads = 2;
  const EvalResult r = run_evaluation(*traj, s);
  ASSERT_EQ(r.policies.size(), 3u);
  for (const PolicyResult& p : r.policies) {
    if (p.kind == "dense") continue;
    double total = 0;
    for (const auto& m : p.head_modes) total += m.second;
    EXPECT_NEAR(total, 1.0, 1e-12) << p.label;
    EXPECT_GT(p.rel_l2, 0.0);
    EXPECT_LT(p.density, 1.0);
  }
  const PolicyResult& v = r.policies[2];
  EXPECT_EQ(v.kind, "sparse_vdit");
  EXPECT_NEAR(v.density, 0.3, 0.15);  // searched on another scene, measured on this one
  bool noted = false;
  for (const std::string& n : r.notes) noted = noted || n.find("sparse_vdit: searched on batch item 1") == 0;
  EXPECT_TRUE(noted);
  EXPECT_NE(eval_report_json(r).find("\"head_modes\""), std::string::npos);
}
