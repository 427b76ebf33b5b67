// Issue 13 in the core: eta has one source (the policy that asks for the map:
// ModditConfig::eta for MOD-DiT), a policy's device state is bound to the backend
// it was made on (a call through another backend is refused), and Session and
// policy sizes are bounded before anything is allocated.
#include <gtest/gtest.h>

#include <climits>
#include <random>

#include "core/moddit_engine.hpp"
#include "fake_backend.hpp"
#include "expect_error.hpp"
#include "moddit/error.hpp"
#include "moddit/host_tensor.hpp"
#include "moddit/moddit_policy.hpp"
#include "moddit/session.hpp"

using namespace moddit;
using moddit_test::FakeBackend;

namespace {

using moddit::test::expect_error;

// Records the eta of every call that records the map.
class EtaBackend : public FakeBackend {
 public:
  void attention(const AttentionCall& c) override {
    if (c.map_counts) etas.push_back(c.eta);
    FakeBackend::attention(c);
  }
  std::vector<float> etas;
};

TokenLayout small_tokens() {
  TokenLayout t;
  t.frames = 2;
  t.height = 4;
  t.width = 16;
  return t;
}

TEST(RobustCore, TheMapIsRecordedWithTheConfigsEta) {
  const TokenLayout tok = small_tokens();
  SessionOptions o;
  o.num_steps = 6;
  o.num_layers = 1;
  o.num_heads = 2;
  o.head_dim = 16;
  o.block_size = 64;
  ModditConfig c;
  c.block_size = 64;
  c.eta = 0.03;  // not the default: the map must use this one
  c.warmup_steps = 3;
  c.interval = 2;
  auto backend = std::make_shared<EtaBackend>();
  Session s(tok, o, backend, std::make_shared<ModditPolicy>(c, 1, 2));
  HostTensor q(DType::F32, 1, tok.total_tokens(), 2, 16), k = q, v = q, out = q;
  std::mt19937 rng(3);
  std::normal_distribution<float> nd;
  for (HostTensor* t : {&q, &k, &v})
    for (int64_t i = 0; i < t->numel(); ++i) t->f32()[i] = nd(rng);
  for (int step = 0; step < 6; ++step) {
    s.begin_step(step);
    s.attention(0, q.view(), k.view(), v.view(), out.view());
  }
  ASSERT_FALSE(backend->etas.empty());  // records at 1 and 2, refresh at 5
  for (float e : backend->etas) EXPECT_FLOAT_EQ(e, 0.03f);
}

// ---- device state bound to its backend ------------------------------------------

class BoundEngine final : public core::ModditEngine {
 public:
  BoundEngine(const ModditConfig& cfg, int heads) : host_(core::make_host_engine(cfg, heads)) {}
  Plan plan_masks(const CallInfo& call, CallKind kind) override { return host_->plan_masks(call, kind); }
  void observe(const CallInfo& call, const Plan& plan, const int32_t* m) override {
    host_->observe(call, plan, m);
  }
  bool map_on_device() const override { return true; }
  Device device() const override { return Device::CUDA; }
  std::vector<float> fused_map(int l, int s, int h) const override { return host_->fused_map(l, s, h); }
  std::vector<float> fitted_map(int l, int s, int h) const override { return host_->fitted_map(l, s, h); }
  std::vector<uint8_t> video_mask(int l, int s, int h) const override { return host_->video_mask(l, s, h); }
  const std::vector<FitRecord>& fits() override { return host_->fits(); }
  int64_t state_bytes() const override { return host_->state_bytes(); }

 private:
  std::unique_ptr<core::ModditEngine> host_;
};

// A "GPU" backend whose engine is the host one, held in the "device" state.
class FakeGpu : public FakeBackend {
 public:
  Device device() const override { return Device::CUDA; }
  std::shared_ptr<core::ModditEngine> make_moddit_engine(const ModditConfig& cfg, int heads) override {
    return std::make_shared<BoundEngine>(cfg, heads);
  }
};

TEST(RobustCore, DeviceStateIsRefusedOnAnotherBackend) {
  const TokenLayout tok = small_tokens();
  SessionOptions o;
  o.num_steps = 6;
  o.num_layers = 1;
  o.num_heads = 2;
  o.head_dim = 16;
  o.block_size = 64;
  ModditConfig c;
  c.block_size = 64;
  c.warmup_steps = 2;
  c.interval = 2;
  auto policy = std::make_shared<ModditPolicy>(c, 1, 2);
  auto gpu_a = std::make_shared<FakeGpu>(), gpu_b = std::make_shared<FakeGpu>();
  Session a(tok, o, gpu_a, policy), b(tok, o, gpu_b, policy);
  HostTensor q(DType::F32, 1, tok.total_tokens(), 2, 16), k = q, v = q, out = q;
  std::mt19937 rng(5);
  std::normal_distribution<float> nd;
  for (HostTensor* t : {&q, &k, &v})
    for (int64_t i = 0; i < t->numel(); ++i) t->f32()[i] = nd(rng);
  a.begin_step(0);
  a.attention(0, q.view(), k.view(), v.view(), out.view());  // record: the state is made on gpu_a
  EXPECT_EQ(policy->state_device(), Device::CUDA);
  b.begin_step(1);
  expect_error([&] { b.attention(0, q.view(), k.view(), v.view(), out.view()); }, "another backend");
  a.begin_step(1);
  EXPECT_NO_THROW(a.attention(0, q.view(), k.view(), v.view(), out.view()));
}

// ---- sizes bounded before allocation ----------------------------------------------

TEST(RobustCore, SessionAndPolicySizesAreBounded) {
  const TokenLayout tok = small_tokens();
  auto be = std::make_shared<FakeBackend>();
  auto make = [&](int steps, int layers, int heads) {
    SessionOptions o;
    o.num_steps = steps;
    o.num_layers = layers;
    o.num_heads = heads;
    o.head_dim = 16;
    o.block_size = 64;
    Session s(tok, o, be, std::make_shared<ModditPolicy>(ModditConfig{}, 1, 1));
  };
  expect_error([&] { make(INT_MAX, 1, 1); }, "num_steps");
  expect_error([&] { make(10, INT_MAX, 1); }, "num_layers");
  expect_error([&] { make(10, 1, INT_MAX); }, "num_heads");
  expect_error([] { ModditPolicy p(ModditConfig{}, INT_MAX, 1); }, "num_layers");
  expect_error([] { ModditPolicy p(ModditConfig{}, 1, INT_MAX); }, "num_heads");
  expect_error([] { make_cpu_backend(INT_MAX); }, "threads");
  // An explicit state slot near INT_MAX would overflow slot + batch.
  SessionOptions o;
  o.num_steps = 4;
  o.num_heads = 1;
  o.head_dim = 16;
  o.block_size = 64;
  ModditConfig c64;
  c64.block_size = 64;
  Session s(tok, o, be, std::make_shared<ModditPolicy>(c64, 1, 1));
  HostTensor q(DType::F32, 1, tok.total_tokens(), 1, 16), k = q, v = q, out = q;
  s.begin_step(0);
  expect_error([&] { s.attention(0, q.view(), k.view(), v.view(), out.view(), INT_MAX); },
               "slot_begin");
  expect_error([&] { s.plain_dense(0, 1, INT_MAX); }, "slot_begin");
}

}  // namespace
