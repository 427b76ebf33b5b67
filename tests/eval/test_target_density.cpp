// Every policy lands on the target density (within kDensityTolerance) on
// trajectories with sink tokens, a scene cut and text heads, or the report says
// why not (issue 15.1).
#include <gtest/gtest.h>

#include <cmath>

#include "moddit/eval.hpp"
#include "structured_trajectory.hpp"

namespace moddit {
namespace {

TokenLayout layout_with_text() {
  TokenLayout t;
  t.frames = 6;
  t.height = 8;
  t.width = 16;        // 128 tokens per frame, 2 blocks of 64
  t.text_tokens = 40;  // partial text block
  t.text_valid = 33;
  t.text_position = TextPosition::Before;
  return t;
}

// Largest share of one row's dense mass on one key token, over the rows of head h.
double max_token_share(const HostTensor& q, const HostTensor& k, const TokenLayout& t, int h) {
  const int64_t N = q.shape[1], H = q.shape[2], D = q.shape[3];
  double best = 0;
  for (int64_t i = t.video_begin(); i < t.video_begin() + t.video_tokens(); i += 37) {
    std::vector<double> s(static_cast<size_t>(N));
    double mx = -1e300;
    for (int64_t j = 0; j < N; ++j) {
      double dot = 0;
      for (int64_t d = 0; d < D; ++d) dot += double(q.f32()[(i * H + h) * D + d]) * k.f32()[(j * H + h) * D + d];
      s[j] = (j >= t.pad_begin() && j < t.pad_end()) ? -1e300 : dot / std::sqrt(double(D));
      mx = std::max(mx, s[j]);
    }
    double z = 0, top = 0;
    for (int64_t j = 0; j < N; ++j) {
      const double e = std::exp(s[j] - mx);
      z += e;
      top = std::max(top, e);
    }
    best = std::max(best, top / z);
  }
  return best;
}

TEST(StructuredTrajectory, SinkHeadsPutAFifthOfARowOnOneToken) {
  const TokenLayout t = layout_with_text();
  test::StructuredTrajectory traj(t, 8, 1, 4, 32, 3u);
  HostTensor q, k, v;
  traj.load(6, 0, q, k, v);
  const double sink = max_token_share(q, k, t, 1);
  EXPECT_GT(sink, 0.12);
  EXPECT_LT(sink, 0.45);
  EXPECT_LT(max_token_share(q, k, t, 0), sink);  // a spatial head has no such token
}

// "Slow": too slow under ASan for the README test command; the Release pass runs it.
TEST(TargetDensity, EveryPolicyLandsOnTheTargetOrTheReportSaysWhySlow) {
  const TokenLayout t = layout_with_text();
  test::StructuredTrajectory traj(t, 10, 1, 8, 32, 5u);
  for (double target : {0.10, 0.15, 0.20}) {
    EvalSettings s;
    s.config.block_size = 64;
    s.config.warmup_steps = 4;
    s.config.interval = 3;
    s.config.target_density = target;
    s.target_density = target;
    s.policies = parse_policy_list("oracle,moddit,window,radial,svg,sparse_vdit", s.config, target);
    s.threads = 2;
    const EvalResult r = run_evaluation(traj, s);
    for (const PolicyResult& p : r.policies) {
      bool explained = false;
      for (const std::string& line : r.off_target)
        if (line.rfind(p.label + ":", 0) == 0) explained = true;
      const bool on = std::fabs(p.density - target) <= kDensityTolerance;
      EXPECT_TRUE(on != explained) << p.label << " density " << p.density << " target " << target;
      // The geometric policies always land (n = 12: one block pair is 1/144).
      if (p.kind != "sparse_vdit") {
        EXPECT_TRUE(on) << p.label << " " << p.density << " at " << target;
      }
    }
    // Each call of MOD-DiT is on the target too, not only the mean.
    for (const PolicyResult& p : r.policies) {
      if (p.kind != "moddit") continue;
      for (const CallMetrics& c : p.calls) {
        if (c.kind != "sparse") continue;
        for (const HeadMetrics& h : c.heads) EXPECT_NEAR(h.density, target, 0.5 / 144 + 1e-9);
      }
    }
  }
}

}  // namespace
}  // namespace moddit

namespace moddit {
namespace {

TEST(TargetDensity, BelowTheDiagonalTheReportSaysSo) {
  const TokenLayout t = layout_with_text();  // n = 12: the diagonal is 1/12 of the grid
  test::StructuredTrajectory traj(t, 6, 1, 2, 32, 5u);
  EvalSettings s;
  s.config.block_size = 64;
  s.config.warmup_steps = 4;
  s.config.target_density = 0.03;
  s.target_density = 0.03;
  s.policies = parse_policy_list("oracle,window", s.config, 0.03);
  s.threads = 2;
  const EvalResult r = run_evaluation(traj, s);
  ASSERT_EQ(r.off_target.size(), 2u);
  for (const std::string& line : r.off_target)
    EXPECT_NE(line.find("diagonal"), std::string::npos) << line;
  EXPECT_NE(format_eval_table(r).find("off target: oracle"), std::string::npos);
}

}  // namespace
}  // namespace moddit
