// The CPU reference backend against the naive double-precision reference, on
// fresh random inputs, across layouts, token layouts, dtypes and memory layouts.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>

#include "cpu/attention_reference.hpp"
#include "cpu/test_support.hpp"
#include "moddit/backend.hpp"

using namespace moddit;
using namespace moddit_test;

namespace {

Backend& cpu() {
  static std::shared_ptr<Backend> backend = make_cpu_backend(2);
  return *backend;
}

// Runs the backend and the reference on a fresh instance and compares all outputs.
double check(const Problem& p, uint32_t seed, Tolerance tol) {
  auto inst = make_instance(p, seed);
  run_backend(cpu(), *inst);
  const Reference ref = naive_attention(inst->call());
  return expect_matches_reference(*inst, ref, tol);
}
double check(const Problem& p, uint32_t seed) { return check(p, seed, default_tolerance(p.dtype)); }

Problem base_problem(TokenLayout tokens, int block_size) {
  Problem p;
  p.tokens = tokens;
  p.block_size = block_size;
  return p;
}

}  // namespace

TEST(CpuAttention, DenseMatchesReferenceAtSeveralScales) {
  // 5 frames of 10x9 = 450 tokens: not a multiple of either block size.
  for (int bs : {64, 128}) {
    const float scales[][3] = {{0.3f, 0.3f, 1.f}, {1.f, 1.f, 0.01f}, {1.5f, 1.5f, 100.f}};
    uint32_t seed = 100 + bs;
    for (const auto& s : scales) {
      Problem p = base_problem(video_only(5, 10, 9), bs);
      p.q_scale = s[0];
      p.k_scale = s[1];
      p.v_scale = s[2];
      SCOPED_TRACE(testing::Message() << "block " << bs << " scale " << s[0]);
      check(p, seed++);
    }
  }
}

TEST(CpuAttention, RandomLayouts) {
  std::mt19937 rng(11);
  for (double density : {0.15, 0.5, 0.8}) {
    Problem p = base_problem(video_only(4, 12, 11), 64);  // 528 tokens, 9 blocks
    p.H = 3;
    p.use_layout = true;
    p.layout = random_layout(1, 3, p.num_blocks(), density, /*keep_diagonal=*/false, rng);
    SCOPED_TRACE(testing::Message() << "density " << density);
    check(p, 200 + static_cast<uint32_t>(density * 100));
  }
}

TEST(CpuAttention, FullLayoutEqualsDenseBitForBit) {
  Problem p = base_problem(with_text(3, 10, 10, 77, 60, TextPosition::Before), 64);
  auto dense = make_instance(p, 5);
  run_backend(cpu(), *dense);

  p.use_layout = true;
  p.layout = full_layout(1, 2, p.num_blocks());
  auto full = make_instance(p, 5);  // same seed: same inputs and poison
  run_backend(cpu(), *full);

  EXPECT_EQ(dense->out.storage, full->out.storage);
  EXPECT_EQ(0, std::memcmp(dense->lse.data(), full->lse.data(), dense->lse.size() * sizeof(float)));
  EXPECT_EQ(dense->counts, full->counts);
}

TEST(CpuAttention, DiagonalOnlyLayout) {
  Problem p = base_problem(video_only(3, 13, 13), 128);  // 507 tokens, last block 123
  BlockMask m(1, 2, p.num_blocks(), p.num_blocks());
  for (int h = 0; h < 2; ++h)
    for (int b = 0; b < p.num_blocks(); ++b) m.at(0, h, b, b) = 1;
  p.use_layout = true;
  p.layout = to_layout(m);
  check(p, 21);
}

TEST(CpuAttention, PartialLastBlockAndUnalignedFrames) {
  // 7 frames of 70 tokens (not aligned to 64 or 128), 490 tokens in all.
  std::mt19937 rng(31);
  for (int bs : {64, 128}) {
    Problem p = base_problem(video_only(7, 7, 10), bs);
    p.use_layout = true;
    p.layout = random_layout(1, 2, p.num_blocks(), 0.5, true, rng);
    SCOPED_TRACE(testing::Message() << "block " << bs);
    check(p, 300 + bs);
  }
  // A sequence shorter than one block.
  Problem tiny = base_problem(video_only(1, 5, 7), 64);
  check(tiny, 333);
}

TEST(CpuAttention, TextBeforeAndAfterWithPadding) {
  std::mt19937 rng(41);
  for (TextPosition where : {TextPosition::Before, TextPosition::After}) {
    for (int bs : {64, 128}) {
      // 150 text tokens of which 97 real; 4 frames of 9x11 video.
      Problem p = base_problem(with_text(4, 9, 11, 150, 97, where), bs);
      p.use_layout = true;
      p.layout = random_layout(1, 2, p.num_blocks(), 0.6, true, rng);
      SCOPED_TRACE(testing::Message() << to_string(where) << " block " << bs);
      check(p, 400 + bs + static_cast<uint32_t>(where));
      p.use_layout = false;
      check(p, 450 + bs + static_cast<uint32_t>(where));
    }
  }
}

