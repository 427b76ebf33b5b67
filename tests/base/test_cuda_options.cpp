// CudaOptions from the MODDIT_CUDA_* variables: the values the CLI and the test
// programs accept, the defaults when unset, a one-line error otherwise. Runs
// without CUDA (the parser is in moddit_base).
#include <gtest/gtest.h>

#include <cstdlib>

#include "expect_error.hpp"
#include "moddit/backend.hpp"

using namespace moddit;
using moddit::test::expect_error;

namespace {

// Sets the three variables for one test and unsets them after it.
class CudaEnv : public ::testing::Test {
 protected:
  void TearDown() override {
    for (const char* v : {"MODDIT_CUDA_KERNEL", "MODDIT_CUDA_ORDER", "MODDIT_CUDA_MAP_COUNT"})
      ::unsetenv(v);
  }
};

TEST_F(CudaEnv, UnsetOrEmptyGivesTheDefaults) {
  TearDown();
  CudaOptions o = cuda_options_from_environment();
  const CudaOptions d;
  EXPECT_EQ(o.portable_kernel, d.portable_kernel);
  EXPECT_EQ(o.group_rows_by_head, d.group_rows_by_head);
  EXPECT_EQ(o.map_count_by_compare, d.map_count_by_compare);
  EXPECT_FALSE(d.portable_kernel);
  EXPECT_TRUE(d.group_rows_by_head);
  EXPECT_FALSE(d.map_count_by_compare);
  ::setenv("MODDIT_CUDA_KERNEL", "", 1);
  EXPECT_FALSE(cuda_options_from_environment().portable_kernel);
}

TEST_F(CudaEnv, EachVariableSetsItsField) {
  ::setenv("MODDIT_CUDA_KERNEL", "sm80", 1);
  ::setenv("MODDIT_CUDA_ORDER", "lpt", 1);
  ::setenv("MODDIT_CUDA_MAP_COUNT", "compare", 1);
  CudaOptions o = cuda_options_from_environment();
  EXPECT_TRUE(o.portable_kernel);
  EXPECT_FALSE(o.group_rows_by_head);
  EXPECT_TRUE(o.map_count_by_compare);
  ::setenv("MODDIT_CUDA_KERNEL", "auto", 1);
  ::setenv("MODDIT_CUDA_ORDER", "grouped", 1);
  ::setenv("MODDIT_CUDA_MAP_COUNT", "auto", 1);
  o = cuda_options_from_environment();
  EXPECT_FALSE(o.portable_kernel);
  EXPECT_TRUE(o.group_rows_by_head);
  EXPECT_FALSE(o.map_count_by_compare);
}

TEST_F(CudaEnv, AnUnknownValueIsRefusedByName) {
  ::setenv("MODDIT_CUDA_KERNEL", "sm90", 1);
  expect_error([] { cuda_options_from_environment(); }, "MODDIT_CUDA_KERNEL='sm90'");
  TearDown();
  ::setenv("MODDIT_CUDA_ORDER", "LPT", 1);
  expect_error([] { cuda_options_from_environment(); }, "MODDIT_CUDA_ORDER='LPT' is not one of");
  TearDown();
  ::setenv("MODDIT_CUDA_MAP_COUNT", "1", 1);
  expect_error([] { cuda_options_from_environment(); }, "MODDIT_CUDA_MAP_COUNT");
}

}  // namespace
