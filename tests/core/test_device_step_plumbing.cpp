// How a Session and ModditPolicy hand work to a device engine, without a GPU: a
// fake backend that calls itself CUDA (its memory is host memory) and a fake
// device engine (the host engine, its layouts repackaged as DeviceLayouts, its
// maps read where the backend wrote them). The CUDA engine itself is compared
// with the host engine on the GPU (tests/gpu/test_cuda_moddit_step.cpp).
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "core/moddit_engine.hpp"
#include "core/video_mask.hpp"
#include "fake_backend.hpp"
#include "moddit/error.hpp"
#include "moddit/host_tensor.hpp"
#include "moddit/moddit_policy.hpp"
#include "moddit/session.hpp"

using namespace moddit;
using moddit_test::FakeBackend;

namespace {


class FakeDeviceEngine final : public core::ModditEngine {
 public:
  FakeDeviceEngine(const ModditConfig& cfg, int heads) : host_(core::make_host_engine(cfg, heads)) {}
  Plan plan_masks(const CallInfo& call, CallKind kind) override {
    Plan p = host_->plan_masks(call, kind);
    for (HeadGroup& g : p.groups) {
      if (!g.layout) continue;
      auto held = std::make_shared<BlockLayout>(std::move(*g.layout));
      g.layout.reset();
      auto d = std::make_shared<DeviceLayout>();
      d->batch = held->batch;
      d->heads = held->heads;
      d->num_q_blocks = held->num_q_blocks;
      d->num_k_blocks = held->num_k_blocks;
      d->row_ptr = held->row_ptr.data();
      d->col_idx = held->col_idx.data();
      d->density_when_synced =
          std::make_shared<float>(float(video_density(*held, *call.grid)));
      d->storage = held;
      g.device_layout = d;
    }
    return p;
  }
  void observe(const CallInfo& call, const Plan& plan, const int32_t* map_counts) override {
    ++observed;
    host_->observe(call, plan, map_counts);  // "device" memory is host memory here
  }
  bool map_on_device() const override { return true; }
  Device device() const override { return Device::CUDA; }
  std::vector<float> fused_map(int l, int s, int h) const override { return host_->fused_map(l, s, h); }
  std::vector<float> fitted_map(int l, int s, int h) const override { return host_->fitted_map(l, s, h); }
  std::vector<uint8_t> video_mask(int l, int s, int h) const override { return host_->video_mask(l, s, h); }
  const std::vector<FitRecord>& fits() override { return host_->fits(); }
  int64_t state_bytes() const override { return host_->state_bytes(); }
  static int observed;

