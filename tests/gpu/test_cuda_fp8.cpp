// Precision FP8 on the GPU (the Hopper FP8 kernels, moddit/fp8.hpp) on fresh
// random inputs, over the edge cases of the bf16 tests (partial last block,
// frames unaligned with blocks, text before/after with padding, batch 2, head
// subsets, both layouts and dtypes, diagonal-only and full masks), with the LSE
// and the map pass:
//   - against the CPU backend's emulation of the same quantization: equal up to
//     fp32 summation order, exp2 rounding and the output's rounding (this is
//     the kernels' correctness check: a wrong scale, permutation or tile shows);
//   - against exact fp32 attention: within FP8's own error (the accuracy bound).
// Skips without a GPU; the FP8 cases skip where the device cannot run FP8.
#include <gtest/gtest.h>

#include <cstdlib>
#include <limits>

#include "edge_cases.hpp"
#include "gpu_test_util.hpp"

namespace moddit::gputest {
namespace {

struct Outputs {
  std::vector<float> out, lse;
  std::vector<int32_t> map;
};

struct Compare {
  double rel_l2 = 0, cosine = 1, lse_max = 0, map_rel = 0;
  int64_t written_wrong = 0, nonfinite = 0;
};

// Over the covered heads (out), finite LSE rows, and written map entries.
Compare compare(const Outputs& a, const Outputs& ref, const std::vector<char>& covered, int64_t N, int H,
                int D) {
  Compare c;
  double err = 0, r2 = 0, dot = 0, a2 = 0;
  for (size_t i = 0; i < ref.out.size(); ++i) {
    if (!covered[(i / D) % H]) continue;
    if (!std::isfinite(a.out[i])) ++c.nonfinite;
    const double x = a.out[i], y = ref.out[i];
    err += (x - y) * (x - y);
    r2 += y * y;
    dot += x * y;
    a2 += x * x;
  }
  c.rel_l2 = rel_l2(err, r2);
  c.cosine = dot / std::sqrt(a2 * r2);
  for (size_t i = 0; i < ref.lse.size(); ++i) {
    if (!covered[(i / N) % H]) continue;
    if (!std::isfinite(ref.lse[i]) || !std::isfinite(a.lse[i])) {
      if (std::isfinite(ref.lse[i]) != std::isfinite(a.lse[i])) c.lse_max = std::numeric_limits<double>::infinity();
      continue;
    }
    c.lse_max = std::max(c.lse_max, double(std::fabs(a.lse[i] - ref.lse[i])));
  }
  double diff = 0, total = 0;
  for (size_t i = 0; i < ref.map.size(); ++i) {
    if ((a.map[i] < 0) != (ref.map[i] < 0)) ++c.written_wrong;
    if (a.map[i] < 0 || ref.map[i] < 0) continue;
    diff += std::abs(a.map[i] - ref.map[i]);
    total += ref.map[i];
  }
  c.map_rel = total > 0 ? diff / total : 0;
  return c;
}

// The bf16 tests' fixture, skipping where the device cannot run FP8.
struct Fp8Fixture : GpuCpuTest {
  void SetUp() override {
    GpuCpuTest::SetUp();
    if (IsSkipped()) return;
    if (!gpu->supports(Precision::FP8)) GTEST_SKIP() << "precision fp8 needs Hopper: " << gpu->name();
  }

