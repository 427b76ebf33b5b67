// The MOD-DiT step on the GPU against the host step: two ModditPolicy objects
// (device_step on and off) are driven through the same schedule with the same
// random map counts (the GPU copy in device memory, as a Session hands it over),
// and must agree: fused maps exactly, fits to ~1e-9, NAEs, masks bit for bit,
// layouts entry for entry, the backend's schedule, the density.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#if MODDIT_WITH_CUDA
#include <cuda_runtime.h>
#endif

#include "core/video_mask.hpp"
#include "gpu_test_util.hpp"
#include "moddit/error.hpp"
#include "stream_gate.hpp"
#include "moddit/moddit_policy.hpp"

namespace moddit::gputest {
namespace {

struct StepCase {
  TokenLayout tokens;
  int block_size = 128;
  int heads = 3;
  int batch = 1;
  int top_k = 0;
  double target_density = 0.25;
  std::string refresh = "masked";
  double tau_e = 1e9;  // keep every frame region unless a test says otherwise
};

// Random counts on the blocks a plan computes ([B, H, n, n], -1 elsewhere):
// uniform fractions of each block's pairs, so that line intensities have no ties.
std::vector<int32_t> random_counts(std::mt19937& rng, const BlockGrid& grid, int B, int H,
                                   const Plan& plan) {
  const int n = grid.num_video_blocks, fv = grid.first_video_block, nb = grid.num_blocks();
  const size_t nn = size_t(n) * n;
  std::vector<int32_t> c(size_t(B) * H * nn, -1);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  const HeadGroup& g = plan.groups.at(0);
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h)
      for (int i = 0; i < n; ++i)
        for (int j = 0; j < n; ++j) {
          bool computed = true;
          if (g.layout) {
            const BlockLayout& l = *g.layout;
            const int64_t r = (int64_t(b) * l.heads + h) * nb + fv + i;
            computed = std::binary_search(l.col_idx.begin() + l.row_ptr[r],
                                          l.col_idx.begin() + l.row_ptr[r + 1], fv + j);
          }
          if (!computed) continue;
          const double pairs = double(grid.block_len(fv + i)) * grid.block_len(fv + j);
          const double frac = std::pow(u(rng), 3.0);  // mostly sparse blocks, a few dense
          c[(size_t(b) * H + h) * nn + size_t(i) * n + j] = int32_t(std::floor(frac * pairs));
        }
  return c;
}

// One call of the schedule for driving a policy directly (as a Session would).
CallInfo step_call(const TokenLayout& tokens, const BlockGrid& grid, Backend* backend, int heads,
                   int batch, int step) {
  CallInfo c;
  c.step = step;
  c.num_steps = 8;
  c.batch = batch;
  c.num_heads = heads;
  c.head_dim = 128;
  c.tokens = &tokens;
  c.grid = &grid;
  c.backend = backend;
  return c;
}

// A device layout and its schedule, back on the host.
BlockLayout to_host(Backend& gpu, const DeviceLayout& d, std::vector<int32_t>* order) {
  order->resize(size_t(d.rows()));
  gpu.copy_to_host(order->data(), d.order, order->size() * 4);
  return download_layout(gpu, d);
}

void run_case(const StepCase& sc, int seed) {
  auto gpu = cuda_backend();
  const BlockGrid grid = make_block_grid(sc.tokens, sc.block_size);
  const int n = grid.num_video_blocks, H = sc.heads, B = sc.batch;
  const size_t nn = size_t(n) * n;
  ModditConfig cfg;
  cfg.block_size = sc.block_size;
  cfg.warmup_steps = 3;  // records at 1, 2; sparse 3, 4; refresh 5; sparse 6
  cfg.interval = 2;
  cfg.top_k = sc.top_k;
  cfg.target_density = sc.target_density;
  cfg.refresh = sc.refresh;
  cfg.tau_e = sc.tau_e;
  ModditConfig host_cfg = cfg;
  host_cfg.device_step = false;
  ModditPolicy dev(cfg, 1, H), host(host_cfg, 1, H);
  std::mt19937 rng(seed);
  auto info = [&](int step) { return step_call(sc.tokens, grid, gpu.get(), H, B, step); };
  auto counts_dev = gpu->allocate(size_t(B) * H * nn * 4);
  for (int step = 1; step < 7; ++step) {
    const CallInfo ci = info(step);
    const Plan ph = host.plan(ci);
    const Plan pd = dev.plan(ci);
    ASSERT_EQ(ph.kind, pd.kind) << "step " << step;
    ASSERT_EQ(ph.record_map, pd.record_map);
    EXPECT_TRUE(pd.map_on_device || !pd.record_map);
    EXPECT_FALSE(ph.map_on_device);
    ASSERT_EQ(pd.groups.size(), 1u);
    const HeadGroup& gh = ph.groups[0];
    const HeadGroup& gd = pd.groups[0];
    EXPECT_EQ(gh.label, gd.label);
    ASSERT_EQ(bool(gh.layout), bool(gd.device_layout)) << "step " << step;
    if (gd.device_layout) {
      std::vector<int32_t> order;
      const BlockLayout got = to_host(*gpu, *gd.device_layout, &order);
      EXPECT_EQ(got.row_ptr, gh.layout->row_ptr) << "step " << step;
      EXPECT_EQ(got.col_idx, gh.layout->col_idx) << "step " << step;
      // The backend's schedule (gpu_test_util.hpp: reference_schedule).
      std::vector<int32_t> cost(size_t(got.rows()));
      for (int64_t r = 0; r < got.rows(); ++r)
        for (int32_t e = got.row_ptr[r]; e < got.row_ptr[r + 1]; ++e)
          cost[r] += (grid.block_len(got.col_idx[e]) + 63) / 64;
      const std::vector<int32_t> want = reference_schedule(cost, grid.num_blocks());
      EXPECT_EQ(order, want) << "step " << step;
      gpu->synchronize();
      EXPECT_NEAR(*gd.device_layout->density_when_synced, video_density(*gh.layout, grid),
                  1e-6);
    }
    for (int b = 0; b < B; ++b)
      for (int h = 0; h < H; ++h)
        EXPECT_EQ(dev.video_mask(0, b, h), host.video_mask(0, b, h)) << "step " << step << " b " << b
                                                                     << " h " << h;
    if (!ph.record_map) continue;
    const std::vector<int32_t> counts = random_counts(rng, grid, B, H, ph);
    gpu->copy_from_host(counts_dev.get(), counts.data(), counts.size() * 4);
    host.observe(ci, ph, counts.data());
    dev.observe(ci, pd, static_cast<const int32_t*>(counts_dev.get()));
    for (int b = 0; b < B; ++b)
      for (int h = 0; h < H; ++h) {
        EXPECT_EQ(dev.fused_map(0, b, h), host.fused_map(0, b, h)) << "step " << step;
        const std::vector<float> fd = dev.fitted_map(0, b, h), fh = host.fitted_map(0, b, h);
        ASSERT_EQ(fd.size(), nn);
        EXPECT_LT(rel_l2(fd, fh), 1e-6) << "step " << step << " b " << b << " h " << h;
      }
    const auto& nd = dev.fits();
    const auto& nh = host.fits();
    ASSERT_EQ(nd.size(), nh.size());
    for (size_t i = 0; i < nd.size(); ++i) {
      EXPECT_EQ(nd[i].step, nh[i].step);
      EXPECT_EQ(nd[i].slot, nh[i].slot);
      EXPECT_EQ(nd[i].head, nh[i].head);
      EXPECT_NEAR(nd[i].nae, nh[i].nae, 1e-7 * std::max(1.0, nh[i].nae));
    }
  }
  EXPECT_EQ(dev.state_device(), Device::CUDA);
  EXPECT_EQ(host.state_device(), Device::CPU);
  EXPECT_GT(dev.state_bytes(), int64_t(B) * H * nn * 2);
}

TEST(CudaModditStep, MatchesHostOnAlignedFrames) {
  MODDIT_REQUIRE_GPU();
  StepCase sc;
  sc.tokens = video(4, 16, 16);  // 256 tokens per frame: frames are 2 blocks of 128
  run_case(sc, 1);
}

TEST(CudaModditStep, MatchesHostOnUnalignedFramesAndPartialLastBlock) {
  MODDIT_REQUIRE_GPU();
  StepCase sc;
  sc.tokens = video(5, 10, 19);  // 190 tokens per frame, N = 950: frames straddle blocks
  sc.heads = 4;
  sc.tau_e = 0.0;  // some frame regions kept, some not
  run_case(sc, 2);
}

TEST(CudaModditStep, MatchesHostWithTextBeforeAndPaddingBatch2Block64) {
  MODDIT_REQUIRE_GPU();
  StepCase sc;
  sc.tokens = video(3, 12, 20);
  sc.tokens.text_tokens = 100;
  sc.tokens.text_valid = 77;
  sc.tokens.text_position = TextPosition::Before;
  sc.block_size = 64;
  sc.batch = 2;
  sc.target_density = 0.15;
  run_case(sc, 3);
}

TEST(CudaModditStep, MatchesHostWithTextAfterTopKAndDenseRefresh) {
  MODDIT_REQUIRE_GPU();
  StepCase sc;
  sc.tokens = video(6, 8, 24);
  sc.tokens.text_tokens = 130;
  sc.tokens.text_valid = 130;
  sc.tokens.text_position = TextPosition::After;
  sc.top_k = 5;
  sc.refresh = "dense";
  sc.tau_e = 0.0;
  run_case(sc, 4);
}

TEST(CudaModditStep, MatchesHostOnAnUnalignedLargerGrid) {
  MODDIT_REQUIRE_GPU();
  StepCase sc;
  sc.tokens = video(9, 30, 52);  // 1560 tokens per frame (Wan's), n = 110
  sc.heads = 2;
  sc.target_density = 0.1;
  sc.tau_e = 0.0;
  run_case(sc, 5);
}

TEST(CudaModditStep, ReportsACountAboveItsBlocksPairs) {
  MODDIT_REQUIRE_GPU();
  auto gpu = cuda_backend();
  const TokenLayout tokens = video(2, 16, 16);
  const BlockGrid grid = make_block_grid(tokens, 128);
  const int n = grid.num_video_blocks;
  ModditConfig cfg;
  cfg.warmup_steps = 3;
  ModditPolicy dev(cfg, 1, 1);
  CallInfo c = step_call(tokens, grid, gpu.get(), 1, 1, 1);
  const Plan plan = dev.plan(c);
  ASSERT_TRUE(plan.record_map && plan.map_on_device);
  std::vector<int32_t> counts(size_t(n) * n, 5);
  counts[3] = 128 * 128 + 1;
  auto d = gpu->allocate(counts.size() * 4);
  gpu->copy_from_host(d.get(), counts.data(), counts.size() * 4);
  dev.observe(c, plan, static_cast<const int32_t*>(d.get()));
  try {
    dev.fits();
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("exceeds"), std::string::npos) << e.what();
  }
}

