// The CPU backend's contract beyond the numbers: input validation (errors, and
// nothing written on error), zero_heads, host memory ops, launch counting, and
// the thread pool under it.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <stdexcept>

#include "cpu/cpu_attention.hpp"
#include "cpu/test_support.hpp"
#include "cpu/thread_pool.hpp"
#include "moddit/backend.hpp"
#include "moddit/error.hpp"

using namespace moddit;
using namespace moddit_test;

namespace {

Problem small_problem() {
  Problem p;
  p.tokens = with_text(2, 8, 9, 40, 30, TextPosition::Before);  // 184 tokens, 64-blocks
  p.block_size = 64;
  p.H = 3;
  return p;
}

// Expects `call` to throw moddit::Error whose message contains `needle`, and
// the backend to write nothing and count no launch.
void expect_rejected(Backend& backend, Instance& inst, const AttentionCall& call,
                     const char* needle) {
  inst.out.storage = inst.out_initial;
  const std::vector<float> lse_before = inst.lse;
  const std::vector<int32_t> counts_before = inst.counts;
  const int64_t launches = backend.launches();
  try {
    backend.attention(call);
    ADD_FAILURE() << "no error; expected one mentioning '" << needle << "'";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos)
        << "message '" << e.what() << "' does not mention '" << needle << "'";
  }
  EXPECT_EQ(inst.out.storage, inst.out_initial);
  EXPECT_EQ(0, std::memcmp(lse_before.data(), inst.lse.data(), lse_before.size() * sizeof(float)));
  EXPECT_EQ(counts_before, inst.counts);
  EXPECT_EQ(backend.launches(), launches);
}

}  // namespace

TEST(CpuBackend, NameDeviceAndLaunchCount) {
  auto backend = make_cpu_backend(2);
  EXPECT_EQ(backend->name(), "cpu");
  EXPECT_EQ(backend->device(), Device::CPU);
  EXPECT_EQ(backend->launches(), 0);
  auto inst = make_instance(small_problem(), 1);
  run_backend(*backend, *inst);
  run_backend(*backend, *inst);
  EXPECT_EQ(backend->launches(), 2);
  backend->zero_heads(inst->out.view, {0});  // no launch on the CPU
  backend->synchronize();
  EXPECT_EQ(backend->launches(), 2);
  EXPECT_THROW(make_cpu_backend(-1), Error);
  EXPECT_NO_THROW(make_cpu_backend(0));
}

