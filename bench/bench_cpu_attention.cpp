// Times the fp32 CPU reference backend on a few shapes and densities, and prints
// milliseconds and effective GFLOP/s (4 * B * H * D * live query-key pairs / t,
// the convention of DESIGN.md §5; padding keys count as live here). Also prints
// the process CPU time per call (all threads): on a shared, loaded machine the
// wall time inflates while CPU time stays close to the quiet-machine cost.
//
//   bench_cpu_attention [threads=0] [repeats=5]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <random>
#include <vector>

#include "moddit/backend.hpp"
#include "moddit/block_layout.hpp"
#include "moddit/host_tensor.hpp"

using namespace moddit;

namespace {

struct Case {
  const char* label;
  int64_t frames, height, width, text;  // tokens: text (before the video) + frames*height*width
  int64_t heads, dim;
  int block_size;
  double density;  // fraction of off-diagonal video blocks kept (1 = dense, no layout)
  DType dtype;
  bool map;  // also record the sparsity-map counts
};

HostTensor random_tensor(DType dt, int64_t N, int64_t H, int64_t D, std::mt19937& rng) {
  HostTensor t(DType::F32, 1, N, H, D);
  std::normal_distribution<float> dist(0.f, 1.f);
  for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = dist(rng);
  return dt == DType::F32 ? t : t.to(dt);
}

void run_case(Backend& backend, const Case& c, int repeats) {
  std::mt19937 rng(7);
  TokenLayout tokens;
  tokens.frames = c.frames;
  tokens.height = c.height;
  tokens.width = c.width;
  tokens.text_tokens = c.text;
  tokens.text_valid = c.text;
  tokens.text_position = c.text ? TextPosition::Before : TextPosition::None;
  const int64_t N = tokens.total_tokens();
  const BlockGrid grid = make_block_grid(tokens, c.block_size);
  const int nb = grid.num_blocks();

  HostTensor q = random_tensor(c.dtype, N, c.heads, c.dim, rng);
  HostTensor k = random_tensor(c.dtype, N, c.heads, c.dim, rng);
  HostTensor v = random_tensor(c.dtype, N, c.heads, c.dim, rng);
  HostTensor out(c.dtype, 1, N, c.heads, c.dim);
  std::vector<float> lse(static_cast<size_t>(N * c.heads));
  const int n = grid.num_video_blocks;
  std::vector<int32_t> counts(static_cast<size_t>(c.heads * n * n), -1);

  BlockLayout layout;
  double pairs = 0;
  if (c.density < 1.0) {
    BlockMask mask(1, static_cast<int>(c.heads), nb, nb);
    std::vector<uint8_t> video(static_cast<size_t>(n * n));
    std::uniform_real_distribution<double> u(0, 1);
    for (int h = 0; h < c.heads; ++h) {
      for (auto& bit : video) bit = u(rng) < c.density;
      place_video_mask(video.data(), grid, mask, 0, h);
    }
    layout = to_layout(mask);
    for (int h = 0; h < c.heads; ++h)
      for (int qb = 0; qb < nb; ++qb)
        for (int kb = 0; kb < nb; ++kb)
          if (mask.at(0, h, qb, kb)) pairs += double(grid.block_len(qb)) * grid.block_len(kb);
  } else {
    pairs = double(N) * N * c.heads;
  }

  AttentionCall call;
  call.q = q.view();
  call.k = k.view();
  call.v = v.view();
  call.out = out.view();
  call.tokens = &tokens;
  call.block_size = c.block_size;
  call.layout = c.density < 1.0 ? &layout : nullptr;
  call.lse = lse.data();
  call.map_counts = c.map ? counts.data() : nullptr;

  backend.attention(call);  // warm-up: page faults, pool start
  std::vector<double> ms, cpu_ms;
  for (int r = 0; r < repeats; ++r) {
    const std::clock_t c0 = std::clock();
    const auto t0 = std::chrono::steady_clock::now();
    backend.attention(call);
    const auto t1 = std::chrono::steady_clock::now();
    const std::clock_t c1 = std::clock();
    ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    cpu_ms.push_back(1000.0 * double(c1 - c0) / CLOCKS_PER_SEC);
  }
  std::sort(ms.begin(), ms.end());
  std::sort(cpu_ms.begin(), cpu_ms.end());
  const double median = ms[ms.size() / 2];
  const double gflops = 4.0 * c.dim * pairs / (median * 1e-3) / 1e9;
  std::printf("%-26s N=%-5lld H=%-2lld D=%-3lld Bs=%-3d %-4s density=%.2f map=%d %9.2f ms %7.1f GFLOP/s %9.2f cpu-ms\n",
              c.label, static_cast<long long>(N), static_cast<long long>(c.heads),
              static_cast<long long>(c.dim), c.block_size, to_string(c.dtype), c.density,
              c.map ? 1 : 0, median, gflops, cpu_ms[cpu_ms.size() / 2]);
}

}  // namespace

int main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 0;
  const int repeats = argc > 2 ? std::max(1, std::atoi(argv[2])) : 5;
  auto backend = make_cpu_backend(threads);
  std::printf("cpu backend, threads=%d (0 = all), median of %d\n", threads, repeats);
  const Case cases[] = {
      // 1536 video tokens: 6 frames of 16x16.
      {"dense", 6, 16, 16, 0, 8, 64, 128, 1.0, DType::F32, false},
      {"dense + map", 6, 16, 16, 0, 8, 64, 128, 1.0, DType::F32, true},
      {"dense bf16", 6, 16, 16, 0, 8, 64, 128, 1.0, DType::BF16, false},
      {"dense D=128", 6, 16, 16, 0, 8, 128, 128, 1.0, DType::F32, false},
      {"sparse 0.5 + map", 6, 16, 16, 0, 8, 64, 128, 0.5, DType::F32, true},
      {"sparse 0.25 + map", 6, 16, 16, 0, 8, 64, 128, 0.25, DType::F32, true},
      {"sparse 0.25 Bs=64 + map", 6, 16, 16, 0, 8, 64, 64, 0.25, DType::F32, true},
      // Wan-like frame (1560 tokens, not a multiple of 128) with text before.
      {"text+video dense", 4, 30, 52, 226, 4, 64, 128, 1.0, DType::F32, true},
      {"text+video sparse 0.3", 4, 30, 52, 226, 4, 64, 128, 0.3, DType::F32, true},
  };
  for (const Case& c : cases) run_case(*backend, c, repeats);
  return 0;
}
