// MOD-DiT's map statistic on the sink heads of the structured test trajectory
// (issue 15, item 2): Eq. 2 (the paper's count of P < eta) against "mass" (the
// block's share of its rows' mass), and both against the oracle, at 0.15. The
// numbers come from a test harness (tests/eval/structured_trajectory.hpp), not
// from a model.
#include <gtest/gtest.h>

#include <cstdio>
#include <map>

#include "moddit/eval.hpp"
#include "structured_trajectory.hpp"

namespace moddit {
namespace {

TokenLayout sink_layout() {
  TokenLayout t;
  t.frames = 6;
  t.height = 8;
  t.width = 16;        // 128 tokens per frame, 2 blocks of 64: n = 12
  t.text_tokens = 40;  // partial text block
  t.text_valid = 33;
  t.text_position = TextPosition::Before;
  return t;
}

// Mean recall over the sparse steps of the heads of one kind, per policy label;
// for MOD-DiT also the oracle's recall at MOD-DiT's own per-head density.
struct KindRecall {
  std::map<std::string, double> recall, oracle_same_density;
};

KindRecall recall_by_kind(const EvalResult& r, int heads, test::StructuredHead kind) {
  KindRecall out;
  for (const PolicyResult& p : r.policies) {
    double sum = 0, same = 0;
    int count = 0, same_count = 0;
    for (const CallMetrics& c : p.calls) {
      if (c.kind != "sparse") continue;
      for (int h = 0; h < heads; ++h) {
        if (test::StructuredTrajectory::kind(h) != kind) continue;
        sum += c.heads[static_cast<size_t>(h)].recall;
        ++count;
        if (!c.oracle_recall_same_density.empty()) {
          same += c.oracle_recall_same_density[static_cast<size_t>(h)];
          ++same_count;
        }
      }
    }
    out.recall[p.label] = count ? sum / count : -1;
    if (same_count) out.oracle_same_density[p.label] = same / same_count;
  }
  return out;
}

EvalResult run_sink_eval(double target) {
  static const TokenLayout t = sink_layout();
  test::StructuredTrajectory traj(t, 12, 1, 8, 32, 5u);
  EvalSettings s;
  s.config.block_size = 64;
  s.config.warmup_steps = 4;
  s.config.interval = 3;
  s.target_density = target;
  // Eq. 2 at the paper's eta (1e-4, moddit's default before 2026-12-03), mass,
  // and Eq. 2 at eta 1e-3 (moddit's default now), each named explicitly so that
  // the comparison does not move with the defaults.
  s.policies = parse_policy_list(
      "oracle,moddit:eta=0.0001,moddit:map_statistic=mass,moddit:eta=0.001", s.config, target);
  s.threads = 2;
  return run_evaluation(traj, s);
}

TEST(SinkMap, MassGetsNinetyPercentOfTheOracleOnSinkHeadsAtThePapersEtaSlow) {
  const EvalResult r = run_sink_eval(0.15);
  ASSERT_EQ(r.policies.size(), 4u);
  const std::string eq2 = r.policies[1].label, mass = r.policies[2].label,
                    eq2_eta3 = r.policies[3].label;
  for (const PolicyResult& p : r.policies)
    EXPECT_NEAR(p.density, 0.15, kDensityTolerance) << p.label;  // equal density
  const char* names[] = {"spatial", "sink", "scene", "text"};
  std::map<int, KindRecall> by_kind;
  for (int k = 0; k < 4; ++k) {
    by_kind[k] = recall_by_kind(r, 8, static_cast<test::StructuredHead>(k));
    const KindRecall& kr = by_kind[k];
    std::printf("[structured test trajectory] %-7s heads at 0.15: oracle %.3f, eq2 %.3f "
                "(oracle at its density %.3f), mass %.3f (oracle at its density %.3f)\n",
                names[k], kr.recall.at("oracle"), kr.recall.at(eq2),
                kr.oracle_same_density.at(eq2), kr.recall.at(mass),
                kr.oracle_same_density.at(mass));
    std::printf("[structured test trajectory] %-7s heads at 0.15: eq2 with eta = 1e-3 %.3f\n",
                names[k], kr.recall.at(eq2_eta3));
  }
  std::printf("[structured test trajectory] all heads at 0.15: oracle %.3f, eq2 %.3f, mass %.3f, "
              "eq2 with eta = 1e-3 %.3f\n",
              r.policies[0].recall, r.policies[1].recall, r.policies[2].recall,
              r.policies[3].recall);
  std::printf("[structured test trajectory] all heads at 0.15, rel_l2: oracle %.3f, eq2 %.3f, "
              "mass %.3f, eq2 with eta = 1e-3 %.3f\n",
              r.policies[0].rel_l2, r.policies[1].rel_l2, r.policies[2].rel_l2,
              r.policies[3].rel_l2);
  const KindRecall& sink = by_kind[int(test::StructuredHead::Sink)];
  const double oracle = sink.recall.at("oracle");
  EXPECT_GE(sink.recall.at(mass), 0.9 * oracle);
  EXPECT_LT(sink.recall.at(eq2), 0.9 * oracle);
  // Over all head types mass is ahead of Eq. 2 at the paper's eta (1e-4) ...
  EXPECT_GT(r.policies[2].recall, r.policies[1].recall + 0.02);
  // ... but on this harness most of that gap is Eq. 2's threshold: at eta = 1e-3
  // Eq. 2 comes within 0.01 of mass on every head type, sinks included (the
  // finding docs/DESIGN_NOTES.md reports; this fails if it stops being true).
  for (int k = 0; k < 4; ++k)
    EXPECT_NEAR(by_kind[k].recall.at(eq2_eta3), by_kind[k].recall.at(mass), 0.01) << names[k];
}

}  // namespace
}  // namespace moddit
