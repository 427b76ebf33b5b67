// ModditPolicy driven directly with synthetic map counts: schedule, references,
// prediction, fusion, dense layers, dense refresh.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "core/pattern_basis.hpp"
#include "core/ridge_fit.hpp"
#include "core/schedule.hpp"
#include "core/video_mask.hpp"
#include "moddit/error.hpp"
#include "moddit/moddit_policy.hpp"

using namespace moddit;

namespace {

struct Fixture {
  TokenLayout tokens;
  BlockGrid grid;
  int n = 0, H = 2;
  std::vector<int64_t> len;

  explicit Fixture(TextPosition pos = TextPosition::Before) {
    tokens.frames = 5;
    tokens.height = 10;
    tokens.width = 11;  // 110 tokens per frame: unaligned with 64-token blocks
    tokens.text_position = pos;
    tokens.text_tokens = tokens.text_valid = pos == TextPosition::None ? 0 : 70;
    grid = make_block_grid(tokens, 64);
    n = grid.num_video_blocks;
    len = core::video_block_lengths(grid);
  }
  CallInfo call(int step, int layer = 0, int slot = 0, int batch = 1) const {
    CallInfo c;
    c.step = step;
    c.num_steps = 50;
    c.layer = layer;
    c.slot_begin = slot;
    c.batch = batch;
    c.num_heads = H;
    c.head_dim = 64;
    c.tokens = &tokens;
    c.grid = &grid;
    return c;
  }
  // Random counts for `batch` x H maps; -1 where the plan's layout skips a block.
  std::vector<int32_t> counts(std::mt19937& rng, int batch, const Plan* plan = nullptr) const {
    std::vector<int32_t> c(static_cast<size_t>(batch) * H * n * n);
    std::unique_ptr<BlockMask> m;
    if (plan && plan->groups[0].layout) m = std::make_unique<BlockMask>(to_mask(*plan->groups[0].layout));
    const int fv = grid.first_video_block;
    for (int b = 0; b < batch; ++b)
      for (int h = 0; h < H; ++h)
        for (int i = 0; i < n; ++i)
          for (int j = 0; j < n; ++j) {
            const bool live = !m || m->at(b, h, fv + i, fv + j);
            c[((size_t(b) * H + h) * n + i) * n + j] =
                live ? int32_t(rng() % (len[i] * len[j] + 1)) : -1;
          }
    return c;
  }
  std::vector<float> as_map(const int32_t* c) const {
    std::vector<float> s(static_cast<size_t>(n) * n);
    for (int i = 0; i < n; ++i)
      for (int j = 0; j < n; ++j) s[i * n + j] = float(double(c[i * n + j]) / (len[i] * len[j]));
    return s;
  }
};

ModditConfig small_config() {
  ModditConfig c;
  c.block_size = 64;
  c.warmup_steps = 4;
  c.interval = 3;
  c.top_k = 3;
  c.tau_e = 0.3;
  return c;
}

}  // namespace

