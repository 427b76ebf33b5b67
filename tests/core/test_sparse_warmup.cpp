// MOD-DiT's sparse warm-up (ModditConfig::sparse_warmup_steps): the first steps
// run the evaluation's static mask instead of dense attention; everything from
// step sparse_warmup_steps on is the unchanged schedule.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "eval/baselines.hpp"
#include "fake_backend.hpp"
#include "moddit/host_tensor.hpp"
#include "moddit/moddit_policy.hpp"
#include "moddit/session.hpp"

using namespace moddit;

namespace {

struct Shape {
  TokenLayout tokens;
  BlockGrid grid;
  explicit Shape(int frames = 6, int text = 70) {
    tokens.frames = frames;
    tokens.height = 10;
    tokens.width = 11;  // 110 tokens per frame: unaligned with 64-token blocks
    tokens.text_position = TextPosition::Before;
    tokens.text_tokens = tokens.text_valid = text;
    grid = make_block_grid(tokens, 64);
  }
  CallInfo call(int step, int layer = 0, int batch = 1, int heads = 2) const {
    CallInfo c;
    c.step = step;
    c.num_steps = 20;
    c.layer = layer;
    c.batch = batch;
    c.num_heads = heads;
    c.head_dim = 64;
    c.tokens = &tokens;
    c.grid = &grid;
    return c;
  }
};

ModditConfig warm_config(int sparse_steps, const std::string& mask = "radial") {
  ModditConfig c;
  c.block_size = 64;
  c.warmup_steps = 6;
  c.interval = 3;
  c.top_k = 3;
  c.sparse_warmup_steps = sparse_steps;
  c.sparse_warmup_mask = mask;
  c.sparse_warmup_density = 0.3;
  return c;
}

// The layout the evaluation's static-mask baseline runs for the same call.
BlockLayout eval_layout(core::StaticMaskKind kind, const CallInfo& call) {
  eval::StaticMaskPolicy baseline(kind, 0.3, 0);
  return *baseline.plan(call).groups.at(0).layout;
}

// Half of the largest video block pair, as a share of all video pairs.
double half_block_pair(const TokenLayout& tokens) {
  const double video = double(tokens.frames) * tokens.height * tokens.width;
  return 0.5 * 64.0 * 64.0 / (video * video);
}

}  // namespace

TEST(SparseWarmup, StaticStepsRunTheEvalMaskThenTheScheduleIsUnchanged) {
  for (const char* mask : {"radial", "window"}) {
    SCOPED_TRACE(mask);
    const core::StaticMaskKind kind =
        std::string(mask) == "radial" ? core::StaticMaskKind::Radial : core::StaticMaskKind::Window;
    Shape s;
    ModditPolicy warm(warm_config(3, mask), 2, 2);
    ModditPolicy plain(warm_config(0, mask), 2, 2);
    for (int t = 0; t < 3; ++t) {
      const Plan p = warm.plan(s.call(t));
      EXPECT_EQ(p.kind, CallKind::Dense);
      EXPECT_FALSE(p.record_map);
      ASSERT_EQ(p.groups.size(), 1u);
      EXPECT_EQ(p.groups[0].label, "static");
      EXPECT_EQ(p.groups[0].heads, (std::vector<int32_t>{0, 1}));
      ASSERT_TRUE(p.groups[0].layout.has_value());
      const BlockLayout& l = *p.groups[0].layout;
      const BlockLayout want = eval_layout(kind, s.call(t));
      EXPECT_EQ(l.row_ptr, want.row_ptr);
      EXPECT_EQ(l.col_idx, want.col_idx);
      EXPECT_NEAR(video_density(l, s.grid), 0.3, half_block_pair(s.tokens));
      EXPECT_FALSE(warm.plain_dense(s.call(t)));
      EXPECT_EQ(warm.kind_of(t, 0), CallKind::Dense);
      EXPECT_TRUE(plain.plain_dense(s.call(t)));
    }
    // Step sparse_warmup_steps and the rest of the warm-up: dense, plain.
    for (int t = 3; t < 4; ++t) {
      const Plan p = warm.plan(s.call(t));
      EXPECT_FALSE(p.groups[0].layout.has_value());
      EXPECT_TRUE(warm.plain_dense(s.call(t)));
    }
    // The record steps m-2, m-1: dense with the map, as without the option.
    for (int t = 4; t < 6; ++t) {
      const Plan p = warm.plan(s.call(t)), q = plain.plan(s.call(t));
      EXPECT_EQ(p.kind, CallKind::Record);
      EXPECT_TRUE(p.record_map);
      EXPECT_FALSE(p.groups[0].layout.has_value());
      EXPECT_EQ(p.kind, q.kind);
    }
    EXPECT_EQ(warm.kind_of(6, 0), CallKind::Sparse);
  }
}

