// Session with a small fake backend: slots (CFG as batch 2 or two calls),
// plans run per group, skipped heads, map recording, call records, validation.
#include <gtest/gtest.h>

#include <random>

#include "fake_backend.hpp"
#include "moddit/error.hpp"
#include "moddit/host_tensor.hpp"
#include "moddit/moddit_policy.hpp"
#include "moddit/session.hpp"

using namespace moddit;
using moddit_test::FakeBackend;

namespace {

TokenLayout small_tokens() {
  TokenLayout t;
  t.frames = 4;
  t.height = 6;
  t.width = 8;  // 48 tokens per frame, 192 video tokens: 3 blocks of 64
  t.text_tokens = 30;
  t.text_valid = 25;
  t.text_position = TextPosition::After;
  return t;
}

SessionOptions small_options() {
  SessionOptions o;
  o.num_steps = 12;
  o.num_layers = 2;
  o.num_heads = 3;
  o.head_dim = 16;
  o.block_size = 64;
  return o;
}

ModditConfig small_config() {
  ModditConfig c;
  c.block_size = 64;
  c.eta = 1e-2;
  c.warmup_steps = 4;
  c.interval = 3;
  c.top_k = 2;
  c.tau_e = 0.2;
  c.dense_layers = {0};
  return c;
}

HostTensor random_tensor(std::mt19937& rng, int B, int64_t N, int H, int D, float scale) {
  HostTensor t(DType::F32, B, N, H, D);
  std::normal_distribution<float> nd(0.f, scale);
  for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = nd(rng);
  return t;
}

// Item b of a batch-2 tensor as a batch-1 tensor.
HostTensor item(const HostTensor& t, int b) {
  HostTensor r(t.dtype, 1, t.shape[1], t.shape[2], t.shape[3]);
  const size_t per = r.bytes.size();
  std::copy(t.bytes.begin() + b * per, t.bytes.begin() + (b + 1) * per, r.bytes.begin());
  return r;
}

}  // namespace

TEST(Session, CfgAsBatchTwoOrTwoCallsGivesTheSameStateAndOutputs) {
  const TokenLayout tokens = small_tokens();
  const SessionOptions o = small_options();
  const int64_t N = tokens.total_tokens();
  auto make = [&](std::shared_ptr<ModditPolicy>& pol) {
    pol = std::make_shared<ModditPolicy>(small_config(), o.num_layers, o.num_heads);
    return Session(tokens, o, std::make_shared<FakeBackend>(), pol);
  };
  std::shared_ptr<ModditPolicy> pa, pb, pc;
  Session batched = make(pa), two_calls = make(pb), explicit_slots = make(pc);
  std::mt19937 rng(41);
  for (int step = 0; step < o.num_steps; ++step) {
    batched.begin_step(step);
    two_calls.begin_step(step);
    explicit_slots.begin_step(step);
    for (int layer = 0; layer < o.num_layers; ++layer) {
      HostTensor q = random_tensor(rng, 2, N, o.num_heads, o.head_dim, 1.5f);
      HostTensor k = random_tensor(rng, 2, N, o.num_heads, o.head_dim, 1.5f);
      HostTensor v = random_tensor(rng, 2, N, o.num_heads, o.head_dim, 1.0f);
      HostTensor out2(DType::F32, 2, N, o.num_heads, o.head_dim);
      batched.attention(layer, q.view(), k.view(), v.view(), out2.view());
      for (int b = 0; b < 2; ++b) {
        HostTensor qb = item(q, b), kb = item(k, b), vb = item(v, b);
        HostTensor o1(DType::F32, 1, N, o.num_heads, o.head_dim);
        two_calls.attention(layer, qb.view(), kb.view(), vb.view(), o1.view());
        EXPECT_EQ(o1.bytes, item(out2, b).bytes) << "step " << step << " layer " << layer;
      }
      // Explicit slots, the unconditional branch first.
      for (int b : {1, 0}) {
        HostTensor qb = item(q, b), kb = item(k, b), vb = item(v, b);
        HostTensor o1(DType::F32, 1, N, o.num_heads, o.head_dim);
        explicit_slots.attention(layer, qb.view(), kb.view(), vb.view(), o1.view(), b);
        EXPECT_EQ(o1.bytes, item(out2, b).bytes);
      }
    }
  }
  ASSERT_EQ(pa->fits().size(), pb->fits().size());
  ASSERT_EQ(pa->fits().size(), size_t(4 * 2 * o.num_heads));  // steps 2, 3, 7, 10; 2 slots
  for (size_t i = 0; i < pa->fits().size(); ++i) EXPECT_EQ(pa->fits()[i].nae, pb->fits()[i].nae);
  for (int slot = 0; slot < 2; ++slot)
    for (int h = 0; h < o.num_heads; ++h) {
      EXPECT_FALSE(pa->fused_map(1, slot, h).empty());
      EXPECT_EQ(pa->fused_map(1, slot, h), pb->fused_map(1, slot, h));
      EXPECT_EQ(pa->fused_map(1, slot, h), pc->fused_map(1, slot, h));
      EXPECT_EQ(pa->video_mask(1, slot, h), pb->video_mask(1, slot, h));
      EXPECT_EQ(pa->fitted_map(1, slot, h), pc->fitted_map(1, slot, h));
      EXPECT_TRUE(pa->fused_map(0, slot, h).empty());  // dense layer: no state
    }
  EXPECT_NE(pa->fused_map(1, 0, 0), pa->fused_map(1, 1, 0));  // the branches differ

  // Call records: layer 0 always dense, layer 1 follows the schedule.
  double max_fused = 0.0;
  for (float x : pa->fused_map(1, 0, 1)) max_fused = std::max<double>(max_fused, x);
  EXPECT_GT(max_fused, 0.0);  // the fake backend's maps are not trivially empty
  int sparse_calls = 0;
  const auto& hist = batched.history();
  ASSERT_EQ(hist.size(), size_t(o.num_steps * o.num_layers));
  for (const CallRecord& r : hist) {
    EXPECT_EQ(r.batch, 2);
    EXPECT_EQ(r.slot_begin, 0);
    EXPECT_EQ(r.launches, 1);
    EXPECT_GE(r.seconds, 0.0);
    EXPECT_GE(r.overhead_seconds, 0.0);
    CallKind want = CallKind::Dense;
    if (r.layer == 1) {
      if (r.step == 2 || r.step == 3) want = CallKind::Record;
      else if (r.step == 7 || r.step == 10) want = CallKind::Refresh;
      else if (r.step >= 4) want = CallKind::Sparse;
    }
    EXPECT_EQ(r.kind, want) << "step " << r.step << " layer " << r.layer;
    if (want == CallKind::Sparse || want == CallKind::Refresh) {
      EXPECT_LT(r.density, 1.0);
      EXPECT_GT(r.density, 0.0);
      ++sparse_calls;
    } else {
      EXPECT_EQ(r.density, 1.0);
    }
  }
  EXPECT_EQ(sparse_calls, 8);
  EXPECT_EQ(two_calls.history()[1].slot_begin, 1);  // second call of layer 0 in step 0
}

