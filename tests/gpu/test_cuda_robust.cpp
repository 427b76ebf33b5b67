// Issue 13 on the GPU (skipped without one): the CUDA backend's layout cache never
// lets a call skip the check of its layout against its own batch, heads and grid
// (a layout made for batch 1, cached by a batch-1 call, is refused at batch 2),
// and a ModditPolicy whose state lives on one CUDA backend refuses a call
// through another one instead of running its step with foreign pointers.
#include <gtest/gtest.h>

#include <random>

#include "gpu_test_util.hpp"
#include "expect_error.hpp"
#include "moddit/error.hpp"
#include "moddit/moddit_policy.hpp"
#include "moddit/session.hpp"

namespace moddit::gputest {
namespace {

using moddit::test::expect_error;

struct DeviceQkv {
  std::shared_ptr<void> q, k, v, out;
  AttentionCall call;
};

DeviceQkv random_qkv(Backend& gpu, const TokenLayout& tokens, int B, int H, int D, std::mt19937& rng) {
  const int64_t N = tokens.total_tokens();
  const int64_t n = int64_t(B) * N * H * D;
  DeviceQkv d;
  std::shared_ptr<void>* bufs[4] = {&d.q, &d.k, &d.v, &d.out};
  for (auto* b : bufs) {
    *b = gpu.allocate(size_t(n) * 2);
    const HostPair h = random_tensor(rng, n, DType::BF16, 1.f);
    gpu.copy_from_host(b->get(), h.bits.data(), size_t(n) * 2);
  }
  auto view = [&](const std::shared_ptr<void>& p) {
    return make_view(p.get(), DType::BF16, Layout::NHD, B, N, H, D, Device::CUDA);
  };
  d.call.q = view(d.q);
  d.call.k = view(d.k);
  d.call.v = view(d.v);
  d.call.out = view(d.out);
  d.call.block_size = 128;
  return d;
}

TEST(CudaRobust, CachedLayoutIsCheckedAgainstEveryCallsBatch) {
  MODDIT_REQUIRE_GPU();
  TokenLayout tokens;
  tokens.frames = 3;
  tokens.height = 15;
  tokens.width = 21;  // N = 945: a partial last block
  std::mt19937 rng(std::random_device{}());
  auto gpu = cuda_backend();
  const int H = 2, D = 128;
  const BlockGrid grid = make_block_grid(tokens, 128);
  const BlockLayout l1 = random_layout(rng, 1, H, grid.num_blocks(), 0.4);  // made for batch 1

  DeviceQkv one = random_qkv(*gpu, tokens, 1, H, D, rng);
  one.call.tokens = &tokens;
  one.call.layout = &l1;
  gpu->attention(one.call);  // batch 1: valid, and now cached
  gpu->synchronize();

  DeviceQkv two = random_qkv(*gpu, tokens, 2, H, D, rng);
  two.call.tokens = &tokens;
  two.call.layout = &l1;  // the same layout object, now at batch 2
  expect_error([&] { gpu->attention(two.call); }, "batch 1");
  // Heads: a head subset of one head with the two-head layout.
  const std::vector<int32_t> head0 = {0};
  one.call.heads = &head0;
  expect_error([&] { gpu->attention(one.call); }, "heads 2");
  one.call.heads = nullptr;
  // Grid: the same layout under a token layout with more blocks.
  TokenLayout longer = tokens;
  longer.frames = 4;
  DeviceQkv three = random_qkv(*gpu, longer, 1, H, D, rng);
  three.call.tokens = &longer;
  three.call.layout = &l1;
  expect_error([&] { gpu->attention(three.call); }, "the call needs");
  // The cached layout still works for the call it fits.
  EXPECT_NO_THROW(gpu->attention(one.call));
  gpu->synchronize();
}

TEST(CudaRobust, ModditStateRefusesASecondCudaBackend) {
  MODDIT_REQUIRE_GPU();
  TokenLayout tokens;
  tokens.frames = 2;
  tokens.height = 16;
  tokens.width = 32;  // N = 1024: 8 blocks
  std::mt19937 rng(std::random_device{}());
  const int H = 2, D = 128;
  auto a = cuda_backend(), b = cuda_backend();  // two instances, one device
  ModditConfig cfg;
  cfg.warmup_steps = 2;
  cfg.interval = 2;
  auto policy = std::make_shared<ModditPolicy>(cfg, 1, H);
  SessionOptions opt;
  opt.num_steps = 6;
  opt.num_heads = H;
  opt.head_dim = D;
  Session sa(tokens, opt, a, policy), sb(tokens, opt, b, policy);
  DeviceQkv da = random_qkv(*a, tokens, 1, H, D, rng), db = random_qkv(*b, tokens, 1, H, D, rng);
  sa.begin_step(0);
  sa.attention(0, da.call.q, da.call.k, da.call.v, da.call.out);  // record on a: state on a
  ASSERT_EQ(policy->state_device(), Device::CUDA);
  sb.begin_step(1);
  expect_error([&] { sb.attention(0, db.call.q, db.call.k, db.call.v, db.call.out); },
               "another backend");
  sa.begin_step(1);
  EXPECT_NO_THROW(sa.attention(0, da.call.q, da.call.k, da.call.v, da.call.out));
  a->synchronize();
}

}  // namespace
}  // namespace moddit::gputest
