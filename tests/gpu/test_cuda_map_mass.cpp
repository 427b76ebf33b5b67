// The CUDA map pass with MapStatistic::Mass against the CPU reference, on fresh
// random inputs: each block's summed probability in Eq. 2's units, within a
// tolerance relative to the block's mass (gpu_test_util.cpp). Edge cases: a
// partial last block, text tokens (padded, before and after), batch 2, a head
// subset, block sizes 64 and 128 (128 runs the portable map kernel on Hopper
// too), both dtypes, peaked rows. Skips cleanly without a GPU.
#include <gtest/gtest.h>

#include <random>

#include "edge_cases.hpp"
#include "gpu_test_util.hpp"

namespace moddit::gputest {
namespace {

struct MassMap : GpuCpuTest {
  void expect_mass_matches(Case c) {
    c.map_statistic = MapStatistic::Mass;
    const Outcome r = run_case(*gpu, *cpu, c);
    EXPECT_LT(r.lse_max_abs, 5e-3);
    EXPECT_EQ(r.nonfinite, 0);
    EXPECT_EQ(r.untouched_wrong, 0);
    EXPECT_EQ(r.map_written_wrong, 0);
    EXPECT_EQ(r.map_mismatch, 0) << "largest relative difference " << r.map_mass_max_rel;
    EXPECT_LT(r.map_mass_max_rel, 1e-2);
  }
};

TEST_F(MassMap, DensePartialLastBlockBlock128) {
  expect_mass_matches(edge::partial_last_block(21));
}

TEST_F(MassMap, TextBeforePaddedBlock64Batch2Sparse) {
  expect_mass_matches(edge::text_before_block64_batch2(22));
}

TEST_F(MassMap, TextAfterPaddedHeadSubsetF16Block128) {
  Case c;
  c.tokens = with_text(video(3, 9, 14), TextPosition::After, 150, 97);
  c.H = 3;
  c.heads = {0, 2};
  c.dtype = DType::F16;
  c.layout = Layout::HND;
  c.mask = Case::Mask::Random;
  c.density = 0.5;
  c.seed = 23;
  expect_mass_matches(c);
}

TEST_F(MassMap, PeakedRowsAndAFreshSeed) {
  Case c;
  c.tokens = with_text(video(4, 8, 16), TextPosition::Before, 40, 33);
  c.B = 2;
  c.q_scale = 3.0f;  // a few keys take most of each row
  c.seed = std::random_device{}();
  SCOPED_TRACE(testing::Message() << "seed " << c.seed);
  expect_mass_matches(c);
  c.block_size = 64;
  c.D = 64;
  expect_mass_matches(c);
}

// The FP8 map pass counts Eq. 2 only: a mass map with precision fp8 is refused
// before any work, naming the key.
TEST_F(MassMap, Fp8IsRefusedByName) {
  Case c;
  c.tokens = video(2, 8, 16);
  c.map_statistic = MapStatistic::Mass;
  const TokenLayout tk = c.tokens;
  const int64_t N = tk.total_tokens(), numel = N * c.H * c.D;
  auto dq = gpu->allocate(numel * 2), dout = gpu->allocate(numel * 2);
  auto dmap = gpu->allocate(64 * sizeof(int32_t));
  AttentionCall call;
  call.q = call.k = call.v = make_view(dq.get(), DType::BF16, Layout::NHD, 1, N, c.H, c.D, Device::CUDA);
  call.out = make_view(dout.get(), DType::BF16, Layout::NHD, 1, N, c.H, c.D, Device::CUDA);
  call.tokens = &tk;
  call.map_counts = static_cast<int32_t*>(dmap.get());
  call.map_statistic = MapStatistic::Mass;
  call.precision = Precision::FP8;
  expect_refused_before_launch(*gpu, call, "map_statistic");
}

}  // namespace
}  // namespace moddit::gputest