namespace {
// Runs head 0 and head 2 in one dense launch and skips head 1.
class SkipOnePolicy : public Policy {
 public:
  std::string name() const override { return "skip-one"; }
  Plan plan(const CallInfo& c) override {
    Plan p;
    HeadGroup g;
    g.heads = {0, 2};
    g.label = "dense";
    p.groups.push_back(g);
    p.record_map = true;
    seen_counts = 0;
    return p;
  }
  void observe(const CallInfo& c, const Plan& p, const int32_t* counts) override {
    const int n = c.grid->num_video_blocks;
    for (int h = 0; h < c.num_heads; ++h)
      for (int k = 0; k < n * n; ++k) {
        const int32_t v = counts[h * n * n + k];
        if (h == 1) EXPECT_EQ(v, -1);  // never computed
        else EXPECT_GE(v, 0);
        ++seen_counts;
      }
  }
  int seen_counts = 0;
};
}  // namespace

TEST(Session, SkippedHeadsAreZeroedWithoutALaunchAndMapsStartAtMinusOne) {
  const TokenLayout tokens = small_tokens();
  const SessionOptions o = small_options();
  auto backend = std::make_shared<FakeBackend>();
  auto policy = std::make_shared<SkipOnePolicy>();
  Session s(tokens, o, backend, policy);
  std::mt19937 rng(42);
  const int64_t N = tokens.total_tokens();
  HostTensor q = random_tensor(rng, 1, N, 3, 16, 1.f), k = random_tensor(rng, 1, N, 3, 16, 1.f),
             v = random_tensor(rng, 1, N, 3, 16, 1.f);
  HostTensor out = random_tensor(rng, 1, N, 3, 16, 1.f);  // garbage that must be overwritten
  s.begin_step(0);
  s.attention(0, q.view(), k.view(), v.view(), out.view());
  EXPECT_EQ(backend->launches(), 1);
  EXPECT_EQ(backend->zero_calls, 1);
  EXPECT_EQ(policy->seen_counts, 3 * 9);
  std::vector<float> row(16);
  for (int64_t t = 0; t < N; ++t) {
    load_row_f32(out.view(), 0, t, 1, row.data());
    for (float x : row) ASSERT_EQ(x, 0.f);
  }
  load_row_f32(out.view(), 0, 5, 0, row.data());
  EXPECT_NE(row[0], 0.f);
  EXPECT_NEAR(s.history().back().density, 2.0 / 3.0, 1e-12);
}