TEST(CpuAttention, PaddingKeysHaveNoInfluence) {
  for (TextPosition where : {TextPosition::Before, TextPosition::After}) {
    Problem p = base_problem(with_text(2, 10, 12, 100, 37, where), 64);
    auto a = make_instance(p, 51);
    auto b = make_instance(p, 51);
    // Change K and V (wildly) at every padded key of b.
    std::mt19937 rng(52);
    std::normal_distribution<float> dist(0.f, 50.f);
    std::vector<float> row(static_cast<size_t>(p.D));
    for (int64_t t = p.tokens.pad_begin(); t < p.tokens.pad_end(); ++t)
      for (int64_t h = 0; h < p.H; ++h) {
        for (auto& x : row) x = dist(rng);
        store_row_f32(b->k.view, 0, t, h, row.data());
        for (auto& x : row) x = dist(rng);
        store_row_f32(b->v.view, 0, t, h, row.data());
      }
    ASSERT_NE(a->k.storage, b->k.storage);
    run_backend(cpu(), *a);
    run_backend(cpu(), *b);
    EXPECT_EQ(a->out.storage, b->out.storage);
    EXPECT_EQ(0, std::memcmp(a->lse.data(), b->lse.data(), a->lse.size() * sizeof(float)));
    EXPECT_EQ(a->counts, b->counts);
    expect_matches_reference(*b, naive_attention(b->call()), default_tolerance(p.dtype));
  }
}

TEST(CpuAttention, BatchOfTwoWithDifferentLayouts) {
  std::mt19937 rng(61);
  Problem p = base_problem(with_text(3, 8, 9, 40, 33, TextPosition::After), 64);
  p.B = 2;
  p.use_layout = true;
  p.layout = random_layout(2, 2, p.num_blocks(), 0.4, true, rng);
  check(p, 62);
}

TEST(CpuAttention, NhdHndAndStridedViews) {
  std::mt19937 rng(71);
  for (Arrangement arr : {Arrangement::NHD, Arrangement::HND, Arrangement::Strided}) {
    Problem p = base_problem(with_text(3, 9, 9, 50, 41, TextPosition::Before), 64);
    p.B = 2;
    p.arrangement = arr;
    p.use_layout = true;
    p.layout = random_layout(2, 2, p.num_blocks(), 0.5, true, rng);
    SCOPED_TRACE(testing::Message() << "arrangement " << static_cast<int>(arr));
    check(p, 72 + static_cast<uint32_t>(arr));
  }
}

TEST(CpuAttention, HalfPrecisionInputs) {
  std::mt19937 rng(81);
  for (DType dt : {DType::BF16, DType::F16}) {
    for (Arrangement arr : {Arrangement::NHD, Arrangement::Strided}) {
      Problem p = base_problem(video_only(4, 10, 11), 128);
      p.dtype = dt;
      p.arrangement = arr;
      p.D = 128;
      p.use_layout = true;
      p.layout = random_layout(1, 2, p.num_blocks(), 0.7, true, rng);
      SCOPED_TRACE(testing::Message() << to_string(dt) << " arrangement " << static_cast<int>(arr));
      check(p, 82 + static_cast<uint32_t>(dt) * 2 + static_cast<uint32_t>(arr));
    }
  }
}

TEST(CpuAttention, HeadSubsetLeavesOtherHeadsUntouched) {
  std::mt19937 rng(91);
  for (Arrangement arr : {Arrangement::NHD, Arrangement::HND, Arrangement::Strided}) {
    Problem p = base_problem(with_text(2, 10, 10, 30, 30, TextPosition::Before), 64);
    p.B = 2;
    p.H = 5;
    p.heads = {0, 2, 3};
    p.arrangement = arr;
    p.use_layout = true;
    p.layout = random_layout(2, 3, p.num_blocks(), 0.5, true, rng);
    SCOPED_TRACE(testing::Message() << "arrangement " << static_cast<int>(arr));
    check(p, 92 + static_cast<uint32_t>(arr));  // also checks poisoned heads/lse/counts
  }
  // Without a layout (dense over the subset).
  Problem p = base_problem(video_only(2, 10, 10), 128);
  p.H = 4;
  p.heads = {3};
  check(p, 99);
}