TEST(Schedule, FiftyStepsWarmupTwelveIntervalTen) {
  std::vector<int> dense, record, sparse, refresh;
  for (int t = 0; t < 50; ++t) {
    switch (core::schedule_kind(t, 12, 10)) {
      case CallKind::Dense: dense.push_back(t); break;
      case CallKind::Record: record.push_back(t); break;
      case CallKind::Sparse: sparse.push_back(t); break;
      case CallKind::Refresh: refresh.push_back(t); break;
    }
  }
  EXPECT_EQ(dense, (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
  EXPECT_EQ(record, (std::vector<int>{10, 11}));
  EXPECT_EQ(refresh, (std::vector<int>{22, 32, 42}));
  EXPECT_EQ(sparse.size(), 35u);
  EXPECT_EQ(sparse.front(), 12);
  EXPECT_EQ(sparse.back(), 49);

  // The policy's plans follow the same schedule.
  Fixture fx;
  ModditConfig cfg;
  cfg.block_size = 64;
  ModditPolicy policy(cfg, 1, fx.H);
  for (int t = 0; t < 50; ++t) {
    const Plan p = policy.plan(fx.call(t));
    EXPECT_EQ(p.kind, core::schedule_kind(t, 12, 10)) << t;
    EXPECT_EQ(p.record_map, p.kind == CallKind::Record || p.kind == CallKind::Refresh) << t;
    ASSERT_EQ(p.groups.size(), 1u);
    EXPECT_EQ(p.groups[0].heads, (std::vector<int32_t>{0, 1}));
    EXPECT_EQ(p.groups[0].layout.has_value(),
              p.kind == CallKind::Sparse || p.kind == CallKind::Refresh);
  }
}

// The map statistic of the config reaches every plan that records a map.
TEST(ModditPolicy, PlansCarryTheConfiguredMapStatistic) {
  Fixture fx;
  for (const char* stat : {"eq2", "mass"}) {
    ModditConfig cfg;
    cfg.block_size = 64;
    cfg.warmup_steps = 4;
    cfg.interval = 3;
    cfg.map_statistic = stat;
    ModditPolicy policy(cfg, 1, fx.H);
    std::mt19937 rng(5);
    int recorded = 0;
    for (int t = 0; t < 10; ++t) {
      const Plan p = policy.plan(fx.call(t));
      if (!p.record_map) continue;
      ++recorded;
      EXPECT_STREQ(to_string(p.map_statistic), stat) << t;
      const std::vector<int32_t> c = fx.counts(rng, 1, &p);
      policy.observe(fx.call(t), p, c.data());
    }
    EXPECT_EQ(recorded, 3) << stat;  // steps 2, 3 (records) and 7 (refresh)
  }
}

TEST(ModditPolicy, ReferencesPredictionAndMaskedFusion) {
  std::mt19937 rng(31);
  Fixture fx;
  const ModditConfig cfg = small_config();
  ModditPolicy policy(cfg, 2, fx.H);
  const int n = fx.n, H = fx.H;
  const size_t nn = size_t(n) * n;
  EXPECT_TRUE(policy.fused_map(1, 0, 0).empty());

  // Steps 2 and 3 record the exact maps.
  std::vector<std::vector<int32_t>> rec;
  for (int t = 0; t < 4; ++t) {
    const Plan p = policy.plan(fx.call(t, 1));
    if (!p.record_map) continue;
    rec.push_back(fx.counts(rng, 1));
    policy.observe(fx.call(t, 1), p, rec.back().data());
  }
  ASSERT_EQ(rec.size(), 2u);
  ASSERT_EQ(policy.fits().size(), size_t(2 * H));
  for (const FitRecord& f : policy.fits()) {
    EXPECT_EQ(f.layer, 1);
    EXPECT_GT(f.nae, 0.0);
    EXPECT_LT(f.nae, 1.0);
  }
  for (int h = 0; h < H; ++h) {
    const std::vector<float> want = fx.as_map(rec[1].data() + h * nn);
    const std::vector<float> got = policy.fused_map(1, 0, h);
    ASSERT_EQ(got.size(), nn);
    for (size_t k = 0; k < nn; ++k) EXPECT_NEAR(got[k], want[k], 1e-3 * want[k] + 1e-7);
    EXPECT_EQ(policy.fitted_map(1, 0, h).size(), nn);
  }

  // The reference fits, recomputed here, predict the masks of the sparse steps.
  const core::PatternBasis basis = core::make_pattern_basis(fx.grid, fx.tokens);
  const int p = basis.num_params();
  auto fit_of = [&](const std::vector<int32_t>& c, int h) {
    std::vector<float> s = fx.as_map(c.data() + h * nn);
    std::vector<double> x(p), nae(1);
    core::fit_maps(*core::ridge_factor(basis, cfg.ridge_lambda), s.data(), 1, x.data(), nae.data());
    return x;
  };
  core::VideoMaskBuilder builder(basis, fx.len);
  for (int t = 4; t < 7; ++t) {
    const Plan plan = policy.plan(fx.call(t, 1));
    ASSERT_EQ(plan.kind, CallKind::Sparse);
    const BlockMask full = to_mask(*plan.groups[0].layout);
    for (int h = 0; h < H; ++h) {
      const std::vector<double> xa = fit_of(rec[0], h), xb = fit_of(rec[1], h);
      std::vector<double> pred(basis.num_lines());
      core::predict_linear(xa.data(), 2, xb.data(), 3, t, basis.num_lines(), pred.data());
      std::vector<uint8_t> keep(basis.num_frames());
      for (int f = 0; f < basis.num_frames(); ++f)
        keep[f] = xa[basis.frame_index(f)] <= cfg.tau_e && xb[basis.frame_index(f)] <= cfg.tau_e;
      std::vector<uint8_t> want(nn);
      builder.build(pred.data(), keep.data(), cfg.top_k, cfg.target_density, want.data());
      EXPECT_EQ(policy.video_mask(1, 0, h), want) << "step " << t << " head " << h;
      for (int i = 0; i < n; ++i)
        for (int j = 0; j < n; ++j)
          EXPECT_EQ(full.at(0, h, fx.grid.first_video_block + i, fx.grid.first_video_block + j),
                    want[i * n + j]);
    }
  }

  // Step 7 refreshes: new values on live blocks, the old fused map elsewhere.
  std::vector<std::vector<float>> before;
  for (int h = 0; h < H; ++h) before.push_back(policy.fused_map(1, 0, h));
  const Plan plan = policy.plan(fx.call(7, 1));
  ASSERT_EQ(plan.kind, CallKind::Refresh);
  ASSERT_TRUE(plan.record_map && plan.groups[0].layout);
  const std::vector<int32_t> c = fx.counts(rng, 1, &plan);
  policy.observe(fx.call(7, 1), plan, c.data());
  int kept = 0, replaced = 0;
  for (int h = 0; h < H; ++h) {
    const std::vector<float> got = policy.fused_map(1, 0, h);
    const std::vector<float> fresh = fx.as_map(c.data() + h * nn);
    for (size_t k = 0; k < nn; ++k) {
      if (c[h * nn + k] < 0) {
        EXPECT_EQ(got[k], before[h][k]);
        ++kept;
      } else {
        EXPECT_NEAR(got[k], fresh[k], 1e-3 * fresh[k] + 1e-7);
        ++replaced;
      }
    }
  }
  EXPECT_GT(kept, 0);
  EXPECT_GT(replaced, 0);
  EXPECT_EQ(policy.fits().size(), size_t(3 * H));
  EXPECT_EQ(policy.fits().back().step, 7);
  EXPECT_GT(policy.state_bytes(), int64_t(H * nn * 2));
}

TEST(ModditPolicy, DenseRefreshFusesOnThePredictedMask) {
  std::mt19937 rng(32);
  Fixture fx(TextPosition::After);
  ModditConfig cfg = small_config();
  cfg.refresh = "dense";
  ModditPolicy policy(cfg, 1, fx.H);
  const size_t nn = size_t(fx.n) * fx.n;
  for (int t = 2; t < 4; ++t) {
    const Plan p = policy.plan(fx.call(t));
    const auto c = fx.counts(rng, 1);
    policy.observe(fx.call(t), p, c.data());
  }
  std::vector<float> before = policy.fused_map(0, 0, 1);
  const Plan plan = policy.plan(fx.call(7));
  EXPECT_EQ(plan.kind, CallKind::Refresh);
  EXPECT_TRUE(plan.record_map);
  EXPECT_FALSE(plan.groups[0].layout.has_value());  // dense over the whole row
  const auto c = fx.counts(rng, 1);                   // every block computed
  policy.observe(fx.call(7), plan, c.data());
  const std::vector<uint8_t> mask = policy.video_mask(0, 0, 1);
  const std::vector<float> got = policy.fused_map(0, 0, 1);
  const std::vector<float> fresh = fx.as_map(c.data() + nn);
  for (size_t k = 0; k < nn; ++k) {
    if (mask[k])
      EXPECT_NEAR(got[k], fresh[k], 1e-3 * fresh[k] + 1e-7);
    else
      EXPECT_EQ(got[k], before[k]);
  }
}

TEST(ModditPolicy, DenseLayersAreAlwaysDenseAndKeepNoState) {
  std::mt19937 rng(33);
  Fixture fx;
  ModditConfig cfg = small_config();
  cfg.dense_layers = {0};
  ModditPolicy policy(cfg, 2, fx.H);
  for (int t = 0; t < 12; ++t) {
    const Plan p = policy.plan(fx.call(t, 0));
    EXPECT_EQ(p.kind, CallKind::Dense);
    EXPECT_FALSE(p.record_map);
    EXPECT_FALSE(p.groups[0].layout.has_value());
    const auto c = fx.counts(rng, 1);
    policy.observe(fx.call(t, 0), p, c.data());
  }
  EXPECT_TRUE(policy.fits().empty());
  EXPECT_TRUE(policy.fused_map(0, 0, 0).empty());
  EXPECT_EQ(policy.state_bytes(), 0);
  EXPECT_EQ(policy.plan(fx.call(2, 1)).kind, CallKind::Record);
  ModditConfig bad = cfg;
  bad.dense_layers = {2};
  EXPECT_THROW(ModditPolicy(bad, 2, fx.H), Error);
}

TEST(ModditPolicy, RejectsTopKBeyondTheGridAndMismatchedCalls) {
  Fixture fx;
  ModditConfig cfg = small_config();
  cfg.top_k = 3 * fx.n;  // 3n - 1 lines exist
  ModditPolicy policy(cfg, 1, fx.H);
  try {
    policy.plan(fx.call(5));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("top_k"), std::string::npos) << e.what();
  }
  CallInfo c = fx.call(5);
  c.num_heads = 3;
  EXPECT_THROW(policy.plan(c), Error);
  c = fx.call(5, 1);
  EXPECT_THROW(policy.plan(c), Error);  // layer out of range
  ModditConfig c128 = small_config();
  c128.block_size = 128;
  ModditPolicy p128(c128, 1, fx.H);
  EXPECT_THROW(p128.plan(fx.call(5)), Error);  // grid made with 64
}
