// The policy (plan + observe) at a model-like scale: the schedule runs through
// record, sparse and refresh calls and its masks have a density strictly between
// 0 and 1. The times it prints are informative only; the measured overhead at
// the Wan shapes comes from `moddit bench --overhead-only` (docs/BENCHMARKS.md).
#include <gtest/gtest.h>

#include <chrono>
#include <ctime>
#include <cstdio>
#include <random>

#include "moddit/moddit_policy.hpp"

using namespace moddit;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Process CPU time: with MODDIT_THREADS=1 it measures the work even on a busy machine.
double cpu_seconds() { return double(std::clock()) / CLOCKS_PER_SEC; }

void measure(const char* name, int frames, int h, int w, int heads, int batch, int top_k) {
  TokenLayout tokens;
  tokens.frames = frames;
  tokens.height = h;
  tokens.width = w;
  const BlockGrid grid = make_block_grid(tokens, 128);
  const int n = grid.num_video_blocks;
  ModditConfig cfg;
  cfg.top_k = top_k;
  ModditPolicy policy(cfg, 1, heads);
  CallInfo c;
  c.num_steps = 50;
  c.batch = batch;
  c.num_heads = heads;
  c.head_dim = 128;
  c.tokens = &tokens;
  c.grid = &grid;
  std::mt19937 rng(51);
  std::vector<int32_t> counts(size_t(batch) * heads * n * n);
  for (auto& x : counts) x = int32_t(rng() % 16385);
  double t_record = 0, t_sparse = 0, t_refresh = 0, density = 0;
  double cpu_record = 0, cpu_sparse = 0, cpu_refresh = 0;
  for (int step : {10, 11, 12, 13, 14, 22}) {
    c.step = step;
    auto t0 = std::chrono::steady_clock::now();
    const double c0 = cpu_seconds();
    const Plan p = policy.plan(c);
    if (p.record_map) policy.observe(c, p, counts.data());
    const double dt = seconds_since(t0), dc = cpu_seconds() - c0;
    if (p.kind == CallKind::Record) cpu_record = dc;  // the second: no factorization
    if (p.kind == CallKind::Sparse) cpu_sparse = dc;  // the last: buffers warm
    if (p.kind == CallKind::Refresh) cpu_refresh = dc;
    if (p.kind == CallKind::Record) t_record = std::max(t_record, dt);
    if (p.kind == CallKind::Sparse) {
      t_sparse = dt;
      density = video_density(*p.groups[0].layout, grid);
    }
    if (p.kind == CallKind::Refresh) t_refresh = dt;
  }
  std::printf("[overhead] %s: n=%d heads=%d batch=%d top_k=%d density=%.3f | record %.1f ms "
              "(incl. first factorization), sparse plan %.1f ms, refresh %.1f ms, state %.1f MB\n",
              name, n, heads, batch, top_k, density, 1e3 * t_record, 1e3 * t_sparse,
              1e3 * t_refresh, policy.state_bytes() / 1e6);
  std::printf("[overhead] %s: CPU time (all threads) record %.1f ms, sparse plan %.1f ms, "
              "refresh %.1f ms\n", name, 1e3 * cpu_record, 1e3 * cpu_sparse, 1e3 * cpu_refresh);
  EXPECT_GT(density, 0.0);
  EXPECT_LT(density, 1.0);
}

}  // namespace

TEST(Overhead, SmallModel) { measure("CogVideoX-2b-like", 13, 32, 40, 30, 2, 100); }