TEST(CpuAttention, RowWithoutLiveBlockGivesZerosAndMinusInfinity) {
  Problem p = base_problem(with_text(3, 8, 8, 64, 64, TextPosition::Before), 64);
  BlockMask m(1, 2, p.num_blocks(), p.num_blocks(), true);
  for (int kb = 0; kb < p.num_blocks(); ++kb) {
    m.at(0, 0, 2, kb) = 0;  // a video row of head 0: nothing live
    m.at(0, 1, 0, kb) = 0;  // the text row of head 1
  }
  p.use_layout = true;
  p.layout = to_layout(m);
  auto inst = make_instance(p, 111);
  run_backend(cpu(), *inst);
  expect_matches_reference(*inst, naive_attention(inst->call()), default_tolerance(p.dtype));
  std::vector<float> row(static_cast<size_t>(p.D));
  for (int64_t t = 128; t < 192; ++t) {  // block 2 = tokens [128, 192)
    load_row_f32(inst->out.view, 0, t, 0, row.data());
    for (float x : row) ASSERT_EQ(x, 0.f);
    const float l = inst->lse[static_cast<size_t>(t)];
    ASSERT_TRUE(std::isinf(l) && l < 0);
  }
}

TEST(CpuAttention, RowWhoseOnlyLiveKeysArePadding) {
  // The only live block of a row is all padding: no real key, so zeros / -inf.
  Problem p = base_problem(with_text(2, 8, 8, 128, 64, TextPosition::Before), 64);
  BlockMask m(1, 2, p.num_blocks(), p.num_blocks(), true);
  for (int kb = 0; kb < p.num_blocks(); ++kb) m.at(0, 0, 3, kb) = kb == 1;  // block 1 = padding
  p.use_layout = true;
  p.layout = to_layout(m);
  auto inst = make_instance(p, 121);
  run_backend(cpu(), *inst);
  expect_matches_reference(*inst, naive_attention(inst->call()), default_tolerance(p.dtype));
  const float l = inst->lse[static_cast<size_t>(3 * 64 + 5)];
  EXPECT_TRUE(std::isinf(l) && l < 0);
}

TEST(CpuAttention, ExplicitSoftmaxScaleAndSmallEta) {
  Problem p = base_problem(video_only(3, 11, 12), 128);
  p.softmax_scale = 0.05f;
  p.eta = 1e-6f;
  p.q_scale = p.k_scale = 2.f;
  check(p, 131);
  p.want_lse = false;
  p.want_map = false;
  check(p, 132);
}

TEST(CpuAttention, ResultsDoNotDependOnThreadCount) {
  std::mt19937 rng(141);
  Problem p = base_problem(with_text(4, 10, 10, 60, 50, TextPosition::Before), 64);
  p.H = 3;
  p.use_layout = true;
  p.layout = random_layout(1, 3, p.num_blocks(), 0.5, true, rng);
  auto a = make_instance(p, 142);
  auto b = make_instance(p, 142);
  run_backend(*make_cpu_backend(1), *a);
  run_backend(*make_cpu_backend(3), *b);
  EXPECT_EQ(a->out.storage, b->out.storage);
  EXPECT_EQ(0, std::memcmp(a->lse.data(), b->lse.data(), a->lse.size() * sizeof(float)));
  EXPECT_EQ(a->counts, b->counts);
}

TEST(CpuAttention, RealisticShapeWithTextAndUnalignedFrames) {
  // A Wan-like frame of 1560 tokens (30 x 52) is too big for the naive reference
  // at full length; 1 frame + 226 text tokens before it, 1786 tokens in all.
  std::mt19937 rng(151);
  Problem p = base_problem(with_text(1, 30, 52, 226, 200, TextPosition::Before), 128);
  p.H = 1;
  p.use_layout = true;
  p.layout = random_layout(1, 1, p.num_blocks(), 0.4, true, rng);
  check(p, 152);
}

