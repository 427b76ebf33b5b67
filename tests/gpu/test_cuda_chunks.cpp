// Chunk calls on CUDA (ring attention: one query chunk against one key chunk at
// any token offsets) against the CPU backend's chunk calls on the same values,
// on both kernels (128-token blocks: the Hopper kernel on sm_90, 64: the portable
// one), with text before/after and padding, chunk edges inside blocks, dense and
// sliced sparse layouts. Rows outside the query chunk must stay untouched. The
// chunk pairs merged by their LSE must give the CPU whole-sequence call.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "gpu_test_util.hpp"

namespace moddit::gputest {
namespace {

// Tokens [n0, n0 + len) of a view.
TensorView rows_of(TensorView t, int64_t n0, int64_t len) {
  t.data = static_cast<char*>(t.data) + n0 * t.stride[kN] * dtype_size(t.dtype);
  t.shape[kN] = len;
  return t;
}

struct ChunkCase {
  TokenLayout tokens;
  int block_size = 128;
  int B = 1, H = 2, D = 128;
  double density = 1.0;  // 1: dense (no layout)
  std::vector<int64_t> cuts;
  uint32_t seed = 1;
};

struct CudaChunks : GpuCpuTest {
  // Every chunk pair on both backends; the GPU partials merged on the host
  // against the CPU whole-sequence call.
  void run(const ChunkCase& c) {
    std::mt19937 rng(c.seed);
    const TokenLayout& tk = c.tokens;
    const int64_t N = tk.total_tokens();
    const int B = c.B, H = c.H, D = c.D;
    const int64_t numel = int64_t(B) * N * H * D;
    const BlockGrid grid = make_block_grid(tk, c.block_size);
    const DType dt = DType::BF16;
    HostPair q = random_tensor(rng, numel, dt, 1.5f), k = random_tensor(rng, numel, dt, 1.5f),
             v = random_tensor(rng, numel, dt, 1.0f), poison = random_tensor(rng, numel, dt, 3.0f);
    BlockLayout layout;
    const bool dense = c.density >= 1.0;
    if (!dense) layout = random_layout(rng, B, H, grid.num_blocks(), c.density);

    auto dq = upload(*gpu, q.bits), dk = upload(*gpu, k.bits), dv = upload(*gpu, v.bits);
    const TensorView gq = make_view(dq.get(), dt, Layout::NHD, B, N, H, D, Device::CUDA);
    const TensorView gk = make_view(dk.get(), dt, Layout::NHD, B, N, H, D, Device::CUDA);
    const TensorView gv = make_view(dv.get(), dt, Layout::NHD, B, N, H, D, Device::CUDA);
    const TensorView cq = make_view(q.f32.data(), DType::F32, Layout::NHD, B, N, H, D);
    const TensorView ck = make_view(k.f32.data(), DType::F32, Layout::NHD, B, N, H, D);
    const TensorView cv = make_view(v.f32.data(), DType::F32, Layout::NHD, B, N, H, D);

    // CPU whole-sequence reference.
    std::vector<float> ref(numel), ref_lse(size_t(B) * H * N);
    {
      AttentionCall w;
      w.q = cq;
      w.k = ck;
      w.v = cv;
      w.out = make_view(ref.data(), DType::F32, Layout::NHD, B, N, H, D);
      w.tokens = &tk;
      w.block_size = c.block_size;
      w.layout = dense ? nullptr : &layout;
      w.lse = ref_lse.data();
      cpu->attention(w);
    }

    std::vector<double> merged(numel, 0.0), merged_lse(size_t(B) * H * N, -INFINITY);
    double worst_pair = 0, worst_lse = 0;
    int64_t outside_written = 0;
    for (size_t qi = 0; qi + 1 < c.cuts.size(); ++qi)
      for (size_t ki = 0; ki + 1 < c.cuts.size(); ++ki) {
        const int64_t q0 = c.cuts[qi], q1 = c.cuts[qi + 1], k0 = c.cuts[ki], k1 = c.cuts[ki + 1];
        const int64_t nq = q1 - q0;
        BlockLayout sliced;
        if (!dense) {
          sliced = slice_layout(layout, grid, q0, q1, k0, k1);
          if (sliced.col_idx.empty()) continue;
        }
        auto dout = upload(*gpu, poison.bits);  // a whole-length buffer: rows outside must stay
        auto dlse = gpu->allocate(size_t(B) * H * nq * sizeof(float));
        AttentionCall g;
        g.chunk = true;
        g.q_begin = q0;
        g.k_begin = k0;
        g.q = rows_of(gq, q0, nq);
        g.k = rows_of(gk, k0, k1 - k0);
        g.v = rows_of(gv, k0, k1 - k0);
        g.out = rows_of(make_view(dout.get(), dt, Layout::NHD, B, N, H, D, Device::CUDA), q0, nq);
        g.tokens = &tk;
        g.block_size = c.block_size;
        g.layout = dense ? nullptr : &sliced;
        g.lse = static_cast<float*>(dlse.get());
        gpu->attention(g);
        gpu->synchronize();
        const auto g_out = download<uint16_t>(*gpu, dout, numel);
        const auto g_lse = download<float>(*gpu, dlse, size_t(B) * H * nq);

        std::vector<float> c_out(size_t(B) * nq * H * D), c_lse(size_t(B) * H * nq);
        AttentionCall cc = g;
        cc.q = rows_of(cq, q0, nq);
        cc.k = rows_of(ck, k0, k1 - k0);
        cc.v = rows_of(cv, k0, k1 - k0);
        cc.out = make_view(c_out.data(), DType::F32, Layout::NHD, B, nq, H, D);
        cc.lse = c_lse.data();
        cpu->attention(cc);

        double e2 = 0, r2 = 0;
        for (int b = 0; b < B; ++b)
          for (int64_t t = 0; t < N; ++t)
            for (int h = 0; h < H; ++h) {
              const int64_t off = ((int64_t(b) * N + t) * H + h) * D;
              if (t < q0 || t >= q1) {
                for (int d = 0; d < D; ++d) outside_written += g_out[off + d] != poison.bits[off + d];
                continue;
              }
              const size_t li = (size_t(b) * H + h) * nq + (t - q0);
              const float gl = g_lse[li], cl = c_lse[li];
              if (std::isinf(gl) || std::isinf(cl)) {
                EXPECT_EQ(gl, cl) << "row " << t << " head " << h;
              } else {
                worst_lse = std::max(worst_lse, double(std::fabs(gl - cl)));
              }
              const int64_t coff = ((int64_t(b) * nq + (t - q0)) * H + h) * D;
              for (int d = 0; d < D; ++d) {
                const double gvd = from_bits(g_out[off + d], dt);
                e2 += (gvd - c_out[coff + d]) * (gvd - c_out[coff + d]);
                r2 += double(c_out[coff + d]) * c_out[coff + d];
              }
              if (std::isinf(gl)) continue;
              double& l = merged_lse[(size_t(b) * H + h) * N + t];
              const double m = std::max(l, double(gl));
              const double nl = m + std::log(std::exp(l - m) + std::exp(gl - m));
              for (int d = 0; d < D; ++d) {
                double& o = merged[off + d];
                o = o * std::exp(l - nl) + std::exp(gl - nl) * from_bits(g_out[off + d], dt);
              }
              l = nl;
            }
        worst_pair = std::max(worst_pair, rel_l2(e2, r2));
      }
    EXPECT_EQ(outside_written, 0);
    EXPECT_LT(worst_pair, 2e-2);  // bf16 operands, as the whole-call tests
    EXPECT_LT(worst_lse, 5e-3);
    double e2 = 0, r2 = 0;
    for (int64_t i = 0; i < numel; ++i) {
      e2 += (merged[i] - ref[i]) * (merged[i] - ref[i]);
      r2 += double(ref[i]) * ref[i];
    }
    EXPECT_LT(rel_l2(e2, r2), 2e-2);
  }
};

TEST_F(CudaChunks, DenseChunksHopperBlocks) {
  ChunkCase c;
  c.tokens = video(3, 10, 13);  // N = 390
  c.cuts = {0, 97, 200, 390};
  c.seed = 3;
  run(c);
}

TEST_F(CudaChunks, SparseChunksTextAfterPadded) {
  ChunkCase c;
  c.tokens = with_text(video(4, 9, 14), TextPosition::After, 60, 41);  // N = 564
  c.density = 0.4;
  c.B = 2;
  c.cuts = {0, 141, 282, 423, 564};
  c.seed = 5;
  run(c);
}

TEST_F(CudaChunks, SparseChunksTextBeforePortableKernel) {
  ChunkCase c;
  c.tokens = with_text(video(3, 8, 11), TextPosition::Before, 50, 37);  // N = 314, 64-token blocks
  c.block_size = 64;
  c.D = 64;
  c.density = 0.3;
  c.cuts = {0, 64, 150, 314};
  c.seed = 7;
  run(c);
}

TEST_F(CudaChunks, DenseChunksPortableKernelD128) {
  ChunkCase c;
  c.tokens = video(2, 12, 12);  // N = 288
  c.block_size = 64;
  c.H = 3;
  c.cuts = {0, 1, 143, 287, 288};  // one-token chunks at both ends
  c.seed = 9;
  run(c);
}

}  // namespace
}  // namespace moddit::gputest
