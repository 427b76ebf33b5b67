// The equal-density view: a policy's recall and rel_l2 at the target from its
// own run and its sweep runs (measured, interpolated, or its own density, never
// extrapolated), the extra runs the runner makes, and the labels of the table.
// Trajectories are test-harness data (structured test trajectory), not a model.
#include <gtest/gtest.h>

#include <cmath>

#include <nlohmann/json.hpp>

#include "eval/equal_density.hpp"
#include "moddit/eval.hpp"
#include "structured_trajectory.hpp"

using namespace moddit;

namespace {

PolicyResult policy_at(double density, double recall, double rel_l2) {
  PolicyResult p;
  p.kind = "moddit";
  p.label = "moddit";
  p.density = density;
  p.recall = recall;
  p.rel_l2 = rel_l2;
  p.sparse_calls = 4;
  p.per_step.recall = {recall - 0.1, recall + 0.1};
  p.per_step.rel_l2 = {rel_l2 + 0.1, rel_l2 - 0.1};
  return p;
}

SweepPoint sweep_at(double requested, double density, double recall, double rel_l2) {
  SweepPoint s;
  s.requested = requested;
  s.density = density;
  s.recall = recall;
  s.rel_l2 = rel_l2;
  s.per_step_recall = {recall - 0.2, recall + 0.2};
  s.per_step_rel_l2 = {rel_l2, rel_l2};
  return s;
}

TokenLayout small_layout() {  // n = 12 video blocks of 64
  TokenLayout t;
  t.frames = 4;
  t.height = 12;
  t.width = 16;
  t.text_tokens = 50;
  t.text_valid = 40;
  t.text_position = TextPosition::Before;
  return t;
}

}  // namespace

TEST(EqualDensity, InterpolatesBetweenTheRunsEitherSideOfTheTarget) {
  PolicyResult p = policy_at(0.15, 0.5, 1.0);  // asked for 0.1, got 0.15
  p.sweep.push_back(sweep_at(0.05, 0.12, 0.45, 1.1));  // still above
  p.sweep.push_back(sweep_at(0.03, 0.08, 0.40, 1.3));  // below: the bracket is [0.08, 0.12]
  const EqualDensityPoint e = eval::equal_density_point(p, 0.1);
  EXPECT_EQ(e.basis, "interpolated");
  EXPECT_DOUBLE_EQ(e.density, 0.1);
  EXPECT_DOUBLE_EQ(e.lo_density, 0.08);
  EXPECT_DOUBLE_EQ(e.hi_density, 0.12);
  EXPECT_NEAR(e.recall, 0.425, 1e-12);  // halfway between 0.40 and 0.45
  EXPECT_NEAR(e.rel_l2, 1.2, 1e-12);
  EXPECT_GT(e.recall, 0.40);
  EXPECT_LT(e.recall, 0.45);
  ASSERT_EQ(e.per_step_recall.size(), 2u);
  EXPECT_NEAR(e.per_step_recall[0], 0.5 * (0.20 + 0.25), 1e-12);
  EXPECT_NEAR(e.per_step_rel_l2[1], 1.2, 1e-12);
  EXPECT_TRUE(e.why.empty());
}

TEST(EqualDensity, OnTargetIsMeasuredAndNoBracketIsNotExtrapolated) {
  const PolicyResult on = policy_at(0.103, 0.5, 1.0);
  EXPECT_EQ(eval::equal_density_point(on, 0.1).basis, "measured");
  EXPECT_DOUBLE_EQ(eval::equal_density_point(on, 0.1).recall, 0.5);

  PolicyResult p = policy_at(0.15, 0.5, 1.0);
  p.sweep.push_back(sweep_at(0.05, 0.13, 0.45, 1.1));  // never below the target
  const EqualDensityPoint e = eval::equal_density_point(p, 0.1);
  EXPECT_EQ(e.basis, "own density");
  EXPECT_DOUBLE_EQ(e.density, 0.13);  // the nearest run, as it is
  EXPECT_DOUBLE_EQ(e.recall, 0.45);
  EXPECT_NE(e.why.find("not extrapolated"), std::string::npos) << e.why;

  p.sweep.push_back(sweep_at(0.02, 0.098, 0.41, 1.2));  // a sweep run within the tolerance
  EXPECT_EQ(eval::equal_density_point(p, 0.1).basis, "measured");
  EXPECT_DOUBLE_EQ(eval::equal_density_point(p, 0.1).recall, 0.41);
}

