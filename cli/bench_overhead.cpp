// MOD-DiT's non-attention work per attention call (ModditPolicy::plan + observe)
// at Wan2.1-14B 480p with CFG as batch 2, as a share of the dense attention of
// the same call, and the policy state of the whole model. The policy is driven
// directly with synthetic map counts shaped as attention maps are (a decaying
// band around the diagonal plus a few strong key columns per head, random per
// head); the maps' values change the fit's result, not its cost. With a GPU the
// step runs there (the default on a CUDA session) and is timed to completion
// (plan or observe, then a stream synchronisation); the host step is timed too,
// for comparison. Per step, both sides scale with the layer count, so the
// per-call share is the per-step share.
#include "bench_overhead.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "moddit/block_layout.hpp"
#include "moddit/config.hpp"
#include "moddit/error.hpp"
#include "moddit/moddit_policy.hpp"
#include "moddit/tensor.hpp"
#include "moddit/token_layout.hpp"

namespace moddit::cli {
namespace {

constexpr int kHeads = 40, kDim = 128, kBlock = 128;

TokenLayout wan_tokens() {
  TokenLayout t;  // 21 x 30 x 52 = 32760 video tokens (text is cross-attention in Wan)
  t.frames = 21;
  t.height = 30;
  t.width = 52;
  return t;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Map counts [batch, heads, n, n] for a plan: live pairs on the computed video
// blocks, -1 on the others (as the backend writes them).
void synthetic_counts(const Plan& plan, const BlockGrid& grid, int batch, std::mt19937& rng,
                      std::vector<int32_t>& counts) {
  const int n = grid.num_video_blocks, nb = grid.num_blocks(), v0 = grid.first_video_block;
  const size_t nn = size_t(n) * n;
  counts.assign(size_t(batch) * kHeads * nn, -1);
  std::uniform_real_distribution<double> u(0, 1);
  std::vector<double> col(n);
  auto fill = [&](int b, int h, int i, int j, double base, double width) {
    const double p = std::min(1.0, base * std::exp(-std::abs(i - j) / width) + col[j] + 0.002 * u(rng));
    counts[(size_t(b) * kHeads + h) * nn + size_t(i) * n + j] =
        int32_t(std::lround(p * grid.block_len(v0 + i) * grid.block_len(v0 + j)));
  };
  for (const HeadGroup& g : plan.groups)
    for (size_t s = 0; s < g.heads.size(); ++s) {
      const int h = g.heads[s];
      for (int b = 0; b < batch; ++b) {
        const double base = 0.2 + 0.6 * u(rng), width = 1.0 + 20.0 * u(rng);
        for (int j = 0; j < n; ++j) col[j] = u(rng) < 0.03 ? 0.3 * u(rng) : 0.0;
        if (!g.layout) {
          for (int i = 0; i < n; ++i)
            for (int j = 0; j < n; ++j) fill(b, h, i, j, base, width);
          continue;
        }
        const BlockLayout& l = *g.layout;
        for (int qb = v0; qb < v0 + n; ++qb) {
          const int64_t r = (int64_t(b) * l.heads + int64_t(s)) * nb + qb;
          for (int32_t e = l.row_ptr[r]; e < l.row_ptr[r + 1]; ++e)
            if (grid.is_video(l.col_idx[e])) fill(b, h, qb - v0, l.col_idx[e] - v0, base, width);
        }
      }
    }
}

struct Timed {
  std::string kind;
  int step = 0;
  double plan_s = 0, observe_s = 0, density = 0;
};

// One policy call: plan, synthetic counts when it records, observe. With the
// state on `info.backend`'s GPU each part is timed until the device is done, and
// the counts are uploaded (untimed) as the backend would have written them.
// (Not inlined: after inlining the null-backend path, GCC 12 -Wnonnull misfires.)
[[gnu::noinline]] Timed run_call(ModditPolicy& policy, const CallInfo& info, const BlockGrid& grid, std::mt19937& rng,
               std::vector<int32_t>& counts, std::shared_ptr<void>& counts_dev) {
  Backend* dev = info.backend;
  auto done = [&] {
    if (dev) dev->synchronize();
  };
  Timed t;
  t.step = info.step;
  auto t0 = std::chrono::steady_clock::now();
  Plan plan = policy.plan(info);
  done();
  t.plan_s = seconds_since(t0);
  t.kind = to_string(plan.kind);
  double live = 0;
  for (HeadGroup& g : plan.groups) {
    if (g.device_layout) {
      live += double(*g.device_layout->density_when_synced) * g.heads.size();
      g.layout = download_layout(*dev, *g.device_layout);  // for the synthetic counts only
    } else {
      live += (g.layout ? video_density(*g.layout, grid) : 1.0) * g.heads.size();
    }
  }
  t.density = live / kHeads;
  const int32_t* map = nullptr;
  if (plan.record_map) {
    synthetic_counts(plan, grid, info.batch, rng, counts);
    map = counts.data();
    if (plan.map_on_device) {
      MODDIT_CHECK(dev != nullptr, "bench: a device map without a backend");
      if (!counts_dev) counts_dev = dev->allocate(counts.size() * sizeof(int32_t));
      dev->copy_from_host(counts_dev.get(), counts.data(), counts.size() * sizeof(int32_t));
      done();
      map = static_cast<const int32_t*>(counts_dev.get());
    }
  }
  t0 = std::chrono::steady_clock::now();
  policy.observe(info, plan, map);
  done();
  t.observe_s = seconds_since(t0);
  return t;
}

// Median dense attention time of one [batch, N, 40, 128] bf16 call, in seconds.
double dense_seconds(Backend& gpu, const TokenLayout& tokens, int batch, int iters) {
  const int64_t N = tokens.total_tokens();
  const size_t numel = size_t(batch) * N * kHeads * kDim;
  // Random normal bf16 values: one host chunk, copied at shifting offsets.
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<uint16_t> chunk(size_t(1) << 22);
  for (auto& x : chunk) x = f32_to_bf16(nd(rng));
  std::vector<std::shared_ptr<void>> bufs;
  for (int t = 0; t < 4; ++t) {
    bufs.push_back(gpu.allocate(numel * 2));
    for (size_t off = 0; off < numel; off += chunk.size()) {
      const size_t len = std::min(chunk.size(), numel - off);
      const size_t shift = (size_t(t) * 7919 + off / chunk.size() * 104729) % (chunk.size() - len + 1);
      gpu.copy_from_host(static_cast<uint16_t*>(bufs.back().get()) + off, chunk.data() + shift, len * 2);
    }
  }
  AttentionCall call;
  call.q = make_view(bufs[0].get(), DType::BF16, Layout::NHD, batch, N, kHeads, kDim, Device::CUDA);
  call.k = make_view(bufs[1].get(), DType::BF16, Layout::NHD, batch, N, kHeads, kDim, Device::CUDA);
  call.v = make_view(bufs[2].get(), DType::BF16, Layout::NHD, batch, N, kHeads, kDim, Device::CUDA);
  call.out = make_view(bufs[3].get(), DType::BF16, Layout::NHD, batch, N, kHeads, kDim, Device::CUDA);
  call.tokens = &tokens;
  call.block_size = kBlock;
  gpu.attention(call);  // warm-up
  gpu.synchronize();
  std::vector<double> t;
  for (int i = 0; i < std::max(1, iters); ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    gpu.attention(call);
    gpu.synchronize();
    t.push_back(seconds_since(t0));
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace

namespace {

struct OverheadRun {
  std::vector<Timed> rows;
  int64_t state = 0;
  Device state_device = Device::CPU;
};

// Drives a fresh policy through layer 0's record, sparse and refresh steps (each
// call timed; the rows: the two records, the first sparse step, the median of the
// steady sparse steps, the refresh), then the other layers through their
// references, for the whole model's state.
OverheadRun run_policy(const OverheadOptions& o, const TokenLayout& tokens, const BlockGrid& grid,
                       Backend* device) {
  ModditConfig cfg;  // the defaults: m = 12 (records at 10, 11), refresh every 10
  cfg.block_size = kBlock;
  cfg.target_density = o.target_density;
  cfg.device_step = device != nullptr;
  cfg.validate();
  ModditPolicy policy(cfg, o.layers, kHeads);
  const int num_steps = 50;
  auto info_for = [&](int step, int layer) {
    CallInfo c;
    c.step = step;
    c.num_steps = num_steps;
    c.layer = layer;
    c.slot_begin = 0;
    c.batch = o.batch;
    c.num_heads = kHeads;
    c.head_dim = kDim;
    c.tokens = &tokens;
    c.grid = &grid;
    c.backend = device;
    return c;
  };
  std::mt19937 rng(1234);
  std::vector<int32_t> counts;
  std::shared_ptr<void> counts_dev;
  const int m = cfg.warmup_steps, dt = cfg.interval;
  OverheadRun run;
  std::vector<Timed> steady;
  for (int step = m - 2; step <= m + dt; ++step) {
    Timed t = run_call(policy, info_for(step, 0), grid, rng, counts, counts_dev);
    if (step > m && step < m + dt) steady.push_back(t);
    else run.rows.push_back(t);
  }
  std::sort(steady.begin(), steady.end(), [](const Timed& a, const Timed& b) {
    return a.plan_s + a.observe_s < b.plan_s + b.observe_s;
  });
  if (!steady.empty()) {
    Timed med = steady[steady.size() / 2];
    med.kind = "sparse*";
    run.rows.insert(run.rows.end() - 1, med);
  }
  for (int layer = 1; layer < o.layers; ++layer)
    for (int step = m - 2; step <= m; ++step)
      run_call(policy, info_for(step, layer), grid, rng, counts, counts_dev);
  run.state = policy.state_bytes();
  run.state_device = policy.state_device();
  return run;
}

void print_table(const char* title, const OverheadRun& run, double dense_s) {
  std::printf("%s\n", title);
  std::printf("%-8s %5s %8s %10s %10s %10s %9s\n", "kind", "step", "density", "plan_ms",
              "observe_ms", "total_ms", "%dense");
  for (const Timed& r : run.rows) {
    const double total = r.plan_s + r.observe_s;
    char share[32] = "n/a";
    if (dense_s > 0) std::snprintf(share, sizeof share, "%.2f%%", 100.0 * total / dense_s);
    std::printf("%-8s %5d %8.3f %10.3f %10.3f %10.3f %9s\n", r.kind.c_str(), r.step, r.density,
                r.plan_s * 1e3, r.observe_s * 1e3, total * 1e3, share);
  }
}

}  // namespace

void print_moddit_overhead(const OverheadOptions& o, Backend* gpu) {
  MODDIT_CHECK(o.layers >= 1 && o.batch >= 1, "bench: --overhead-layers and batch must be >= 1");
  const TokenLayout tokens = wan_tokens();
  const BlockGrid grid = make_block_grid(tokens, kBlock);
  const ModditConfig defaults;
  const int m = defaults.warmup_steps, dt = defaults.interval;

  double dense_s = 0;
  std::string dense_note = "unavailable (no GPU: CPU-side overhead only)";
  if (gpu) {
    dense_s = dense_seconds(*gpu, tokens, o.batch, o.iters);
    char buf[160];
    std::snprintf(buf, sizeof buf, "%.3f ms on %s", dense_s * 1e3, gpu->name().c_str());
    dense_note = buf;
  }
  std::printf("\nMOD-DiT work per attention call besides attention, wan (H=%d N=%lld D=%d, block %d, "
              "CFG batch %d, target density %.2f; synthetic maps)\n",
              kHeads, static_cast<long long>(tokens.total_tokens()), kDim, kBlock, o.batch,
              o.target_density);
  std::printf("dense attention, same call (B=%d): %s\n", o.batch, dense_note.c_str());
  std::vector<OverheadRun> runs;
  if (gpu) {
    runs.push_back(run_policy(o, tokens, grid, gpu));
    print_table("-- the step on the GPU (device_step = true, the default on a CUDA session; "
                "timed to completion)", runs.back(), dense_s);
  }
  runs.push_back(run_policy(o, tokens, grid, nullptr));
  char host_title[200];
  std::snprintf(host_title, sizeof host_title,
                "-- the step on the host (device_step = false; %u hardware threads, at most 16 "
                "used, MODDIT_THREADS overrides)", std::thread::hardware_concurrency());
  print_table(host_title, runs.back(), dense_s);
  std::printf("(sparse*: median of steps %d-%d)\n", m + 1, m + dt - 1);
  for (const OverheadRun& run : runs) {
    const double gib = double(run.state) / double(int64_t(1) << 30);
    std::printf("MOD-DiT state, whole model (%d layers x %d heads x %d CFG slots, after the "
                "reference maps) on %s: %lld bytes = %.1f MiB, %s 1 GiB\n",
                o.layers, kHeads, o.batch, to_string(run.state_device),
                static_cast<long long>(run.state), double(run.state) / double(1 << 20),
                gib <= 1.0 ? "fits in" : "does NOT fit in");
  }
  std::fflush(stdout);
}

}  // namespace moddit::cli
