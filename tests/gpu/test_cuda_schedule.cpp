// The one row schedule, cuda::schedule_rows (the CUDA backend's for host layouts,
// the GPU MOD-DiT step's for its own), against its plain statement
// (reference_schedule): random costs with many ties, grouped by head and plain
// longest-first, one group and one-row groups; then through the backend, a
// layout scheduled either way gives the CPU reference's output.
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "gpu_test_util.hpp"

#if MODDIT_WITH_CUDA
#include "cuda/moddit_step.hpp"
#endif

namespace moddit::gputest {
namespace {

#if MODDIT_WITH_CUDA
std::vector<int32_t> device_schedule(Backend& gpu, const std::vector<int32_t>& cost, int group) {
  const size_t rows = cost.size(), bytes = cuda::schedule_scratch_bytes(int64_t(rows), group);
  auto cost_d = gpu.allocate(rows * 4), order_d = gpu.allocate(rows * 4), scratch = gpu.allocate(bytes);
  gpu.copy_from_host(cost_d.get(), cost.data(), rows * 4);
  cuda::schedule_rows(static_cast<const int32_t*>(cost_d.get()), int64_t(rows), group,
                      static_cast<int32_t*>(order_d.get()), scratch.get(), bytes,
                      static_cast<cudaStream_t>(gpu.stream()));
  std::vector<int32_t> order(rows);
  gpu.copy_to_host(order.data(), order_d.get(), rows * 4);
  return order;
}
#endif

TEST(Schedule, DeviceScheduleIsTheReference) {
  MODDIT_REQUIRE_GPU();
#if MODDIT_WITH_CUDA
  auto gpu = cuda_backend();
  const uint32_t seed = std::random_device{}();
  SCOPED_TRACE(seed);
  std::mt19937 rng(seed);
  struct Shape { int groups, group; int max_cost; };
  for (const Shape s : {Shape{1, 1, 5}, Shape{1, 40, 3}, Shape{7, 1, 4}, Shape{3, 17, 2},
                        Shape{80, 24, 9}, Shape{2, 300, 300}, Shape{640, 61, 61}}) {
    std::uniform_int_distribution<int32_t> c(0, s.max_cost);  // small ranges: many ties
    std::vector<int32_t> cost(size_t(s.groups) * s.group);
    for (int32_t& x : cost) x = c(rng);
    SCOPED_TRACE(testing::Message() << s.groups << " groups of " << s.group);
    EXPECT_EQ(device_schedule(*gpu, cost, s.group), reference_schedule(cost, s.group));
    const int all = int(cost.size());  // plain longest-first
    EXPECT_EQ(device_schedule(*gpu, cost, all), reference_schedule(cost, all));
  }
#endif
}

// Either row order (CudaOptions::group_rows_by_head) computes the same attention.
TEST(Schedule, BothOrdersMatchTheCpuReference) {
  MODDIT_REQUIRE_GPU();
  auto cpu = make_cpu_backend(2);
  for (const bool grouped : {true, false}) {
    CudaOptions o = cuda_options_from_environment();
    o.group_rows_by_head = grouped;
    auto gpu = make_cuda_backend(0, o);
    Case c;
    c.tokens.frames = 3;
    c.tokens.height = 15;
    c.tokens.width = 21;
    c.B = 2;
    c.H = 3;
    c.mask = Case::Mask::Random;
    c.density = 0.3;
    c.seed = std::random_device{}();
    SCOPED_TRACE(testing::Message() << "grouped " << grouped << " seed " << c.seed);
    const Outcome r = run_case(*gpu, *cpu, c);
    EXPECT_LT(r.out_rel_l2, 1e-2);
    EXPECT_EQ(r.nonfinite, 0);
  }
}

}  // namespace
}  // namespace moddit::gputest