  // Runs the case on the GPU in FP8 and on the CPU in FP8 (emulation) and
  // exactly; checks both comparisons.
  void check(const Case& c) {
    const int64_t N = c.tokens.total_tokens();
    const int B = c.B, H = c.H, D = c.D;
    const int64_t numel = int64_t(B) * N * H * D;
    const CaseInputs in = make_inputs(c);
    const GpuRun gpu_run = run_on_gpu(*gpu, c, in, Precision::FP8);

    const std::vector<char> covered = covered_heads(c);
    // Reorder everything to [B, N, H, D] / [B, H, N] / map; check untouched heads.
    const TensorView vq = make_view(nullptr, c.dtype, c.layout, B, N, H, D);  // for offsets
    auto to_bnhd = [&](auto value_at) {
      std::vector<float> out(numel);
      for (int b = 0; b < B; ++b)
        for (int64_t t = 0; t < N; ++t)
          for (int h = 0; h < H; ++h)
            for (int d = 0; d < D; ++d) out[((b * N + t) * H + h) * D + d] = value_at(vq.offset(b, t, h) + d, h);
      return out;
    };
    int64_t untouched_wrong = 0;
    Outputs g;
    g.out = to_bnhd([&](int64_t off, int h) {
      if (!covered[h] && gpu_run.out[off] != in.poison.bits[off]) ++untouched_wrong;
      return from_bits(gpu_run.out[off], c.dtype);
    });
    g.lse = gpu_run.lse;
    g.map = gpu_run.map;
    EXPECT_EQ(untouched_wrong, 0);

    auto on_cpu = [&](Precision prec) {
      CpuRun run = run_on_cpu(*cpu, c, in, prec);
      Outputs r;
      r.out = to_bnhd([&](int64_t off, int) { return run.out[off]; });
      r.lse = std::move(run.lse);
      r.map = std::move(run.map);
      return r;
    };
    const Outputs emu = on_cpu(Precision::FP8), exact = on_cpu(Precision::Exact);

    // Against the emulation: the output's rounding (bf16: 2^-9) dominates.
    const Compare e = compare(g, emu, covered, N, H, D);
    EXPECT_EQ(e.nonfinite, 0);
    EXPECT_LT(e.rel_l2, c.dtype == DType::BF16 ? 1e-2 : 5e-3) << "GPU FP8 vs CPU FP8 emulation";
    // The LSE: K's mean differs in its last bits (summation order), which flips
    // the rounding of a few K elements and moves their scores by up to ~0.05.
    EXPECT_LT(e.lse_max, 1e-2) << "GPU FP8 vs CPU FP8 emulation";
    EXPECT_EQ(e.written_wrong, 0);
    EXPECT_LT(e.map_rel, 2e-3) << "GPU FP8 vs CPU FP8 emulation (pairs at eta within fp32 noise)";
    // Against exact attention: FP8's own error (tests/cpu/test_cpu_fp8.cpp, docs/BENCHMARKS.md).
    const Compare x = compare(g, exact, covered, N, H, D);
    EXPECT_LT(x.rel_l2, 0.09) << "GPU FP8 vs exact";
    EXPECT_GT(x.cosine, 0.996) << "GPU FP8 vs exact";
    EXPECT_LT(x.lse_max, 0.4) << "GPU FP8 vs exact";
    EXPECT_LT(x.map_rel, 0.02) << "GPU FP8 vs exact";
    RecordProperty("vs_emulation_rel_l2", std::to_string(e.rel_l2));
    RecordProperty("vs_exact_rel_l2", std::to_string(x.rel_l2));
    RecordProperty("vs_exact_cosine", std::to_string(x.cosine));
    RecordProperty("vs_exact_map_rel", std::to_string(x.map_rel));
    std::printf("fp8 case seed %u: vs emulation rel_l2 %.2e lse %.1e map %.1e; vs exact rel_l2 %.4f cos %.6f "
                "lse %.3f map %.4f\n",
                c.seed, e.rel_l2, e.lse_max, e.map_rel, x.rel_l2, x.cosine, x.lse_max, x.map_rel);
  }
};

TEST_F(Fp8Fixture, DenseDim128PartialBlock) {
  check(edge::partial_last_block(31));
}

TEST_F(Fp8Fixture, DenseDim64HndF16) {
  Case c;
  c.tokens = video(4, 9, 11);
  c.D = 64;
  c.dtype = DType::F16;
  c.layout = Layout::HND;
  c.seed = 32;
  check(c);
}

TEST_F(Fp8Fixture, TextBeforePaddedSparseBatch2) {
  Case c = edge::text_before_block128_sparse(33);
  c.B = 2;
  check(c);
}

TEST_F(Fp8Fixture, TextAfterPaddedHeadSubsetF16Dim64) {
  Case c = edge::text_after_head_subset_f16(34);
  c.D = 64;
  check(c);
}

TEST_F(Fp8Fixture, DiagonalOnlyAndFullLayout) {
  check(edge::diagonal_only(35));
  check(edge::full_layout_hnd(36));
}

// More items than SMs (edge_cases.hpp): the 4 (forward) or 8 (map) FP8 stages
// wrap across items too.
TEST_F(Fp8Fixture, ManyItemsPerCta) {
  check(edge::many_items_sparse(37));
  check(edge::many_items_dim64_dense(38));
}

TEST_F(Fp8Fixture, FreshRandomSeed) {
  const Case c = edge::fresh_seed();
  SCOPED_TRACE(c.seed);
  check(c);
}

// The FP8 map pass's compare path (rows with tiny thresholds), forced everywhere.
TEST_F(Fp8Fixture, MapCountByCompare) {
  std::shared_ptr<Backend> compare_backend = cuda_backend_counting_by_compare();
  std::swap(gpu, compare_backend);
  check(edge::map_by_compare(TextPosition::Before, 39));
  std::swap(gpu, compare_backend);
}

// Where FP8 cannot run the call is refused with a message naming the reason.
TEST(CudaFp8, UnsupportedCallsAreRefused) {
  MODDIT_REQUIRE_GPU();
  std::shared_ptr<Backend> gpu = cuda_backend();
  const TokenLayout tk = video(2, 8, 8);
  const int N = 128, H = 2, D = 64;
  auto buf = gpu->allocate(size_t(N) * H * D * 2);
  AttentionCall c;
  c.q = c.k = c.v = make_view(buf.get(), DType::BF16, Layout::NHD, 1, N, H, D, Device::CUDA);
  auto out = gpu->allocate(size_t(N) * H * D * 2);
  c.out = make_view(out.get(), DType::BF16, Layout::NHD, 1, N, H, D, Device::CUDA);
  c.tokens = &tk;
  c.block_size = 64;  // fp8 runs 128-token blocks only
  c.precision = Precision::FP8;
  expect_refused_before_launch(*gpu, c, "precision fp8 needs");
}

}  // namespace
}  // namespace moddit::gputest
