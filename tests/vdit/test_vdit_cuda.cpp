// Sparse-vDiT inference on the CUDA backend against the CPU reference (skips
// without a CUDA device): same plan, same outputs per head, skipped heads zero.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "moddit/backend.hpp"
#include "moddit/session.hpp"
#include "moddit/sparse_vdit.hpp"
#include "vdit_test_util.hpp"

using namespace moddit;

TEST(VditCuda, MatchesTheCpuReferenceAndSkipsHeads) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  const TokenLayout t = vdit_test::layout(5, 12, 15, 77, 60, TextPosition::Before);  // P = 180
  const int B = 2, H = 6, D = 64;
  const int64_t N = t.total_tokens();
  for (int bs : {64, 128}) {
    const int n = make_block_grid(t, bs).num_video_blocks;
    VditConfig c;
    c.shape = {1, H, D, 2, bs, t};
    c.steps = {0};
    std::vector<VditHeadChoice> heads = {{VditMode::Full, 0, {}},
                                         {VditMode::Skip, 0, {}},
                                         {VditMode::Diagonal, 1, {}},
                                         {VditMode::MultiDiagonal, 7, {}},
                                         {VditMode::VerticalStripe, 0, {0, int32_t(n / 2)}},
                                         {VditMode::Diagonal, 0, {}}};
    c.choices = {{heads}};

    std::mt19937 rng(5 + bs);
    std::normal_distribution<float> nd(0.f, 1.f);
    const size_t count = size_t(B) * N * H * D;
    std::vector<uint16_t> qb(count), kb(count), vb(count);
    HostTensor q(DType::BF16, B, N, H, D), k = q, v = q;
    for (size_t i = 0; i < count; ++i) {
      qb[i] = f32_to_bf16(nd(rng));
      kb[i] = f32_to_bf16(nd(rng));
      vb[i] = f32_to_bf16(nd(rng));
    }
    std::memcpy(q.bytes.data(), qb.data(), count * 2);
    std::memcpy(k.bytes.data(), kb.data(), count * 2);
    std::memcpy(v.bytes.data(), vb.data(), count * 2);

    SessionOptions so;
    so.num_steps = 2;
    so.num_layers = 1;
    so.num_heads = H;
    so.head_dim = D;
    so.block_size = bs;
    // CPU reference: f32 output from the same bf16 inputs.
    auto cpu = make_cpu_backend(0);
    Session cpu_session(t, so, cpu, make_sparse_vdit_policy(c));
    HostTensor ref(DType::F32, B, N, H, D);
    HostTensor q32 = q.to(DType::F32), k32 = k.to(DType::F32), v32 = v.to(DType::F32);
    cpu_session.begin_step(0);
    cpu_session.attention(0, q32.view(), k32.view(), v32.view(), ref.view());

    auto gpu = make_cuda_backend(0, cuda_options_from_environment());
    auto dq = gpu->allocate(count * 2), dk = gpu->allocate(count * 2), dv = gpu->allocate(count * 2),
         dout = gpu->allocate(count * 2);
    gpu->copy_from_host(dq.get(), qb.data(), count * 2);
    gpu->copy_from_host(dk.get(), kb.data(), count * 2);
    gpu->copy_from_host(dv.get(), vb.data(), count * 2);
    std::vector<uint16_t> ones(count, f32_to_bf16(1.f));
    gpu->copy_from_host(dout.get(), ones.data(), count * 2);
    auto view = [&](void* p) { return make_view(p, DType::BF16, Layout::NHD, B, N, H, D, Device::CUDA, 0); };
    Session gpu_session(t, so, gpu, make_sparse_vdit_policy(c));
    gpu_session.begin_step(0);
    const int64_t before = gpu->launches();
    gpu_session.attention(0, view(dq.get()), view(dk.get()), view(dv.get()), view(dout.get()));
    gpu->synchronize();
    // full, diagonal, multi_diagonal, vertical_stripe groups + one zero fill for the skipped head.
    EXPECT_EQ(gpu->launches() - before, 4 + 1);
    std::vector<uint16_t> out(count);
    gpu->copy_to_host(out.data(), dout.get(), count * 2);

    for (int h = 0; h < H; ++h) {
      double e = 0, r = 0;
      for (int b = 0; b < B; ++b)
        for (int64_t i = 0; i < N; ++i) {
          if (i >= t.pad_begin() && i < t.pad_end()) continue;
          for (int d = 0; d < D; ++d) {
            const size_t idx = ((size_t(b) * N + i) * H + h) * D + d;
            const double g = bf16_to_f32(out[idx]), w = ref.f32()[idx];
            if (heads[h].mode == VditMode::Skip) {
              ASSERT_EQ(g, 0.0);
            }
            e += (g - w) * (g - w);
            r += w * w;
          }
        }
      if (heads[h].mode != VditMode::Skip) {
        EXPECT_LT(std::sqrt(e / r), 2e-2) << "head " << h << " bs " << bs;
      }
    }
  }
}

// The search's candidates on the CUDA backend (bf16 in and out, vdit/candidate_runner)
// against the same search on the CPU reference: same candidates, losses equal up to
// bf16 rounding, and the density-targeted decisions land on the same density.
TEST(VditCuda, SearchOnTheGpuMatchesTheCpuSearch) {
  if (!cuda_available()) GTEST_SKIP() << "no CUDA device";
  const TokenLayout t = vdit_test::layout(4, 12, 16, 40, 30, TextPosition::Before);  // P = 192
  for (int D : {64, 128}) {
    vdit_test::RandomTrajectory traj(t, 2, 2, 3, D, 2, 17u + unsigned(D), /*sink=*/40 + 100);
    VditSearchOptions o;
    o.block_size = 64;
    o.diagonal_windows = {0, 1};
    o.multi_diagonal_windows = {0, 12};
    o.stripe_counts = {1, 2};
    o.stripe_sample_rows = 64;
    auto cpu = make_cpu_backend(2);
    auto gpu = make_cuda_backend(0, cuda_options_from_environment());
    const VditLossTable a = measure_vdit_candidates({&traj}, *cpu, o);
    const VditLossTable b = measure_vdit_candidates({&traj}, *gpu, o);
    ASSERT_EQ(a.scored.size(), b.scored.size());
    double worst = 0;
    for (size_t s = 0; s < a.scored.size(); ++s)
      for (size_t l = 0; l < a.scored[s].size(); ++l)
        for (size_t h = 0; h < a.scored[s][l].size(); ++h) {
          const auto &x = a.scored[s][l][h], &y = b.scored[s][l][h];
          ASSERT_EQ(x.size(), y.size());
          for (size_t c = 0; c < x.size(); ++c) {
            EXPECT_EQ(x[c].choice.mode, y[c].choice.mode);
            EXPECT_EQ(x[c].density, y[c].density);
            // bf16 Q/K/V/O: an absolute floor near 1e-4 of the layer's mean square,
            // a relative 3% above it.
            const double gap = std::abs(x[c].nmse - y[c].nmse);
            worst = std::max(worst, gap / (x[c].nmse + 1e-3));
            EXPECT_LE(gap, 0.03 * x[c].nmse + 2e-4)
                << "D " << D << " step " << s << " layer " << l << " head " << h << " cand " << c;
          }
        }
    for (double target : {0.3, 0.6}) {
      const double da = decide_vdit_for_density(a, target).mean_density();
      const double db = decide_vdit_for_density(b, target).mean_density();
      EXPECT_NEAR(da, db, 0.05) << "target " << target << " D " << D;
    }
    RecordProperty("worst_relative_gap_D" + std::to_string(D), std::to_string(worst));
  }
}
