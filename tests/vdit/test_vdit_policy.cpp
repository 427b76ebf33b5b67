// Inference: head fusion, skipped heads, outputs against per-head references.
#include <gtest/gtest.h>

#include <cmath>

#include "moddit/backend.hpp"
#include "moddit/error.hpp"
#include "moddit/session.hpp"
#include "moddit/sparse_vdit.hpp"
#include "vdit_test_util.hpp"

using namespace moddit;

namespace {

// A config whose heads cycle through every mode, for 2 layers and 2 searched steps.
VditConfig mixed_config(const TokenLayout& t, int heads, int head_dim) {
  VditConfig c;
  c.shape = {2, heads, head_dim, 4, 64, t};
  c.steps = {0, 2};
  const int n = make_block_grid(t, 64).num_video_blocks;
  for (int s = 0; s < 2; ++s) {
    std::vector<std::vector<VditHeadChoice>> layers;
    for (int l = 0; l < 2; ++l) {
      std::vector<VditHeadChoice> hs;
      for (int h = 0; h < heads; ++h) {
        VditHeadChoice x;
        x.mode = static_cast<VditMode>((h + s + l) % kNumVditModes);
        x.window = x.mode == VditMode::Diagonal ? 1 : x.mode == VditMode::MultiDiagonal ? 5 : 0;
        if (x.mode == VditMode::VerticalStripe) x.stripes = {0, int32_t(n - 1)};
        hs.push_back(x);
      }
      layers.push_back(hs);
    }
    c.choices.push_back(layers);
  }
  return c;
}

double rel_diff(const float* a, const float* b, int64_t count) {
  double e = 0, r = 0;
  for (int64_t i = 0; i < count; ++i) {
    e += double(a[i] - b[i]) * (a[i] - b[i]);
    r += double(b[i]) * b[i];
  }
  return std::sqrt(e / std::max(r, 1e-300));
}

}  // namespace

TEST(VditPolicy, GroupsHeadsByModeAndNeverLaunchesSkippedHeads) {
  const TokenLayout t = vdit_test::layout(3, 9, 10, 50, 41, TextPosition::After);
  const int H = 7, D = 16, B = 2;
  const VditConfig config = mixed_config(t, H, D);
  auto cpu = make_cpu_backend(2);
  SessionOptions so;
  so.num_steps = 4;
  so.num_layers = 2;
  so.num_heads = H;
  so.head_dim = D;
  so.block_size = 64;
  Session session(t, so, cpu, make_sparse_vdit_policy(config));
  vdit_test::RandomTrajectory traj(t, 4, 2, H, D, B, 3);
  const BlockGrid g = make_block_grid(t, 64);
  const int64_t N = t.total_tokens();

  for (int step : {0, 1, 3}) {
    session.begin_step(step);
    for (int layer = 0; layer < 2; ++layer) {
      HostTensor q, k, v;
      traj.load(step, layer, q, k, v);
      HostTensor out(DType::F32, B, N, H, D);
      for (int64_t i = 0; i < out.numel(); ++i) out.f32()[i] = 1.f;  // skipped heads must be zeroed
      const int64_t before = cpu->launches();
      session.attention(layer, q.view(), k.view(), v.view(), out.view());
      const auto heads = config.layer_choices(step, layer);
      int modes_present = 0;
      for (VditMode m : {VditMode::Full, VditMode::Diagonal, VditMode::MultiDiagonal,
                         VditMode::VerticalStripe})
        for (const auto& c : heads)
          if (c.mode == m) {
            ++modes_present;
            break;
          }
      EXPECT_EQ(cpu->launches() - before, modes_present) << "one launch per mode group";
      EXPECT_EQ(session.history().back().launches, modes_present);

      // Every head against its own single-head reference call.
      for (int h = 0; h < H; ++h) {
        HostTensor ref(DType::F32, B, N, H, D);
        if (heads[h].mode != VditMode::Skip) {
          const std::vector<int32_t> one = {h};
          const BlockLayout l = vdit_group_layout({&heads[h]}, B, t, g);
          AttentionCall call;
          call.q = q.view();
          call.k = k.view();
          call.v = v.view();
          call.out = ref.view();
          call.tokens = &t;
          call.block_size = 64;
          call.heads = &one;
          call.layout = &l;
          cpu->attention(call);
        }
        std::vector<float> got, want;
        for (int b = 0; b < B; ++b)
          for (int64_t n = 0; n < t.pad_begin(); ++n)  // real rows
            for (int d = 0; d < D; ++d) {
              const int64_t i = ((b * N + n) * H + h) * D + d;
              got.push_back(out.f32()[i]);
              want.push_back(ref.f32()[i]);
            }
        if (heads[h].mode == VditMode::Skip) {
          for (float x : got) ASSERT_EQ(x, 0.f) << "skipped head " << h << " not zero";
        } else {
          EXPECT_LT(rel_diff(got.data(), want.data(), int64_t(got.size())), 1e-5)
              << "head " << h << " mode " << to_string(heads[h].mode);
        }
      }
    }
  }
}

TEST(VditPolicy, RefusesAConfigForAnotherShape) {
  const TokenLayout t = vdit_test::layout(3, 9, 10);
  const VditConfig config = mixed_config(t, 4, 16);
  auto cpu = make_cpu_backend(1);
  SessionOptions so;
  so.num_steps = 4;
  so.num_layers = 2;
  so.num_heads = 4;
  so.head_dim = 16;
  so.block_size = 64;
  const TokenLayout other = vdit_test::layout(3, 9, 11);
  Session session(other, so, cpu, make_sparse_vdit_policy(config));
  vdit_test::RandomTrajectory traj(other, 1, 1, 4, 16, 1, 3);
  HostTensor q, k, v;
  traj.load(0, 0, q, k, v);
  HostTensor out(DType::F32, 1, other.total_tokens(), 4, 16);
  session.begin_step(0);
  try {
    session.attention(0, q.view(), k.view(), v.view(), out.view());
    FAIL() << "a config searched for another token layout was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("searched for"), std::string::npos) << e.what();
  }
  EXPECT_EQ(cpu->launches(), 0);
}