#if MODDIT_WITH_CUDA
// Sparse and refresh calls queue the whole step and return: while the caller's
// stream is held by a host callback (stream_gate.hpp), plan() and observe() come back with
// the stream still busy (they never wait for the device).
TEST(CudaModditStep, PlanAndObserveDoNotWaitForTheDevice) {
  MODDIT_REQUIRE_GPU();
  auto gpu = cuda_backend();
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreate(&stream), cudaSuccess);
  gpu->set_stream(stream);
  const TokenLayout tokens = video(6, 16, 24);
  const BlockGrid grid = make_block_grid(tokens, 128);
  const int n = grid.num_video_blocks, H = 2;
  ModditConfig cfg;
  cfg.warmup_steps = 3;
  cfg.interval = 2;  // records 1, 2; sparse 3, 4; refresh 5
  ModditPolicy dev(cfg, 1, H);
  CallInfo c = step_call(tokens, grid, gpu.get(), H, 1, 1);
  std::mt19937 rng(9);
  auto counts_dev = gpu->allocate(size_t(H) * n * n * 4);
  for (int step = 1; step <= 2; ++step) {  // the references (uploads may wait: untested)
    c.step = step;
    const Plan p = dev.plan(c);
    const std::vector<int32_t> counts = random_counts(rng, grid, 1, H, p);
    gpu->copy_from_host(counts_dev.get(), counts.data(), counts.size() * 4);
    dev.observe(c, p, static_cast<const int32_t*>(counts_dev.get()));
  }
  for (int step = 3; step <= 5; ++step) {
    gpu->synchronize();
    StreamGate gate;
    ASSERT_TRUE(gate.hold(stream));
    c.step = step;
    const Plan p = dev.plan(c);
    if (p.record_map) dev.observe(c, p, static_cast<const int32_t*>(counts_dev.get()));
    EXPECT_EQ(cudaStreamQuery(stream), cudaErrorNotReady) << "step " << step << " waited";
    gate.open();
  }
  gpu->synchronize();
  EXPECT_EQ(dev.fits().size(), size_t(3 * H));
  gpu->set_stream(nullptr);
  cudaStreamDestroy(stream);
}
#endif

TEST(CudaModditStep, StateCannotMoveBetweenHostAndDevice) {
  MODDIT_REQUIRE_GPU();
  auto gpu = cuda_backend();
  const TokenLayout tokens = video(2, 16, 16);
  const BlockGrid grid = make_block_grid(tokens, 128);
  ModditConfig cfg;
  cfg.warmup_steps = 3;
  ModditPolicy dev(cfg, 1, 1);
  CallInfo c = step_call(tokens, grid, gpu.get(), 1, 1, 1);
  dev.plan(c);
  c.backend = nullptr;
  EXPECT_THROW(dev.plan(c), Error);
}

}  // namespace
}  // namespace moddit::gputest