// A call's precision: the policy's (MOD-DiT: warmup_precision for the plain
// dense calls, precision for the others), else the Session's.
TEST(Session, PrecisionComesFromThePolicyOrTheSession) {
  const TokenLayout tokens = small_tokens();
  SessionOptions o = small_options();
  std::mt19937 rng(43);
  const int64_t N = tokens.total_tokens();
  HostTensor q = random_tensor(rng, 1, N, 3, 16, 1.f), k = random_tensor(rng, 1, N, 3, 16, 1.f),
             v = random_tensor(rng, 1, N, 3, 16, 1.f), out = random_tensor(rng, 1, N, 3, 16, 1.f);
  {
    ModditConfig c = small_config();  // warm-up 4 (records at 2, 3), layer 0 dense
    c.precision = "fp8";
    auto backend = std::make_shared<FakeBackend>();
    auto policy = std::make_shared<ModditPolicy>(c, o.num_layers, o.num_heads);
    Session s(tokens, o, backend, policy);
    std::vector<Precision> want;
    for (int step = 0; step < 6; ++step) {
      s.begin_step(step);
      for (int layer = 0; layer < 2; ++layer) {
        const size_t before = backend->precisions.size();
        s.attention(layer, q.view(), k.view(), v.view(), out.view());
        const Precision p = layer == 1 && step >= 2 ? Precision::FP8 : Precision::Exact;
        for (size_t i = before; i < backend->precisions.size(); ++i)
          EXPECT_EQ(backend->precisions[i], p) << "step " << step << " layer " << layer;
        EXPECT_EQ(s.plain_dense(layer, 1), layer == 0 || step < 2) << step;
      }
    }
    c.warmup_precision = "fp8";
    ModditPolicy fp8_warmup(c, o.num_layers, o.num_heads);
    CallInfo info;
    info.num_steps = o.num_steps;
    info.num_heads = o.num_heads;
    info.batch = 1;
    info.tokens = &tokens;
    const BlockGrid grid = make_block_grid(tokens, o.block_size);
    info.grid = &grid;
    EXPECT_EQ(fp8_warmup.plan(info).precision, Precision::FP8);  // step 0: plain dense, FP8
    EXPECT_FALSE(fp8_warmup.plain_dense(info));  // not the caller's exact attention
  }
  o.precision = Precision::FP8;
  auto backend = std::make_shared<FakeBackend>();
  Session s(tokens, o, backend, std::make_shared<SkipOnePolicy>());
  s.begin_step(0);
  s.attention(0, q.view(), k.view(), v.view(), out.view());
  ASSERT_EQ(backend->precisions.size(), 1u);
  EXPECT_EQ(backend->precisions[0], Precision::FP8);
}

TEST(Session, ValidatesInputsWithClearErrors) {
  const TokenLayout tokens = small_tokens();
  const SessionOptions o = small_options();
  auto policy = std::make_shared<ModditPolicy>(small_config(), o.num_layers, o.num_heads);
  Session s(tokens, o, std::make_shared<FakeBackend>(), policy);
  std::mt19937 rng(43);
  const int64_t N = tokens.total_tokens();
  auto expect_error = [](auto&& fn, const char* needle) {
    try {
      fn();
      ADD_FAILURE() << "no error, expected one naming " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  HostTensor q = random_tensor(rng, 1, N, 3, 16, 1.f), k = random_tensor(rng, 1, N, 3, 16, 1.f),
             v = random_tensor(rng, 1, N, 3, 16, 1.f), out(DType::F32, 1, N, 3, 16);
  HostTensor q4 = random_tensor(rng, 1, N, 4, 16, 1.f), q32 = random_tensor(rng, 1, N, 3, 32, 1.f),
             qshort = random_tensor(rng, 1, N - 1, 3, 16, 1.f), k2 = random_tensor(rng, 2, N, 3, 16, 1.f);
  s.begin_step(0);
  expect_error([&] { s.attention(0, q4.view(), k.view(), v.view(), out.view()); }, "num_heads");
  expect_error([&] { s.attention(0, q32.view(), k.view(), v.view(), out.view()); }, "head_dim");
  expect_error([&] { s.attention(0, qshort.view(), k.view(), v.view(), out.view()); },
               "sequence length");
  expect_error([&] { s.attention(0, q.view(), k2.view(), v.view(), out.view()); }, "k: shape");
  expect_error([&] { s.attention(0, q.view(), k.view(), v.view(), q.view()); }, "alias");
  expect_error([&] { s.attention(2, q.view(), k.view(), v.view(), out.view()); }, "layer");
  expect_error([&] { s.begin_step(12); }, "num_steps");
  SessionOptions bad = o;
  bad.block_size = 96;
  expect_error([&] { Session(tokens, bad, std::make_shared<FakeBackend>(), policy); },
               "block_size");
  EXPECT_NO_THROW(s.attention(0, q.view(), k.view(), v.view(), out.view()));
}
