#include <gtest/gtest.h>

#include <random>

#include "moddit/backend.hpp"
#include "moddit/block_layout.hpp"
#include "moddit/error.hpp"
#include "moddit/host_tensor.hpp"
#include "moddit/token_layout.hpp"

using namespace moddit;

TEST(TokenLayout, GridAlignsVideoToItsFirstToken) {
  TokenLayout t;
  t.frames = 3;
  t.height = 10;
  t.width = 7;  // 70 tokens per frame, 210 video tokens
  t.text_tokens = 100;
  t.text_valid = 90;
  t.text_position = TextPosition::Before;
  BlockGrid g = make_block_grid(t, 64);
  // text: 64 + 36 ; video: 64,64,64,18
  ASSERT_EQ(g.num_blocks(), 6);
  EXPECT_EQ(g.first_video_block, 2);
  EXPECT_EQ(g.num_video_blocks, 4);
  EXPECT_EQ(g.starts[2], 100);
  EXPECT_EQ(g.block_len(1), 36);
  EXPECT_EQ(g.block_len(5), 18);
  EXPECT_EQ(g.starts.back(), 310);
  EXPECT_EQ(t.pad_begin(), 90);
  EXPECT_EQ(t.pad_end(), 100);

  t.text_position = TextPosition::After;
  g = make_block_grid(t, 128);
  EXPECT_EQ(g.first_video_block, 0);
  EXPECT_EQ(g.num_video_blocks, 2);  // 128 + 82
  EXPECT_EQ(g.num_blocks(), 3);
  EXPECT_EQ(t.pad_begin(), 210 + 90);
  EXPECT_THROW(make_block_grid(t, 96), Error);
}

TEST(TokenLayout, RejectsInconsistentLayouts) {
  TokenLayout t;
  t.text_tokens = 5;
  t.text_valid = 6;
  t.text_position = TextPosition::After;
  EXPECT_THROW(t.validate(), Error);
  t.text_valid = 5;
  t.text_position = TextPosition::None;
  EXPECT_THROW(t.validate(), Error);
}

TEST(BlockLayout, RoundTripsAndValidates) {
  std::mt19937 rng(1);
  BlockMask m(2, 3, 5, 5);
  for (auto& b : m.bits) b = rng() % 2;
  BlockLayout l = to_layout(m);
  l.validate();
  EXPECT_EQ(to_mask(l).bits, m.bits);
  BlockLayout bad = l;
  if (!bad.col_idx.empty()) {
    bad.col_idx[0] = 7;
    EXPECT_THROW(bad.validate(), Error);
  }
  BlockLayout dup = full_layout(1, 1, 3);
  dup.col_idx[1] = dup.col_idx[0];
  EXPECT_THROW(dup.validate(), Error);
}

TEST(TensorView, RejectsBadStrides) {
  std::vector<float> buf(2 * 8 * 3 * 4);
  TensorView v = make_view(buf.data(), DType::F32, Layout::HND, 2, 8, 3, 4);
  EXPECT_NO_THROW(validate_view(v, "q"));
  v.stride[kD] = 2;
  EXPECT_THROW(validate_view(v, "q"), Error);
  v = make_view(buf.data(), DType::F32, Layout::NHD, 2, 8, 3, 4);
  v.stride[kN] = 4;  // rows of different n overlap rows of different h
  EXPECT_THROW(validate_view(v, "q"), Error);
}

TEST(Conversions, RoundTripBf16AndF16) {
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.f, 3.f);
  for (int i = 0; i < 10000; ++i) {
    const float x = nd(rng);
    EXPECT_NEAR(bf16_to_f32(f32_to_bf16(x)), x, std::abs(x) * 4e-3f + 1e-30f);
    EXPECT_NEAR(f16_to_f32(f32_to_f16(x)), x, std::abs(x) * 5e-4f + 6e-8f);
  }
  EXPECT_EQ(f16_to_f32(f32_to_f16(65504.f)), 65504.f);
  EXPECT_EQ(f16_to_f32(f32_to_f16(1e-7f)), f16_to_f32(f32_to_f16(1e-7f)));
  EXPECT_NEAR(f16_to_f32(f32_to_f16(3e-6f)), 3e-6f, 6e-8f);
}