 private:
  std::unique_ptr<core::ModditEngine> host_;
};
int FakeDeviceEngine::observed = 0;

class FakeGpu : public FakeBackend {
 public:
  Device device() const override { return Device::CUDA; }
  void copy_to_host(void* dst, const void* src, size_t bytes) override {
    ++copies_to_host;
    FakeBackend::copy_to_host(dst, src, bytes);
  }
  int copies_to_host = 0;
  // The device engine this backend hands a ModditPolicy (Backend::make_moddit_engine).
  std::shared_ptr<core::ModditEngine> make_moddit_engine(const ModditConfig& cfg, int heads) override;
};

std::shared_ptr<core::ModditEngine> FakeGpu::make_moddit_engine(const ModditConfig& cfg, int heads) {
  return std::make_shared<FakeDeviceEngine>(cfg, heads);
}

TokenLayout tokens() {
  TokenLayout t;
  t.frames = 4;
  t.height = 6;
  t.width = 10;  // 60 tokens per frame: frames straddle 64-token blocks
  t.text_tokens = 20;
  t.text_valid = 13;
  t.text_position = TextPosition::Before;
  return t;
}

struct RunResult {
  std::vector<CallRecord> history;
  std::vector<float> out;
  std::vector<uint8_t> mask;
  Device state_device = Device::CPU;
  bool plain_dense_step0 = false, plain_dense_step1 = true;
  std::vector<double> density_before_wait;  // history_now() right after each call
};

RunResult run(std::shared_ptr<Backend> backend, bool device_step) {
  const TokenLayout tok = tokens();
  SessionOptions o;
  o.num_steps = 9;
  o.num_layers = 1;
  o.num_heads = 2;
  o.head_dim = 16;
  o.block_size = 64;
  ModditConfig c;
  c.block_size = 64;
  c.eta = 1e-2;
  c.warmup_steps = 3;
  c.interval = 3;  // records 1, 2; sparse 3-5; refresh 6; sparse 7, 8
  c.target_density = 0.4;
  c.device_step = device_step;
  auto policy = std::make_shared<ModditPolicy>(c, 1, 2);
  RunResult r;
  Session s(tok, o, backend, policy);
  s.begin_step(0);
  r.plain_dense_step0 = s.plain_dense(0, 2, 0);
  s.begin_step(1);
  r.plain_dense_step1 = s.plain_dense(0, 2, 0);
  std::mt19937 rng(11);
  std::normal_distribution<float> nd(0.f, 1.f);
  const int64_t N = tok.total_tokens();
  HostTensor q(DType::F32, 2, N, 2, 16), k = q, v = q, out = q;
  for (int step = 0; step < 9; ++step) {
    for (HostTensor* t : {&q, &k, &v})
      for (int64_t i = 0; i < t->numel(); ++i) t->f32()[i] = nd(rng);
    s.begin_step(step);
    s.attention(0, q.view(), k.view(), v.view(), out.view());
    r.density_before_wait.push_back(s.history_now().back().density);
  }
  r.history = s.history();
  r.out.assign(out.f32(), out.f32() + out.numel());
  r.mask = policy->video_mask(0, 1, 1);
  r.state_device = policy->state_device();
  return r;
}

TEST(DeviceStepPlumbing, SessionRunsADeviceEngineWithoutCopyingMaps) {
  FakeDeviceEngine::observed = 0;
  auto gpu = std::make_shared<FakeGpu>();
  const RunResult dev = run(gpu, true);
  EXPECT_EQ(dev.state_device, Device::CUDA);
  EXPECT_EQ(FakeDeviceEngine::observed, 3);  // two records and the refresh
  EXPECT_EQ(gpu->copies_to_host, 0);         // the maps stayed where the backend wrote them
  const RunResult host = run(std::make_shared<FakeBackend>(), true);  // a CPU backend: host engine
  EXPECT_EQ(host.state_device, Device::CPU);
  ASSERT_EQ(dev.history.size(), host.history.size());
  for (size_t i = 0; i < dev.history.size(); ++i) {
    EXPECT_EQ(dev.history[i].kind, host.history[i].kind);
    EXPECT_NEAR(dev.history[i].density, host.history[i].density, 1e-6);  // resolved from the device
  }
  EXPECT_LT(dev.history.back().density, 0.99);
  EXPECT_EQ(dev.mask, host.mask);
  // Before the wait a device density is NaN (sparse and refresh calls); the host's never.
  EXPECT_TRUE(std::isnan(dev.density_before_wait.back()));
  EXPECT_FALSE(std::isnan(dev.density_before_wait[1]));  // a record: dense, known
  EXPECT_FALSE(std::isnan(host.density_before_wait.back()));
  // Step 0 is a plain dense warm-up step (m = 3: records at 1 and 2); step 1 records.
  EXPECT_TRUE(dev.plain_dense_step0);
  EXPECT_FALSE(dev.plain_dense_step1);
  EXPECT_EQ(dev.out, host.out);
}

TEST(DeviceStepPlumbing, DeviceStepFalseKeepsTheStateOnTheHost) {
  auto gpu = std::make_shared<FakeGpu>();
  const RunResult r = run(gpu, false);
  EXPECT_EQ(r.state_device, Device::CPU);
  EXPECT_GT(gpu->copies_to_host, 0);  // the maps came to the host
}

// The engine comes from the call's backend, not from a registry filled as a side
// effect: a GPU-like backend that offers none leaves the state on the host, even
// after a backend that does offer one has been made and used.
class GpuWithoutEngine : public FakeBackend {
 public:
  Device device() const override { return Device::CUDA; }
};

TEST(DeviceStepPlumbing, TheEngineIsTheBackendsOwn) {
  EXPECT_EQ(run(std::make_shared<FakeGpu>(), true).state_device, Device::CUDA);
  const RunResult r = run(std::make_shared<GpuWithoutEngine>(), true);
  EXPECT_EQ(r.state_device, Device::CPU);
}

TEST(DeviceStepPlumbing, BackendsRefuseTheWrongLayoutKind) {
  const TokenLayout tok = tokens();
  const int64_t N = tok.total_tokens();
  HostTensor q(DType::F32, 1, N, 1, 16), out = q;
  const BlockGrid grid = make_block_grid(tok, 64);
  const BlockLayout full = full_layout(1, 1, grid.num_blocks());
  DeviceLayout d;
  d.batch = 1;
  d.heads = 1;
  d.num_q_blocks = d.num_k_blocks = grid.num_blocks();
  d.row_ptr = full.row_ptr.data();
  d.col_idx = full.col_idx.data();
  AttentionCall c;
  c.q = c.k = c.v = q.view();
  c.out = out.view();
  c.tokens = &tok;
  c.block_size = 64;
  c.device_layout = &d;
  try {
    make_cpu_backend(1)->attention(c);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("device layout"), std::string::npos) << e.what();
  }
  c.layout = &full;
  EXPECT_THROW(prepare_params(c, grid), Error);  // both kinds at once
  c.layout = nullptr;
  d.heads = 2;
  try {
    prepare_params(c, grid);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("heads 2"), std::string::npos) << e.what();
  }
}

}  // namespace
