// A Session with the MOD-DiT policy on the CUDA backend through warm-up, records,
// sparse steps and a masked refresh (the C++ twin of tests/python/test_gpu.py's
// session test): the kinds follow the schedule, the policy's state stays
// consistent with the GPU's maps, and the last sparse step equals the CPU
// reference run with the policy's own latest masks.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "gpu_test_util.hpp"
#include "moddit/moddit_policy.hpp"
#include "moddit/session.hpp"
#include "moddit/trajectory.hpp"

namespace moddit::gputest {
namespace {

TEST(CudaSession, ModditScheduleWithRefreshFollowsItsMasks) {
  MODDIT_REQUIRE_GPU();
  SyntheticSpec spec;
  spec.frames = 4;
  spec.height = 16;
  spec.width = 32;  // N = 2048: 16 blocks of 128
  spec.num_steps = 8;
  spec.layers = 1;
  spec.heads = 4;
  spec.head_dim = 128;
  spec.seed = std::random_device{}();
  auto src = make_synthetic(spec);
  const TokenLayout tokens = src->info().tokens;
  const int64_t N = tokens.total_tokens();
  const int H = spec.heads, D = spec.head_dim;
  const size_t numel = size_t(N) * H * D;

  auto gpu = cuda_backend();
  ModditConfig cfg;
  cfg.warmup_steps = 3;  // records at 1, 2; sparse 3-5; refresh 6; sparse 7
  cfg.interval = 3;
  cfg.target_density = 0.3;
  auto policy = std::make_shared<ModditPolicy>(cfg, 1, H);
  SessionOptions opt;
  opt.num_steps = 8;
  opt.num_heads = H;
  opt.head_dim = D;
  Session session(tokens, opt, gpu, policy);

  auto dq = gpu->allocate(numel * 2), dk = gpu->allocate(numel * 2), dv = gpu->allocate(numel * 2),
       dout = gpu->allocate(numel * 2);
  auto view = [&](const std::shared_ptr<void>& p) {
    return make_view(p.get(), DType::BF16, Layout::NHD, 1, N, H, D, Device::CUDA);
  };
  HostTensor q, k, v;
  std::vector<std::vector<float>> last(3);
  for (int step = 0; step < 8; ++step) {
    session.begin_step(step);
    src->load(step, 0, q, k, v);
    int t = 0;
    for (HostTensor* x : {&q, &k, &v}) {
      const HostTensor b = x->to(DType::BF16);
      gpu->copy_from_host((t == 0 ? dq : t == 1 ? dk : dv).get(), b.bytes.data(), numel * 2);
      const HostTensor f = b.to(DType::F32);  // the values the GPU sees, for the reference
      last[t++].assign(f.f32(), f.f32() + numel);
    }
    session.attention(0, view(dq), view(dk), view(dv), view(dout));
  }
  gpu->synchronize();
  const auto& hist = session.history();
  ASSERT_EQ(hist.size(), 8u);
  EXPECT_EQ(hist[0].kind, CallKind::Dense);
  EXPECT_EQ(hist[1].kind, CallKind::Record);
  EXPECT_EQ(hist[2].kind, CallKind::Record);
  EXPECT_EQ(hist[3].kind, CallKind::Sparse);
  EXPECT_EQ(hist[6].kind, CallKind::Refresh);
  EXPECT_EQ(hist[7].kind, CallKind::Sparse);
  EXPECT_LT(hist[7].density, 0.6);
  EXPECT_GT(policy->state_bytes(), 0);

  // The last step against the CPU reference with the policy's latest masks.
  const BlockGrid grid = make_block_grid(tokens, 128);
  const int n = grid.num_video_blocks;
  BlockMask mask(1, H, grid.num_blocks(), grid.num_blocks(), false);
  for (int h = 0; h < H; ++h) {
    const std::vector<uint8_t> vm = policy->video_mask(0, 0, h);
    ASSERT_EQ(vm.size(), size_t(n) * n);
    place_video_mask(vm.data(), grid, mask, 0, h);
  }
  const BlockLayout layout = to_layout(mask);
  auto cpu = make_cpu_backend(0);
  std::vector<float> ref(numel);
  AttentionCall c;
  c.q = make_view(last[0].data(), DType::F32, Layout::NHD, 1, N, H, D, Device::CPU);
  c.k = make_view(last[1].data(), DType::F32, Layout::NHD, 1, N, H, D, Device::CPU);
  c.v = make_view(last[2].data(), DType::F32, Layout::NHD, 1, N, H, D, Device::CPU);
  c.out = make_view(ref.data(), DType::F32, Layout::NHD, 1, N, H, D, Device::CPU);
  c.tokens = &tokens;
  c.layout = &layout;
  cpu->attention(c);
  std::vector<uint16_t> bits(numel);
  gpu->copy_to_host(bits.data(), dout.get(), numel * 2);
  std::vector<float> got(numel);
  for (size_t i = 0; i < numel; ++i) got[i] = bf16_to_f32(bits[i]);
  EXPECT_LT(rel_l2(got, ref), 2e-2);
}

// The same trajectory through two sessions on the GPU, the MOD-DiT step on the
// device and on the host: the same kinds, densities, masks and fits.
// The device and the host MOD-DiT step on the same GPU maps, for a map statistic.
void expect_device_step_equals_host_step(const char* map_statistic) {
  SCOPED_TRACE(map_statistic);
  SyntheticSpec spec;
  spec.frames = 5;
  spec.height = 10;
  spec.width = 30;  // 300 tokens per frame: frames straddle blocks; N = 1500
  spec.num_steps = 9;
  spec.layers = 2;
  spec.heads = 3;
  spec.head_dim = 64;
  spec.seed = std::random_device{}();
  auto src = make_synthetic(spec);
  const TokenLayout tokens = src->info().tokens;
  const int64_t N = tokens.total_tokens();
  const int H = spec.heads, D = spec.head_dim, B = 2;  // CFG as batch 2
  const size_t numel = size_t(B) * N * H * D;
  auto gpu = cuda_backend();
  ModditConfig cfg;
  cfg.block_size = 64;
  cfg.warmup_steps = 4;  // records at 2, 3; sparse 4, 5; refresh 6; sparse 7; refresh 8
  cfg.interval = 2;
  cfg.target_density = 0.3;
  cfg.map_statistic = map_statistic;
  ModditConfig host_cfg = cfg;
  host_cfg.device_step = false;
  auto pd = std::make_shared<ModditPolicy>(cfg, 2, H);
  auto ph = std::make_shared<ModditPolicy>(host_cfg, 2, H);
  SessionOptions opt;
  opt.num_steps = 9;
  opt.num_layers = 2;
  opt.num_heads = H;
  opt.head_dim = D;
  opt.block_size = 64;
  Session sd(tokens, opt, gpu, pd), sh(tokens, opt, gpu, ph);
  auto dq = gpu->allocate(numel * 2), dk = gpu->allocate(numel * 2), dv = gpu->allocate(numel * 2),
       od = gpu->allocate(numel * 2), oh = gpu->allocate(numel * 2);
  auto view = [&](const std::shared_ptr<void>& p) {
    return make_view(p.get(), DType::F16, Layout::HND, B, N, H, D, Device::CUDA);
  };
  HostTensor q, k, v;
  for (int step = 0; step < 9; ++step) {
    sd.begin_step(step);
    sh.begin_step(step);
    for (int layer = 0; layer < 2; ++layer) {
      src->load(step, layer, q, k, v);
      int t = 0;
      for (HostTensor* x : {&q, &k, &v}) {
        // Batch item 1 (the other CFG branch) is item 0 scaled: its own state.
        const HostTensor f = x->to(DType::F32);  // [1, N, H, D]
        std::vector<uint16_t> bits(numel);
        const size_t half = numel / B;
        for (int64_t n = 0; n < N; ++n)
          for (int hh = 0; hh < H; ++hh)
            for (int d = 0; d < D; ++d) {
              const float val = f.f32()[(size_t(n) * H + hh) * D + d];
              const size_t at = (size_t(hh) * N + n) * D + d;  // HND
              bits[at] = f32_to_f16(val);
              bits[half + at] = f32_to_f16(0.7f * val);
            }
        gpu->copy_from_host((t == 0 ? dq : t == 1 ? dk : dv).get(), bits.data(), numel * 2);
        ++t;
      }
      sd.attention(layer, view(dq), view(dk), view(dv), view(od));
      sh.attention(layer, view(dq), view(dk), view(dv), view(oh));
    }
  }
  const auto& hd = sd.history();
  const auto& hh = sh.history();
  ASSERT_EQ(hd.size(), hh.size());
  for (size_t i = 0; i < hd.size(); ++i) {
    EXPECT_EQ(hd[i].kind, hh[i].kind) << i;
    EXPECT_NEAR(hd[i].density, hh[i].density, 1e-6) << i;
  }
  EXPECT_EQ(hd.back().kind, CallKind::Refresh);
  EXPECT_LT(hd.back().density, 0.9);
  for (int layer = 0; layer < 2; ++layer)
    for (int slot = 0; slot < B; ++slot)
      for (int h = 0; h < H; ++h) {
        EXPECT_EQ(pd->video_mask(layer, slot, h), ph->video_mask(layer, slot, h));
        EXPECT_EQ(pd->fused_map(layer, slot, h), ph->fused_map(layer, slot, h));
      }
  ASSERT_EQ(pd->fits().size(), ph->fits().size());
  std::vector<uint16_t> a(numel), b(numel);
  gpu->copy_to_host(a.data(), od.get(), numel * 2);
  gpu->copy_to_host(b.data(), oh.get(), numel * 2);
  EXPECT_EQ(a, b);  // the same layouts: the same kernel work, bit for bit
}

TEST(CudaSession, DeviceStepEqualsHostStep) {
  MODDIT_REQUIRE_GPU();
  expect_device_step_equals_host_step("eq2");
}

TEST(CudaSession, DeviceStepEqualsHostStepWithTheMassMap) {
  MODDIT_REQUIRE_GPU();
  expect_device_step_equals_host_step("mass");
}

}  // namespace
}  // namespace moddit::gputest
