// Host layouts that change on every call, as the quality evaluation's oracle
// and SVG-style baselines make them (docs/LOG.md, 2026-12-03: the Hopper kernel
// did not finish there), at that evaluation's shape: batch 32, 3 heads of 128,
// 96 x 96 blocks of 128 video tokens. Calls alternate a new layout (global top
// blocks per head: rows of 1 to 96 blocks; a cache miss with its upload, schedule
// and eviction) and one of the 8 per-head picks of two fixed masks (hits, and
// misses once evicted). Each call is waited for under a deadline, so a kernel
// that never finishes fails the test instead of hanging it. V is constant, so
// every row's output is V's value whatever the layout and the scores.
#include <gtest/gtest.h>

#if MODDIT_WITH_CUDA
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <thread>
#include <vector>

#include "gpu_test_util.hpp"

namespace moddit::gputest {
namespace {

// Per (batch item, head): the diagonal and the `keep` blocks of highest random
// score over the whole grid (the global oracle's shape of layout).
BlockLayout top_blocks_layout(std::mt19937& rng, int B, int H, int n, int keep) {
  BlockMask m(B, H, n, n, false);
  std::uniform_real_distribution<float> u(0.f, 1.f);
  std::vector<float> score(size_t(n) * n);
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h) {
      for (float& s : score) s = u(rng);
      std::vector<float> sorted = score;
      std::nth_element(sorted.begin(), sorted.begin() + keep, sorted.end(), std::greater<float>());
      const float thr = sorted[size_t(keep)];
      for (int q = 0; q < n; ++q)
        for (int k = 0; k < n; ++k) m.at(b, h, q, k) = (q == k || score[size_t(q) * n + k] > thr) ? 1 : 0;
    }
  return to_layout(m);
}

// Head h takes mask `pick >> h & 1` of the two (the same for every batch item).
BlockLayout per_head_pick(const BlockMask& a, const BlockMask& b, int B, int H, int n, int pick) {
  BlockMask m(B, H, n, n, false);
  for (int bi = 0; bi < B; ++bi)
    for (int h = 0; h < H; ++h) {
      const BlockMask& src = (pick >> h & 1) ? b : a;
      for (int q = 0; q < n; ++q)
        for (int k = 0; k < n; ++k) m.at(bi, h, q, k) = src.at(0, 0, q, k);
    }
  return to_layout(m);
}

// Waits for the legacy default stream (the backend's) for at most `seconds`.
bool finishes(double seconds) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < end) {
    const cudaError_t e = cudaStreamQuery(nullptr);
    if (e == cudaSuccess) return true;
    if (e != cudaErrorNotReady) {
      ADD_FAILURE() << "cuda: " << cudaGetErrorString(e);
      return true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return false;
}

TEST(CudaHostLayouts, LayoutsThatChangeEveryCallAllFinishSlow) {
  MODDIT_REQUIRE_GPU();
  auto gpu = cuda_backend();
  TokenLayout tokens;
  tokens.frames = 16;
  tokens.height = 24;
  tokens.width = 32;
  const int B = 32, H = 3, D = 128;
  const int64_t N = tokens.total_tokens();
  const BlockGrid grid = make_block_grid(tokens, 128);
  const int n = grid.num_blocks();
  ASSERT_EQ(n, 96);
  std::mt19937 rng(7);

  // Q and K: one random batch item, copied into all 32; V: 0.5 everywhere.
  const size_t item = size_t(N) * H * D, numel = item * B;
  auto q = gpu->allocate(numel * 2), k = gpu->allocate(numel * 2), v = gpu->allocate(numel * 2);
  auto out = gpu->allocate(numel * 2);
  for (auto* t : {&q, &k}) {
    const HostPair h = random_tensor(rng, int64_t(item), DType::BF16, 1.5f);
    for (int b = 0; b < B; ++b)
      gpu->copy_from_host(static_cast<char*>(t->get()) + b * item * 2, h.bits.data(), item * 2);
  }
  const uint16_t half = f32_to_bf16(0.5f);
  gpu->fill_i32(static_cast<int32_t*>(v.get()), int32_t(uint32_t(half) << 16 | half), numel / 2);

  // The two fixed masks of the per-head picks: a band of blocks around the
  // diagonal and a stride through the sequence (spatial / temporal in shape).
  BlockMask band(1, 1, n, n, false), stride(1, 1, n, n, false);
  for (int a = 0; a < n; ++a)
    for (int c = 0; c < n; ++c) {
      band.at(0, 0, a, c) = std::abs(a - c) <= 7 ? 1 : 0;
      stride.at(0, 0, a, c) = (a - c) % 6 == 0 ? 1 : 0;
    }
  std::vector<BlockLayout> picks;
  for (int pick = 0; pick < 8; ++pick) picks.push_back(per_head_pick(band, stride, B, H, n, pick));

  const int keep = int(0.15 * n * n);
  std::vector<uint16_t> host(numel);
  for (int call = 0; call < 240; ++call) {
    const BlockLayout fresh = call % 2 ? BlockLayout() : top_blocks_layout(rng, B, H, n, keep);
    const BlockLayout& layout = call % 2 ? picks[size_t(rng() % 8)] : fresh;
    gpu->fill_i32(static_cast<int32_t*>(out.get()), 0, numel / 2);
    AttentionCall c;
    c.q = make_view(q.get(), DType::BF16, Layout::NHD, B, N, H, D, Device::CUDA);
    c.k = make_view(k.get(), DType::BF16, Layout::NHD, B, N, H, D, Device::CUDA);
    c.v = make_view(v.get(), DType::BF16, Layout::NHD, B, N, H, D, Device::CUDA);
    c.out = make_view(out.get(), DType::BF16, Layout::NHD, B, N, H, D, Device::CUDA);
    c.tokens = &tokens;
    c.layout = &layout;
    gpu->attention(c);
    if (!finishes(30.0)) {
      // The kernel is still running: no later call (nor the backend's teardown)
      // would return, so end the process with the failure rather than hang.
      ADD_FAILURE() << "call " << call << " did not finish within 30 s";
      std::fflush(nullptr);
      std::_Exit(1);
    }
    if (call % 40 == 39 || call == 0) {
      gpu->copy_to_host(host.data(), out.get(), numel * 2);
      int64_t wrong = 0;
      for (uint16_t x : host) wrong += std::abs(bf16_to_f32(x) - 0.5f) > 1e-2f;
      ASSERT_EQ(wrong, 0) << "call " << call;
    }
  }
}

}  // namespace
}  // namespace moddit::gputest
#endif  // MODDIT_WITH_CUDA