TEST(EqualDensity, NextRequestShiftsByTheMissWithinRange) {
  EXPECT_NEAR(eval::next_sweep_request(0.1, 0.15, 0.1), 0.05, 1e-12);
  EXPECT_NEAR(eval::next_sweep_request(0.1, 0.08, 0.1), 0.12, 1e-12);
  EXPECT_DOUBLE_EQ(eval::next_sweep_request(0.01, 0.2, 0.1), 0.001);
  EXPECT_DOUBLE_EQ(eval::next_sweep_request(0.99, 0.5, 0.6), 1.0);
}

TEST(EqualDensity, TableLabelsInterpolatedAndOwnDensityPoints) {
  EvalResult r;
  r.settings.target_density = 0.1;
  PolicyResult oracle = policy_at(0.1, 0.6, 0.8);
  oracle.kind = oracle.label = "oracle";
  PolicyResult interp = policy_at(0.15, 0.5, 1.0);
  interp.sweep.push_back(sweep_at(0.03, 0.08, 0.40, 1.3));
  PolicyResult own = policy_at(0.15, 0.5, 1.0);
  own.label = "window";
  own.kind = "window";
  for (PolicyResult* p : {&oracle, &interp, &own}) {
    p->at_target = eval::equal_density_point(*p, 0.1);
    r.policies.push_back(*p);
  }
  const std::string table = format_eval_table(r);
  EXPECT_NE(table.find("at equal density 0.1000"), std::string::npos) << table;
  EXPECT_NE(table.find("INTERPOLATED between runs at 0.0800 and 0.1500"), std::string::npos) << table;
  EXPECT_NE(table.find("OWN DENSITY 0.1500"), std::string::npos) << table;
  EXPECT_NE(table.find("measured at 0.1000"), std::string::npos) << table;
  EXPECT_NE(table.find("as run"), std::string::npos) << table;
  const auto json = nlohmann::json::parse(eval_report_json(r));
  EXPECT_EQ(json["policies"][1]["at_target"]["basis"], "interpolated");
  EXPECT_DOUBLE_EQ(json["policies"][1]["at_target"]["recall"].get<double>(),
                   r.policies[1].at_target.recall);
  EXPECT_EQ(json["policies"][2]["at_target"]["basis"], "own density");
  // `moddit inspect` of the report shows the points that are not as measured.
  const std::string inspected = inspect_report_text(eval_report_json(r), "report.json");
  EXPECT_NE(inspected.find("at the target density: recall 0.4286, rel_l2 1.2143 (interpolated"),
            std::string::npos)
      << inspected;
  EXPECT_NE(inspected.find("(own density, density 0.1500)"), std::string::npos) << inspected;
}