TEST(CpuBackend, RejectsBadInputBeforeAnyWork) {
  auto backend = make_cpu_backend(2);
  const Problem p = small_problem();
  auto inst = make_instance(p, 2);
  const AttentionCall good = inst->call();
  ASSERT_NO_THROW(backend->attention(good));

  {  // shape mismatch: k shorter along D
    AttentionCall c = good;
    c.k.shape[kD] = 32;
    expect_rejected(*backend, *inst, c, "k: shape");
  }
  {  // shape mismatch: out with one head fewer
    AttentionCall c = good;
    c.out.shape[kH] = 2;
    expect_rejected(*backend, *inst, c, "out: shape");
  }
  {  // dtype mismatch
    auto half = make_instance([&] { Problem q = p; q.dtype = DType::BF16; return q; }(), 3);
    AttentionCall c = good;
    c.v = half->v.view;
    expect_rejected(*backend, *inst, c, "v: dtype");
  }
  {  // inner stride not 1
    AttentionCall c = good;
    c.q.stride[kD] = 2;
    expect_rejected(*backend, *inst, c, "q: head-dim stride");
  }
  {  // overlapping rows
    AttentionCall c = good;
    c.k.stride[kH] = 10;  // < D = 64
    expect_rejected(*backend, *inst, c, "k: strides");
  }
  {  // sequence length that does not match the token layout
    TokenLayout other = p.tokens;
    other.text_tokens = 41;
    other.text_valid = 30;
    AttentionCall c = good;
    c.tokens = &other;
    expect_rejected(*backend, *inst, c, "sequence length");
  }
  {  // no token layout, bad block size
    AttentionCall c = good;
    c.tokens = nullptr;
    expect_rejected(*backend, *inst, c, "token layout");
    c = good;
    c.block_size = 96;
    expect_rejected(*backend, *inst, c, "block_size");
  }
  const int nb = p.num_blocks();
  {  // layout: out-of-range block index
    BlockLayout l = full_layout(1, 3, nb);
    l.col_idx[4] = nb;
    AttentionCall c = good;
    c.layout = &l;
    expect_rejected(*backend, *inst, c, "out of range");
  }
  {  // layout: duplicated block index
    BlockLayout l = full_layout(1, 3, nb);
    l.col_idx[1] = l.col_idx[0];
    AttentionCall c = good;
    c.layout = &l;
    expect_rejected(*backend, *inst, c, "duplicated");
  }
  {  // layout of the wrong size: wrong head count, wrong block count
    BlockLayout l = full_layout(1, 2, nb);
    AttentionCall c = good;
    c.layout = &l;
    expect_rejected(*backend, *inst, c, "block layout is");
    BlockLayout l2 = full_layout(1, 3, nb + 1);
    c.layout = &l2;
    expect_rejected(*backend, *inst, c, "block layout is");
    // A layout sized for all heads handed with a head subset.
    const std::vector<int32_t> heads = {0, 2};
    BlockLayout l3 = full_layout(1, 3, nb);
    c.heads = &heads;
    c.layout = &l3;
    expect_rejected(*backend, *inst, c, "block layout is");
  }
  {  // head subset out of range / not ascending
    const std::vector<int32_t> bad = {0, 3};
    const std::vector<int32_t> dup = {1, 1};
    AttentionCall c = good;
    c.heads = &bad;
    expect_rejected(*backend, *inst, c, "head index");
    c.heads = &dup;
    expect_rejected(*backend, *inst, c, "ascending");
  }
  {  // eta <= 0 (or not finite) with the map requested; fine without the map
    AttentionCall c = good;
    for (float eta : {0.f, -1e-3f, std::nanf("")}) {
      c.eta = eta;
      expect_rejected(*backend, *inst, c, "eta");
    }
    c.eta = 0.f;
    c.map_counts = nullptr;
    EXPECT_NO_THROW(backend->attention(c));
  }
  {  // a view on a CUDA device, named in the message
    for (int which = 0; which < 4; ++which) {
      AttentionCall c = good;
      TensorView* views[4] = {&c.q, &c.k, &c.v, &c.out};
      const char* names[4] = {"q: tensor is on cuda", "k: tensor is on cuda",
                              "v: tensor is on cuda", "out: tensor is on cuda"};
      views[which]->device = Device::CUDA;
      expect_rejected(*backend, *inst, c, names[which]);
    }
  }
}

