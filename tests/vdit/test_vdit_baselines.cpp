// The evaluation baselines added with Sparse-vDiT: SVG's spatial/temporal masks
// and online head classification, and the Sparse-vDiT evaluation policy.
#include <gtest/gtest.h>

#include <regex>

#include "eval/svg_policy.hpp"
#include "eval/vdit_eval.hpp"
#include "moddit/error.hpp"
#include "moddit/sparse_vdit.hpp"
#include "vdit/geometry.hpp"
#include "vdit_test_util.hpp"

using namespace moddit;

TEST(SvgMasks, LandOnTheTargetDensityWithinHalfABlock) {
  for (const TokenLayout& t : vdit_test::small_layouts()) {
    const BlockGrid g = make_block_grid(t, 64);
    for (double target : {0.1, 0.3, 0.6}) {
      const auto s = eval::svg_spatial_mask(t, g, target);
      const auto m = eval::svg_temporal_mask(t, g, target);
      const double ds = video_mask_density(s.data(), g), dm = video_mask_density(m.data(), g);
      // No other member of the temporal family (frame range at the same position,
      // then a spatial radius in all frames) is closer to the target.
      std::vector<std::vector<uint8_t>> family;
      for (int64_t rf = 0; rf < t.frames; ++rf) family.push_back(geometry::frame_window_mask(t, g, rf, 0));
      for (int64_t r = 0; r < t.tokens_per_frame(); ++r)
        family.push_back(geometry::frame_window_mask(t, g, -1, r));
      for (const auto& f : family) {
        const double d = video_mask_density(f.data(), g);
        EXPECT_LE(std::abs(dm - target), std::abs(d - target) + 1e-12);
      }
      // The last radius is trimmed to the target (one 64 x 64 block pair at most
      // off by half; the diagonal alone may exceed it).
      const double V = double(t.video_tokens()), half = 0.5 * 64.0 * 64.0 / (V * V);
      const double diagonal = video_mask_density(geometry::band_mask(g, 0).data(), g);
      if (target > diagonal) {
        EXPECT_NEAR(ds, target, half + 1e-12) << t.describe();
        EXPECT_NEAR(dm, target, half + 1e-12) << t.describe();
      }
      // Spatial masks never reach across frames while one frame suffices.
      const double one_frame =
          video_mask_density(geometry::frame_window_mask(t, g, 0, t.tokens_per_frame()).data(), g);
      if (target <= one_frame) {
        EXPECT_LE(ds, one_frame + 1e-12);
      }
      for (int i = 0; i < g.num_video_blocks; ++i) {
        EXPECT_EQ(s[size_t(i) * g.num_video_blocks + i], 1);
        EXPECT_EQ(m[size_t(i) * g.num_video_blocks + i], 1);
      }
    }
  }
}

TEST(SvgPolicy, ClassifiesSyntheticSpatialAndTemporalHeads) {
  SyntheticSpec spec;
  spec.num_steps = 50;
  auto traj = make_synthetic(spec);
  const TrajectoryInfo& info = traj->info();
  // Head kinds per layer, as the generator describes them ("l0=GSMTTGMS ...").
  std::smatch m;
  const std::regex re("l0=([SGTM]+)");
  ASSERT_TRUE(std::regex_search(info.source, m, re)) << info.source;
  const std::string kinds = m[1];
  HostTensor q, k, v;
  traj->load(45, 0, q, k, v);
  q = q.to(DType::F32);
  k = k.to(DType::F32);
  v = v.to(DType::F32);
  const BlockGrid g = make_block_grid(info.tokens, 128);
  eval::SvgPolicy svg(0.2, 12);
  CallInfo call;
  call.step = 45;
  call.num_steps = 50;
  call.batch = info.batch;
  call.num_heads = info.heads;
  call.head_dim = info.head_dim;
  call.tokens = &info.tokens;
  call.grid = &g;
  EXPECT_THROW(svg.plan(call), Error);  // no inputs given
  svg.set_inputs(&q, &k, &v);
  const Plan plan = svg.plan(call);
  std::string got(size_t(info.heads), '?');
  for (const HeadGroup& grp : plan.groups) {
    ASSERT_TRUE(grp.layout.has_value());
    for (int32_t h : grp.heads) got[size_t(h)] = grp.label == "spatial" ? 'S' : 'T';
  }
  for (size_t h = 0; h < kinds.size(); ++h) {
    if (kinds[h] == 'S' || kinds[h] == 'T') {
      EXPECT_EQ(got[h], kinds[h]) << "head " << h << " " << kinds << " -> " << got;
    }
  }
  call.step = 3;
  EXPECT_EQ(svg.plan(call).kind, CallKind::Dense);  // warm-up
}

TEST(VditEvalPolicy, IsDenseDuringWarmupAndMatchesTheTargetDensity) {
  const TokenLayout t = vdit_test::layout(3, 8, 10);
  vdit_test::RandomTrajectory traj(t, 6, 1, 4, 16, 1, 21);
  ModditConfig run;
  run.block_size = 64;
  run.warmup_steps = 4;
  std::string note;
  auto p = eval::make_vdit_eval_policy(traj, run, 0.5, &note, "", 2);
  EXPECT_NE(note.find("in-sample"), std::string::npos) << note;
  EXPECT_EQ(p->config().steps.front(), 2);  // searched from warmup - 2
  const BlockGrid g = make_block_grid(t, 64);
  CallInfo call;
  call.step = 3;
  call.num_steps = 6;
  call.batch = 1;
  call.num_heads = 4;
  call.head_dim = 16;
  call.tokens = &t;
  call.grid = &g;
  EXPECT_EQ(p->plan(call).kind, CallKind::Dense);
  call.step = 5;
  EXPECT_NO_THROW(p->plan(call));
}

TEST(VditEvalPolicy, CountsHeadsPerGroupLabelWithSkippedHeads) {
  Plan plan;
  plan.groups.push_back({{0, 3}, std::nullopt, "full", nullptr});
  plan.groups.push_back({{1}, std::nullopt, "diagonal", nullptr});
  std::map<std::string, double> counts;
  eval::add_head_modes(plan, 6, counts);
  eval::add_head_modes(plan, 6, counts);
  EXPECT_EQ(counts["full"], 4.0);
  EXPECT_EQ(counts["diagonal"], 2.0);
  EXPECT_EQ(counts["skip"], 6.0);
}
