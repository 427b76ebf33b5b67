// The CUDA backend queues everything on the caller's stream (set_stream) and
// waits for nothing unless the host needs a result: while a stream is held back
// by a host callback (tests/gpu/stream_gate.hpp), attention, fills and zero_heads return at once
// and the stream stays busy; the results then equal those of the default stream
// bit for bit (the kernels are deterministic), also across stream switches with
// fresh layouts (uploads and cache evictions in stream order).
#include <gtest/gtest.h>

#if MODDIT_WITH_CUDA
#include <cuda_runtime.h>

#include <random>

#include "gpu_test_util.hpp"
#include "stream_gate.hpp"

namespace moddit::gputest {
namespace {

struct Inputs {
  TokenLayout tokens;
  int B = 1, H = 4, D = 128;
  int64_t N = 0;
  std::shared_ptr<void> q, k, v;
  std::vector<uint16_t> out_init;
};

TensorView view(void* p, const Inputs& in) {
  return make_view(p, DType::BF16, Layout::NHD, in.B, in.N, in.H, in.D, Device::CUDA);
}

struct Result {
  std::vector<uint16_t> out;
  std::vector<int32_t> map;
};

// Runs attention (with the map) and zero_heads on head 3, on the backend's
// current stream; returns out and map copied back. With `held`, that stream is
// held back while the calls are made and must still be busy after them.
Result run(Backend& gpu, const Inputs& in, const BlockLayout* layout, const BlockGrid& grid,
           cudaStream_t held) {
  const size_t numel = in.out_init.size();
  const int n = grid.num_video_blocks;
  auto out = gpu.allocate(numel * 2);
  auto map = gpu.allocate(size_t(in.B) * in.H * n * n * sizeof(int32_t));
  gpu.copy_from_host(out.get(), in.out_init.data(), numel * 2);
  StreamGate gate;
  if (held) {
    gpu.synchronize();  // the uploads are done; now hold the stream
    EXPECT_TRUE(gate.hold(held));
  }
  gpu.fill_i32(static_cast<int32_t*>(map.get()), -1, size_t(in.B) * in.H * n * n);
  AttentionCall c;
  c.q = view(in.q.get(), in);
  c.k = view(in.k.get(), in);
  c.v = view(in.v.get(), in);
  c.out = view(out.get(), in);
  c.tokens = &in.tokens;
  c.layout = layout;
  c.map_counts = static_cast<int32_t*>(map.get());
  gpu.attention(c);
  gpu.zero_heads(c.out, {3});
  // Nothing above waited for the device: the held stream is still busy.
  if (held) {
    EXPECT_EQ(cudaStreamQuery(held), cudaErrorNotReady);
    gate.open();  // before the copies below, which wait for the stream
  }
  Result r;
  r.out.resize(numel);
  r.map.resize(size_t(in.B) * in.H * n * n);
  gpu.copy_to_host(r.out.data(), out.get(), numel * 2);
  gpu.copy_to_host(r.map.data(), map.get(), r.map.size() * sizeof(int32_t));
  return r;
}

TEST(CudaStream, WorkIsQueuedOnTheCallersStreamWithoutWaiting) {
  MODDIT_REQUIRE_GPU();
  auto gpu = cuda_backend();
  std::random_device rd;
  std::mt19937 rng(rd());
  Inputs in;
  in.tokens.frames = 3;
  in.tokens.height = 10;
  in.tokens.width = 21;  // N = 630: four full blocks and a partial one
  in.N = in.tokens.total_tokens();
  const size_t numel = size_t(in.B) * in.N * in.H * in.D;
  for (auto* p : {&in.q, &in.k, &in.v}) {
    const HostPair h = random_tensor(rng, int64_t(numel), DType::BF16, 1.5f);
    *p = gpu->allocate(numel * 2);
    gpu->copy_from_host(p->get(), h.bits.data(), numel * 2);
  }
  in.out_init = random_tensor(rng, int64_t(numel), DType::BF16, 1.f).bits;
  const BlockGrid grid = make_block_grid(in.tokens, 128);
  const BlockLayout sparse = random_layout(rng, in.B, in.H, grid.num_blocks(), 0.5);

  // Reference on the legacy default stream.
  const Result ref_dense = run(*gpu, in, nullptr, grid, nullptr);
  const Result ref_sparse = run(*gpu, in, &sparse, grid, nullptr);
  // Head 3 zeroed, the others written and different from the initial values.
  const size_t per_head = in.D;
  bool zeroed = true, written = false;
  for (size_t i = 0; i < numel; ++i) {
    const int h = int((i / per_head) % in.H);
    if (h == 3) zeroed &= ref_dense.out[i] == 0;
    else written |= ref_dense.out[i] != in.out_init[i];
  }
  EXPECT_TRUE(zeroed);
  EXPECT_TRUE(written);

  cudaStream_t s1 = nullptr, s2 = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&s1, cudaStreamNonBlocking), cudaSuccess);
  ASSERT_EQ(cudaStreamCreateWithFlags(&s2, cudaStreamNonBlocking), cudaSuccess);
  gpu->set_stream(s1);
  EXPECT_EQ(gpu->stream(), static_cast<void*>(s1));
  const Result a = run(*gpu, in, nullptr, grid, s1);
  EXPECT_EQ(a.out, ref_dense.out);
  EXPECT_EQ(a.map, ref_dense.map);
  // A fresh layout (a cache miss: upload and schedule in stream order) on s2.
  gpu->set_stream(s2);
  const BlockLayout other = random_layout(rng, in.B, in.H, grid.num_blocks(), 0.3);
  const Result b0 = run(*gpu, in, &other, grid, s2);
  const Result b = run(*gpu, in, &sparse, grid, s2);
  EXPECT_EQ(b.out, ref_sparse.out);
  EXPECT_EQ(b.map, ref_sparse.map);
  // Many distinct layouts evict cached copies; results stay right.
  for (int i = 0; i < 12; ++i) {
    const BlockLayout l = random_layout(rng, in.B, in.H, grid.num_blocks(), 0.2 + 0.05 * i);
    BlockLayout copy = l;
    run(*gpu, in, &copy, grid, nullptr);
  }
  const Result c = run(*gpu, in, &other, grid, nullptr);
  EXPECT_EQ(c.out, b0.out);
  EXPECT_EQ(c.map, b0.map);
  gpu->set_stream(nullptr);
  EXPECT_EQ(gpu->stream(), nullptr);
  gpu.reset();  // frees its caches (null stream) before the streams go; q, k, v outlive it
  EXPECT_EQ(cudaStreamDestroy(s1), cudaSuccess);
  EXPECT_EQ(cudaStreamDestroy(s2), cudaSuccess);
}

}  // namespace
}  // namespace moddit::gputest
#endif  // MODDIT_WITH_CUDA
