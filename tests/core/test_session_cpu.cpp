// The whole MOD-DiT schedule through the Session on the real CPU backend, checked
// against the naive fake backend of these tests: same plans, maps and outputs.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "fake_backend.hpp"
#include "moddit/error.hpp"
#include "moddit/host_tensor.hpp"
#include "moddit/moddit_policy.hpp"
#include "moddit/session.hpp"

using namespace moddit;

TEST(SessionCpu, FullScheduleMatchesTheNaiveBackend) {
  TokenLayout tokens;
  tokens.frames = 3;
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
  cfg.warmup_steps = 3;
  cfg.interval = 3;
  cfg.target_density = 0.5;
  auto pol_cpu = std::make_shared<ModditPolicy>(cfg, 1, o.num_heads);
  auto pol_ref = std::make_shared<ModditPolicy>(cfg, 1, o.num_heads);
  Session cpu(tokens, o, make_cpu_backend(1), pol_cpu);
  Session ref(tokens, o, std::make_shared<moddit_test::FakeBackend>(), pol_ref);
  const int64_t N = tokens.total_tokens();
  std::mt19937 rng(61);
  std::normal_distribution<float> nd(0.f, 1.5f);
  for (int step = 0; step < o.num_steps; ++step) {
    cpu.begin_step(step);
    ref.begin_step(step);
    HostTensor q(DType::F32, 2, N, 2, 16), k(DType::F32, 2, N, 2, 16), v(DType::F32, 2, N, 2, 16);
    for (HostTensor* t : {&q, &k, &v})
      for (int64_t i = 0; i < t->numel(); ++i) t->f32()[i] = nd(rng);
    HostTensor oc(DType::F32, 2, N, 2, 16), orf(DType::F32, 2, N, 2, 16);
    cpu.attention(0, q.view(), k.view(), v.view(), oc.view());
    ref.attention(0, q.view(), k.view(), v.view(), orf.view());
    double err = 0, norm = 0;
    for (int64_t i = 0; i < oc.numel(); ++i) {
      err += std::pow(double(oc.f32()[i]) - orf.f32()[i], 2);
      norm += std::pow(double(orf.f32()[i]), 2);
    }
    EXPECT_LT(std::sqrt(err / norm), 1e-5) << "step " << step;
    EXPECT_EQ(cpu.history().back().kind, ref.history().back().kind);
    EXPECT_DOUBLE_EQ(cpu.history().back().density, ref.history().back().density);
    for (int slot = 0; slot < 2; ++slot)
      for (int h = 0; h < 2; ++h) {
        EXPECT_EQ(pol_cpu->video_mask(0, slot, h), pol_ref->video_mask(0, slot, h));
        const auto a = pol_cpu->fused_map(0, slot, h), b = pol_ref->fused_map(0, slot, h);
        ASSERT_EQ(a.size(), b.size());
        for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 3.0 / (64 * 64));
      }
  }
  const auto& hist = cpu.history();
  EXPECT_EQ(hist[1].kind, CallKind::Record);
  EXPECT_EQ(hist[3].kind, CallKind::Sparse);
  EXPECT_EQ(hist[6].kind, CallKind::Refresh);
  // The target within half of the largest block pair (64 of the 189 video tokens).
  EXPECT_NEAR(hist[4].density, 0.5, 0.5 * 64.0 * 64.0 / (189.0 * 189.0));
  EXPECT_EQ(hist[9].kind, CallKind::Refresh);
  EXPECT_EQ(pol_cpu->fits().size(), size_t(4 * 2 * 2));  // steps 1, 2, 6, 9; 2 slots, 2 heads
}