TEST(CpuBackend, ZeroHeadsWritesOnlyTheGivenHeads) {
  auto backend = make_cpu_backend(1);
  std::mt19937 rng(9);
  for (DType dt : {DType::F32, DType::BF16, DType::F16}) {
    for (Arrangement arr : {Arrangement::NHD, Arrangement::HND, Arrangement::Strided}) {
      const int64_t B = 2, N = 37, H = 4, D = 16;
      TestTensor t = random_tensor(dt, arr, B, N, H, D, 1.f, rng);
      const std::vector<uint8_t> before = t.storage;
      backend->zero_heads(t.view, {1, 3});
      // Expected: rows of heads 1 and 3 zero, every other byte as before.
      std::vector<uint8_t> expected = before;
      const int64_t es = dtype_size(dt);
      const ptrdiff_t base = static_cast<uint8_t*>(t.view.data) - t.storage.data();
      for (int64_t b = 0; b < B; ++b)
        for (int64_t n = 0; n < N; ++n)
          for (int64_t h : {1, 3})
            std::memset(expected.data() + base + t.view.offset(b, n, h) * es, 0,
                        static_cast<size_t>(D * es));
      EXPECT_EQ(t.storage, expected) << to_string(dt) << " arrangement " << static_cast<int>(arr);
      std::vector<float> row(D);
      load_row_f32(t.view, 1, 5, 3, row.data());
      for (float x : row) EXPECT_EQ(x, 0.f);
    }
  }
  TestTensor t = random_tensor(DType::F32, Arrangement::NHD, 1, 8, 2, 16, 1.f, rng);
  EXPECT_THROW(backend->zero_heads(t.view, {2}), Error);
  EXPECT_THROW(backend->zero_heads(t.view, {-1}), Error);
  TensorView on_gpu = t.view;
  on_gpu.device = Device::CUDA;
  EXPECT_THROW(backend->zero_heads(on_gpu, {0}), Error);
  EXPECT_NO_THROW(backend->zero_heads(t.view, {}));
}

TEST(CpuBackend, HostMemoryOps) {
  auto backend = make_cpu_backend(1);
  std::shared_ptr<void> mem = backend->allocate(1000 * sizeof(int32_t));
  ASSERT_NE(mem.get(), nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(mem.get()) % 64, 0u);
  EXPECT_NE(backend->allocate(0).get(), nullptr);
  int32_t* p = static_cast<int32_t*>(mem.get());
  backend->fill_i32(p, -3, 1000);
  std::vector<int32_t> host(1000, 0);
  backend->copy_to_host(host.data(), p, 1000 * sizeof(int32_t));
  for (int32_t x : host) ASSERT_EQ(x, -3);
  for (int i = 0; i < 1000; ++i) host[static_cast<size_t>(i)] = i * 7 - 11;
  backend->copy_from_host(p, host.data(), 1000 * sizeof(int32_t));
  std::vector<int32_t> back(1000, 0);
  backend->copy_to_host(back.data(), p, 1000 * sizeof(int32_t));
  EXPECT_EQ(back, host);
}

TEST(CpuBackend, KernelEntryPointMatchesBackend) {
  // cpu_attention(params, threads) on its own, for callers with their own params.
  Problem p = small_problem();
  auto a = make_instance(p, 4);
  auto b = make_instance(p, 4);
  run_backend(*make_cpu_backend(2), *a);
  const BlockGrid grid = make_block_grid(p.tokens, p.block_size);
  cpu_attention(prepare_params(b->call(), grid), 2);
  EXPECT_EQ(a->out.storage, b->out.storage);
  EXPECT_EQ(0, std::memcmp(a->lse.data(), b->lse.data(), a->lse.size() * sizeof(float)));
  EXPECT_EQ(a->counts, b->counts);
}

TEST(ThreadPool, RunsEveryItemOnceAndPropagatesErrors) {
  for (int threads : {1, 2, 5}) {
    ThreadPool pool(threads);
    EXPECT_EQ(pool.size(), threads);
    for (int64_t n : {0, 1, 3, 1000}) {
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
      std::atomic<int> bad_worker{0};
      pool.parallel_for(n, [&](int64_t i, int worker) {
        hits[static_cast<size_t>(i)].fetch_add(1);
        if (worker < 0 || worker >= threads) bad_worker.fetch_add(1);
      });
      for (auto& h : hits) ASSERT_EQ(h.load(), 1);
      EXPECT_EQ(bad_worker.load(), 0);
    }
    EXPECT_THROW(pool.parallel_for(100,
                                   [](int64_t i, int) {
                                     if (i == 17) throw std::runtime_error("boom");
                                   }),
                 std::runtime_error);
    std::atomic<int64_t> sum{0};  // still usable after an error
    pool.parallel_for(10, [&](int64_t i, int) { sum.fetch_add(i); });
    EXPECT_EQ(sum.load(), 45);
  }
}