TEST(CpuAttention, RandomisedSweep) {
  // Random token layouts, block sizes, batch, heads, head subsets, layouts,
  // dtypes, memory arrangements and scales, each against the reference.
  std::mt19937 rng(2024);
  auto pick = [&](int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(rng); };
  int64_t counted = 0, below = 0;
  for (int it = 0; it < 40; ++it) {
    const TextPosition where = static_cast<TextPosition>(pick(0, 2));
    const int text = where == TextPosition::None ? 0 : pick(1, 140);
    Problem p = base_problem(with_text(pick(1, 4), pick(3, 11), pick(3, 11), text,
                                       text ? pick(1, text) : 0, where),
                             pick(0, 1) ? 64 : 128);
    p.B = pick(1, 2);
    p.H = pick(1, 4);
    p.D = pick(0, 1) ? 64 : 128;
    p.dtype = static_cast<DType>(pick(0, 2));
    p.arrangement = static_cast<Arrangement>(pick(0, 2));
    for (int h = 0; h < p.H; ++h)
      if (pick(0, 2)) p.heads.push_back(h);
    if (p.heads.empty() || static_cast<int64_t>(p.heads.size()) == p.H) p.heads.clear();
    p.use_layout = pick(0, 3) != 0;
    if (p.use_layout)
      p.layout = random_layout(static_cast<int>(p.B), p.num_selected_heads(), p.num_blocks(),
                               0.1 + 0.8 * pick(0, 10) / 10.0, pick(0, 1) != 0, rng);
    p.q_scale = p.k_scale = 0.5f + pick(0, 10) / 10.f;
    p.v_scale = std::pow(10.f, static_cast<float>(pick(-2, 2)));
    p.eta = std::pow(10.f, -static_cast<float>(pick(2, 5)));
    SCOPED_TRACE(testing::Message() << "case " << it << ": " << p.tokens.describe() << " Bs "
                                    << p.block_size << " B " << p.B << " H " << p.H << " D " << p.D
                                    << " " << to_string(p.dtype) << " arrangement "
                                    << static_cast<int>(p.arrangement) << " heads "
                                    << p.num_selected_heads() << " layout " << p.use_layout);
    auto inst = make_instance(p, 5000 + static_cast<uint32_t>(it));
    run_backend(cpu(), *inst);
    const Reference ref = naive_attention(inst->call());
    expect_matches_reference(*inst, ref, default_tolerance(p.dtype));
    for (size_t i = 0; i < ref.counts.size(); ++i)
      if (ref.counts[i] >= 0) {
        ++counted;
        below += ref.counts[i] > 0;
      }
  }
  // The sweep exercised the map: some computed blocks have sparse pairs, some none.
  EXPECT_GT(below, 0);
  EXPECT_LT(below, counted);
}

TEST(CpuAttention, LargeLogitsAreStable) {
  // Scores of magnitude ~100+ overflow a plain exp in fp32: the softmax must
  // subtract the row maximum.
  Problem p = base_problem(with_text(2, 10, 10, 60, 45, TextPosition::After), 64);
  p.q_scale = p.k_scale = 5.f;
  const double err = check(p, 161);
  EXPECT_TRUE(std::isfinite(err));
}

// MapStatistic::Mass: each block's summed probability, in Eq. 2's units, against
// the double-precision reference, on a partial last block, text (padded, before
// and after), batch 2 with sparse layouts, and large logits (peaked rows).
TEST(CpuAttention, MassMapMatchesReference) {
  std::mt19937 rng(71);
  for (TextPosition where : {TextPosition::Before, TextPosition::After}) {
    for (int bs : {64, 128}) {
      Problem p = base_problem(with_text(4, 9, 11, 150, 97, where), bs);  // partial last block
      p.map_statistic = MapStatistic::Mass;
      p.B = 2;
      p.use_layout = true;
      p.layout = random_layout(2, 2, p.num_blocks(), 0.6, true, rng);
      SCOPED_TRACE(testing::Message() << to_string(where) << " block " << bs);
      check(p, 700 + bs + static_cast<uint32_t>(where));
      p.use_layout = false;
      p.q_scale = p.k_scale = 2.5f;  // peaked rows: a few keys hold most of the mass
      check(p, 750 + bs + static_cast<uint32_t>(where));
    }
  }
}

// The mass map is what it claims: summed over a dense row of blocks (all video,
// no text) the values give len_i * (n_keys - ...) = the pairs minus the row mass,
// i.e. sum_j S_ij len_j = n - 1 per query row when every key is video.
TEST(CpuAttention, MassMapOfADenseVideoRowSumsToOneRowOfMass) {
  Problem p = base_problem(video_only(3, 10, 9), 64);  // 270 tokens: 5 blocks, last 14
  p.map_statistic = MapStatistic::Mass;
  auto inst = make_instance(p, 81);
  run_backend(cpu(), *inst);
  const int n = p.num_video_blocks();
  std::vector<int64_t> len(static_cast<size_t>(n), 64);
  len.back() = 270 - 64 * (n - 1);
  for (int h = 0; h < 2; ++h)
    for (int i = 0; i < n; ++i) {
      // sum_j value_ij / len_j = sum_j (len_i - mass_ij) = n len_i - len_i (rows sum to 1).
      double sum = 0;
      for (int j = 0; j < n; ++j) sum += double(inst->counts[(size_t(h) * n + i) * n + j]) / double(len[j]);
      EXPECT_NEAR(sum, double(n - 1) * double(len[i]), 0.5 * n) << "head " << h << " row " << i;
    }
}
