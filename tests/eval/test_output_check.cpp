// The sampled output check of `moddit bench` (eval/output_check.hpp), with the CPU
// backend standing in for the GPU: a correct bf16/f16 output passes its dtype's
// bound, and an output that is wrong in one sampled row, or computed over another
// layout, fails it.
#include <gtest/gtest.h>

#include <random>
#include <vector>

#include "eval/output_check.hpp"
#include "expect_error.hpp"
#include "moddit/backend.hpp"
#include "moddit/block_layout.hpp"
#include "moddit/host_tensor.hpp"

using namespace moddit;

namespace {

struct Call {
  TokenLayout tokens;
  HostTensor q, k, v, out;
  BlockLayout layout;
  std::vector<int32_t> heads{0, 2};
  AttentionCall call;
};

// Text before the video with padding; 3 heads of which 2 computed; a random
// layout with the diagonal.
void make_call(Call& c, DType dtype, uint32_t seed) {
  c.tokens.frames = 3;
  c.tokens.height = 9;
  c.tokens.width = 11;  // 297 video tokens: a partial last block
  c.tokens.text_tokens = 40;
  c.tokens.text_valid = 29;
  c.tokens.text_position = TextPosition::Before;
  const int64_t N = c.tokens.total_tokens();
  const BlockGrid grid = make_block_grid(c.tokens, 64);
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.f, 1.f);
  HostTensor f(DType::F32, 1, N, 3, 64);
  for (HostTensor* t : {&c.q, &c.k, &c.v}) {
    for (int64_t i = 0; i < f.numel(); ++i) f.f32()[i] = nd(rng);
    *t = f.to(dtype);
  }
  c.out = HostTensor(dtype, 1, N, 3, 64);
  const int nb = grid.num_blocks();
  BlockMask m(1, 2, nb, nb, false);
  std::bernoulli_distribution live(0.4);
  for (int h = 0; h < 2; ++h)
    for (int i = 0; i < nb; ++i)
      for (int j = 0; j < nb; ++j) m.at(0, h, i, j) = (i == j || live(rng)) ? 1 : 0;
  c.layout = to_layout(m);
  c.call.q = c.q.view();
  c.call.k = c.k.view();
  c.call.v = c.v.view();
  c.call.out = c.out.view();
  c.call.tokens = &c.tokens;
  c.call.block_size = 64;
  c.call.heads = &c.heads;
  c.call.layout = &c.layout;
}

TEST(OutputCheck, ACorrectOutputPassesItsDtypesBound) {
  auto cpu = make_cpu_backend(2);
  for (DType dt : {DType::BF16, DType::F16}) {
    Call c;
    make_call(c, dt, 7u + uint32_t(dt));
    cpu->attention(c.call);
    const double err = eval::sampled_output_error(*cpu, c.call);
    EXPECT_GT(err, 0.0);  // the output's rounding to 16 bits is seen
    EXPECT_LT(err, eval::output_error_bound(dt)) << to_string(dt);
    c.call.layout = nullptr;  // dense
    cpu->attention(c.call);
    EXPECT_LT(eval::sampled_output_error(*cpu, c.call), eval::output_error_bound(dt));
  }
}

TEST(OutputCheck, AWrongRowOrAnotherLayoutFails) {
  auto cpu = make_cpu_backend(2);
  Call c;
  make_call(c, DType::BF16, 11);
  cpu->attention(c.call);
  const BlockGrid grid = make_block_grid(c.tokens, 64);
  // One row of the last head's middle block, scaled: a wrong row.
  const int64_t n = grid.starts[size_t(grid.num_blocks() / 2)];
  std::vector<float> row(64);
  load_row_f32(c.call.out, 0, n, 2, row.data());
  for (float& x : row) x *= 3.f;
  store_row_f32(c.call.out, 0, n, 2, row.data());
  EXPECT_GT(eval::sampled_output_error(*cpu, c.call), eval::output_error_bound(DType::BF16));
  // The output of a denser layout checked against the layout it claims.
  const BlockLayout claimed = c.layout;
  c.layout = full_layout(1, 2, grid.num_blocks());
  cpu->attention(c.call);
  c.call.layout = &claimed;
  EXPECT_GT(eval::sampled_output_error(*cpu, c.call), eval::output_error_bound(DType::BF16));
}

TEST(OutputCheck, AChunkCallIsRefused) {
  auto cpu = make_cpu_backend(2);
  Call c;
  make_call(c, DType::BF16, 3);
  c.call.chunk = true;
  moddit::test::expect_error([&] { eval::sampled_output_error(*cpu, c.call); }, "whole-sequence");
}

}  // namespace