TEST(SparseWarmup, DenseLayersStayDense) {
  Shape s;
  ModditConfig cfg = warm_config(2);
  cfg.dense_layers = {1};
  ModditPolicy policy(cfg, 2, 2);
  const Plan p = policy.plan(s.call(0, 1));
  EXPECT_FALSE(p.groups[0].layout.has_value());
  EXPECT_TRUE(policy.plain_dense(s.call(0, 1)));
  EXPECT_TRUE(policy.plan(s.call(0, 0)).groups[0].layout.has_value());
}

TEST(SparseWarmup, AnotherCallShapeRebuildsTheLayout) {
  Shape a, b(4, 70), c(6, 0);  // b: fewer frames; c: the same video, no text
  ModditPolicy policy(warm_config(2), 1, 2);
  const auto layout_of = [&](const Shape& s, int batch) {
    return *policy.plan(s.call(0, 0, batch)).groups[0].layout;
  };
  for (const Shape* s : {&a, &b, &c, &a}) {
    const BlockLayout l = layout_of(*s, 1);
    const BlockLayout want = eval_layout(core::StaticMaskKind::Radial, s->call(0));
    EXPECT_EQ(l.num_q_blocks, s->grid.num_blocks());
    EXPECT_EQ(l.row_ptr, want.row_ptr);
    EXPECT_EQ(l.col_idx, want.col_idx);
  }
  const BlockLayout two = layout_of(a, 2);  // batch 2 (CFG): both items, same mask
  EXPECT_EQ(two.batch, 2);
  EXPECT_EQ(two.rows(), 2 * 2 * int64_t(a.grid.num_blocks()));
  EXPECT_EQ(two.row_ptr, eval_layout(core::StaticMaskKind::Radial, a.call(0, 0, 2)).row_ptr);
}

// Through a Session on the CPU backend: the static steps equal the naive
// reference attention run with the eval's static layout; the whole schedule runs.
TEST(SparseWarmup, SessionOnTheCpuBackendMatchesTheReferenceWithThatLayout) {
  TokenLayout tokens;
  tokens.frames = 4;
  tokens.height = 7;
  tokens.width = 9;  // 63 tokens per frame: frames unaligned with 64-token blocks
  tokens.text_tokens = 40;
  tokens.text_valid = 33;
  tokens.text_position = TextPosition::Before;
  SessionOptions o;
  o.num_steps = 10;
  o.num_layers = 1;
  o.num_heads = 2;
  o.head_dim = 16;
  o.block_size = 64;
  ModditConfig cfg;
  cfg.block_size = 64;
  cfg.eta = 1e-2;
  cfg.warmup_steps = 5;
  cfg.interval = 3;
  cfg.target_density = 0.5;
  cfg.sparse_warmup_steps = 2;
  cfg.sparse_warmup_density = 0.3;
  auto warm = std::make_shared<ModditPolicy>(cfg, 1, o.num_heads);
  auto baseline = std::make_shared<eval::StaticMaskPolicy>(core::StaticMaskKind::Radial, 0.3, 0);
  Session cpu(tokens, o, make_cpu_backend(1), warm);
  Session ref(tokens, o, std::make_shared<moddit_test::FakeBackend>(), baseline);
  const int64_t N = tokens.total_tokens();
  std::mt19937 rng(17);
  std::normal_distribution<float> nd(0.f, 1.5f);
  for (int step = 0; step < o.num_steps; ++step) {
    cpu.begin_step(step);
    HostTensor q(DType::F32, 2, N, 2, 16), k(DType::F32, 2, N, 2, 16), v(DType::F32, 2, N, 2, 16);
    for (HostTensor* t : {&q, &k, &v})
      for (int64_t i = 0; i < t->numel(); ++i) t->f32()[i] = nd(rng);
    HostTensor oc(DType::F32, 2, N, 2, 16);
    cpu.attention(0, q.view(), k.view(), v.view(), oc.view());
    if (step >= cfg.sparse_warmup_steps) continue;
    ref.begin_step(step);
    HostTensor orf(DType::F32, 2, N, 2, 16);
    ref.attention(0, q.view(), k.view(), v.view(), orf.view());
    double err = 0, norm = 0;
    for (int64_t i = 0; i < oc.numel(); ++i) {
      err += std::pow(double(oc.f32()[i]) - orf.f32()[i], 2);
      norm += std::pow(double(orf.f32()[i]), 2);
    }
    EXPECT_LT(std::sqrt(err / norm), 1e-5) << "step " << step;
    EXPECT_DOUBLE_EQ(cpu.history().back().density, ref.history().back().density);
    EXPECT_LT(cpu.history().back().density, 1.0);
  }
  const auto& hist = cpu.history();
  ASSERT_EQ(hist.size(), size_t(o.num_steps));
  EXPECT_EQ(hist[0].kind, CallKind::Dense);
  EXPECT_EQ(hist[2].density, 1.0);  // step sparse_warmup_steps: dense
  EXPECT_EQ(hist[2].kind, CallKind::Dense);
  EXPECT_EQ(hist[3].kind, CallKind::Record);
  EXPECT_EQ(hist[4].kind, CallKind::Record);
  EXPECT_EQ(hist[5].kind, CallKind::Sparse);
  EXPECT_LT(hist[5].density, 1.0);
}