TEST(EqualDensity, RunnerSweepsOnlyOffTargetPoliciesAndFillsEveryPoint) {
  test::StructuredTrajectory traj(small_layout(), 6, 1, 2, 32, 5u);
  for (double target : {0.03, 0.2}) {  // below the diagonal (1/12): nothing can reach it
    EvalSettings s;
    s.config.block_size = 64;
    s.config.warmup_steps = 4;
    s.config.target_density = target;
    s.target_density = target;
    s.policies = parse_policy_list("dense,moddit,oracle,window", s.config, target);
    s.threads = 2;
    const EvalResult r = run_evaluation(traj, s);
    for (const PolicyResult& p : r.policies) {
      const EqualDensityPoint& e = p.at_target;
      const bool on = std::abs(p.density - target) <= kDensityTolerance;
      if (p.kind == "dense" || on) {
        EXPECT_TRUE(p.sweep.empty()) << p.label;
      }
      if (on) {
        EXPECT_EQ(e.basis, "measured") << p.label;
      }
      const bool at_diagonal = p.density <= 1.0 / 12 + kDensityTolerance && p.density > target;
      if (p.kind != "dense" && !on) {
        // A run at another request, unless the mask is at the diagonal blocks.
        EXPECT_EQ(p.sweep.empty(), at_diagonal) << p.label;
        EXPECT_LE(p.sweep.size(), size_t(kMaxSweepRuns)) << p.label;
      }
      if (p.kind == "dense") {
        EXPECT_EQ(e.basis, "reference");
      }
      if (e.basis == "interpolated") {
        EXPECT_LE(e.lo_density, target);
        EXPECT_GE(e.hi_density, target);
        EXPECT_DOUBLE_EQ(e.density, target);
      }
      if (e.basis == "own density") {
        EXPECT_FALSE(e.why.empty()) << p.label;
      }
      if (target < 1.0 / 12 && p.kind != "dense") {
        EXPECT_EQ(e.basis, "own density") << p.label;
      }
    }
  }
}

// Sparse-vDiT on 2 scored steps x 1 layer x 2 heads: four decisions, so one
// head's move is coarser than the tolerance and the runner brackets the target.
TEST(EqualDensity, RunnerBracketsACoarsePolicyAndInterpolatesSlow) {
  test::StructuredTrajectory traj(small_layout(), 6, 1, 2, 32, 5u);
  EvalSettings s;
  s.config.block_size = 64;
  s.config.warmup_steps = 4;
  s.config.target_density = 0.3;
  s.target_density = 0.3;
  s.policies = parse_policy_list("dense,oracle,sparse_vdit", s.config, 0.3);
  s.vdit_calibration = "self";
  s.threads = 2;
  const EvalResult r = run_evaluation(traj, s);
  const PolicyResult& v = r.policies[2];
  ASSERT_GT(std::abs(v.density - 0.3), kDensityTolerance);  // what this test is about
  ASSERT_FALSE(v.sweep.empty());
  const EqualDensityPoint& e = v.at_target;
  ASSERT_EQ(e.basis, "interpolated");
  EXPECT_LE(e.lo_density, 0.3);
  EXPECT_GE(e.hi_density, 0.3);
  // The runs interpolated are the policy's own and its sweep run(s).
  double lo_recall = NAN, hi_recall = NAN;
  if (v.density == e.lo_density) lo_recall = v.recall;
  if (v.density == e.hi_density) hi_recall = v.recall;
  for (const SweepPoint& sp : v.sweep) {
    if (sp.density == e.lo_density) lo_recall = sp.recall;
    if (sp.density == e.hi_density) hi_recall = sp.recall;
  }
  ASSERT_TRUE(std::isfinite(lo_recall) && std::isfinite(hi_recall));
  EXPECT_GE(e.recall, std::min(lo_recall, hi_recall));
  EXPECT_LE(e.recall, std::max(lo_recall, hi_recall));
  EXPECT_EQ(e.per_step_recall.size(), v.per_step.recall.size());
  EXPECT_TRUE(r.policies[1].sweep.empty());  // the oracle is on target: no extra run
  // The decision weighs the scored steps, so it predicts the measured density.
  char decided[64];
  std::snprintf(decided, sizeof decided, "density %.4f over the scored steps", v.density);
  bool noted = false;
  for (const std::string& n : r.notes) noted = noted || n.find(decided) != std::string::npos;
  EXPECT_TRUE(noted) << decided;
  EXPECT_NE(format_eval_table(r).find("INTERPOLATED between runs at"), std::string::npos);
}
