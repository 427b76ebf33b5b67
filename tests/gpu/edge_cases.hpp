#pragma once
// The edge cases that the whole-call GPU tests share (test_cuda_attention.cpp,
// test_cuda_fp8.cpp, test_cuda_map_mass.cpp): one definition each, so that the
// FP8 and mass-map tests run the very shapes of the bf16 tests. Each test gives
// its own seed and may change a field on top.
#include <random>

#include "gpu_test_util.hpp"

namespace moddit::gputest::edge {

// N = 390: 3 full blocks and one of 6; frames unaligned with blocks.
inline Case partial_last_block(uint32_t seed) {
  Case c;
  c.tokens = video(3, 10, 13);
  c.seed = seed;
  return c;
}

// N = 365 with 64-token blocks: padded text before the video, batch 2, sparse.
inline Case text_before_block64_batch2(uint32_t seed) {
  Case c;
  c.tokens = with_text(video(2, 12, 12), TextPosition::Before, 77, 60);
  c.B = 2;
  c.D = 64;
  c.block_size = 64;
  c.mask = Case::Mask::Random;
  c.density = 0.4;
  c.seed = seed;
  return c;
}

// Text before the video with 128-token blocks (3 text blocks): the Hopper map
// pass skips the text query blocks and the live text key blocks at the front of
// each row.
inline Case text_before_block128_sparse(uint32_t seed) {
  Case c;
  c.tokens = with_text(video(4, 8, 16), TextPosition::Before, 300, 211);
  c.H = 3;
  c.mask = Case::Mask::Random;
  c.density = 0.35;
  c.seed = seed;
  return c;
}

// N = 434: padded text after the video, a head subset, f16, batch 2.
inline Case text_after_head_subset_f16(uint32_t seed) {
  Case c;
  c.tokens = with_text(video(3, 8, 16), TextPosition::After, 50, 33);
  c.B = 2;
  c.H = 3;
  c.dtype = DType::F16;
  c.heads = {0, 2};
  c.mask = Case::Mask::Random;
  c.density = 0.3;
  c.seed = seed;
  return c;
}

// Each row keeps its diagonal block only.
inline Case diagonal_only(uint32_t seed) {
  Case c;
  c.tokens = with_text(video(5, 7, 9), TextPosition::Before, 40, 40);
  c.D = 64;
  c.mask = Case::Mask::Diagonal;
  c.seed = seed;
  return c;
}

// N = 510: a layout with every block, in HND, which must give the dense result.
inline Case full_layout_hnd(uint32_t seed) {
  Case c;
  c.tokens = video(2, 15, 17);
  c.mask = Case::Mask::FullLayout;
  c.layout = Layout::HND;
  c.seed = seed;
  return c;
}

// More work items than SMs, so that each persistent CTA of the Hopper kernels
// takes several (Q slots, barrier phases and key stages wrap across items).
// N = 2620 (21 blocks), text after, 504 items, sparse.
inline Case many_items_sparse(uint32_t seed) {
  Case c;
  c.tokens = with_text(video(8, 16, 20), TextPosition::After, 60, 41);
  c.B = 2;
  c.H = 12;
  c.mask = Case::Mask::Random;
  c.density = 0.3;
  c.seed = seed;
  return c;
}

// The same at head dim 64, dense: N = 1606 (13 blocks), text before, 416 items.
inline Case many_items_dim64_dense(uint32_t seed) {
  Case c;
  c.tokens = with_text(video(6, 16, 16), TextPosition::Before, 70, 52);
  c.B = 2;
  c.H = 16;
  c.D = 64;
  c.seed = seed;
  return c;
}

// Fresh inputs on every run: a seed from the device's entropy (the test traces it).
inline Case fresh_seed() {
  Case c;
  c.tokens = with_text(video(3, 9, 14), TextPosition::Before, 45, 31);
  c.B = 2;
  c.mask = Case::Mask::Random;
  c.density = 0.35;
  c.seed = static_cast<uint32_t>(std::random_device{}());
  return c;
}

// The case of the map pass counting by compare (cuda_backend_counting_by_compare),
// with padded text at `pos`.
inline Case map_by_compare(TextPosition pos, uint32_t seed) {
  Case c;
  c.tokens = with_text(video(3, 8, 16), pos, 150, 97);
  c.B = 2;
  c.mask = Case::Mask::Random;
  c.density = 0.4;
  c.seed = seed;
  return c;
}

}  // namespace moddit::gputest::edge
