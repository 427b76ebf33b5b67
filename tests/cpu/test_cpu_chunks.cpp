// Chunk calls (AttentionCall::chunk, ring attention): one query chunk against
// one key chunk, any token offsets, with the layout sliced per chunk pair. The
// partial outputs merged by their LSE must give the whole-sequence call.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "cpu/test_support.hpp"
#include "moddit/backend.hpp"
#include "moddit/block_layout.hpp"
#include "moddit/error.hpp"
#include "moddit/host_tensor.hpp"

using namespace moddit;
using namespace moddit_test;

namespace {

Backend& cpu() {
  static std::shared_ptr<Backend> backend = make_cpu_backend(2);
  return *backend;
}

HostTensor random_host(int64_t B, int64_t N, int64_t H, int64_t D, std::mt19937& rng) {
  HostTensor t(DType::F32, B, N, H, D);
  std::normal_distribution<float> normal;
  for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = normal(rng);
  return t;
}

// Tokens [n0, n0 + len) of a view.
TensorView rows_of(TensorView t, int64_t n0, int64_t len) {
  t.data = static_cast<char*>(t.data) + n0 * t.stride[kN] * dtype_size(t.dtype);
  t.shape[kN] = len;
  return t;
}

struct Whole {
  HostTensor out;
  std::vector<float> lse;
};

Whole whole_call(const TokenLayout& tokens, int bs, const HostTensor& q, const HostTensor& k,
                 const HostTensor& v, const BlockLayout* layout) {
  Whole w{HostTensor(DType::F32, q.shape[0], q.shape[1], q.shape[2], q.shape[3]), {}};
  w.lse.assign(static_cast<size_t>(q.shape[0] * q.shape[2] * q.shape[1]), 0.f);
  AttentionCall c;
  c.q = q.view();
  c.k = k.view();
  c.v = v.view();
  c.out = w.out.view();
  c.tokens = &tokens;
  c.block_size = bs;
  c.layout = layout;
  c.lse = w.lse.data();
  cpu().attention(c);
  return w;
}

// Runs every (query chunk, key chunk) pair with the sliced layout and merges the
// partials in double precision by their LSE, as ring attention does. Returns the
// number of pairs that had no live block (skipped).
int merged_chunks(const TokenLayout& tokens, int bs, const HostTensor& q, const HostTensor& k,
                  const HostTensor& v, const BlockLayout* layout, const std::vector<int64_t>& cuts,
                  std::vector<double>& out, std::vector<double>& lse) {
  const int64_t B = q.shape[0], N = q.shape[1], H = q.shape[2], D = q.shape[3];
  const BlockGrid grid = make_block_grid(tokens, bs);
  out.assign(static_cast<size_t>(B * N * H * D), 0.0);
  lse.assign(static_cast<size_t>(B * H * N), -std::numeric_limits<double>::infinity());
  int skipped = 0;
  for (size_t qi = 0; qi + 1 < cuts.size(); ++qi)
    for (size_t ki = 0; ki + 1 < cuts.size(); ++ki) {
      const int64_t q0 = cuts[qi], q1 = cuts[qi + 1], k0 = cuts[ki], k1 = cuts[ki + 1];
      BlockLayout sliced;
      if (layout) {
        sliced = slice_layout(*layout, grid, q0, q1, k0, k1);
        if (sliced.col_idx.empty()) {
          ++skipped;
          continue;
        }
      }
      HostTensor part(DType::F32, B, q1 - q0, H, D);
      std::vector<float> part_lse(static_cast<size_t>(B * H * (q1 - q0)));
      AttentionCall c;
      c.chunk = true;
      c.q_begin = q0;
      c.k_begin = k0;
      c.q = rows_of(q.view(), q0, q1 - q0);
      c.k = rows_of(k.view(), k0, k1 - k0);
      c.v = rows_of(v.view(), k0, k1 - k0);
      c.out = part.view();
      c.tokens = &tokens;
      c.block_size = bs;
      c.layout = layout ? &sliced : nullptr;
      c.lse = part_lse.data();
      cpu().attention(c);
      for (int64_t b = 0; b < B; ++b)
        for (int64_t h = 0; h < H; ++h)
          for (int64_t t = q0; t < q1; ++t) {
            const double lp = part_lse[static_cast<size_t>((b * H + h) * (q1 - q0) + t - q0)];
            if (std::isinf(lp)) continue;  // no live key of this chunk for this row
            double& l = lse[static_cast<size_t>((b * H + h) * N + t)];
            const double m = std::max(l, lp);
            const double nl = m + std::log(std::exp(l - m) + std::exp(lp - m));
            const double wa = std::exp(l - nl), wb = std::exp(lp - nl);
            for (int64_t d = 0; d < D; ++d) {
              double& o = out[static_cast<size_t>(((b * N + t) * H + h) * D + d)];
              o = o * wa + wb * part.f32()[((b * (q1 - q0) + t - q0) * H + h) * D + d];
            }
            l = nl;
          }
    }
  return skipped;
}

// max |merged - whole| / max |whole| over out, and the largest LSE difference.
void expect_merge_matches(const Whole& w, const std::vector<double>& out,
                          const std::vector<double>& lse) {
  double err = 0, scale = 0, lse_err = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    err = std::max(err, std::abs(out[i] - w.out.f32()[i]));
    scale = std::max(scale, std::abs(double(w.out.f32()[i])));
  }
  for (size_t i = 0; i < lse.size(); ++i) {
    if (std::isinf(w.lse[i]) || std::isinf(lse[i])) {
      EXPECT_EQ(std::isinf(w.lse[i]), std::isinf(lse[i])) << "lse " << i;
      continue;
    }
    lse_err = std::max(lse_err, std::abs(lse[i] - w.lse[i]) / (1.0 + std::abs(double(w.lse[i]))));
  }
  EXPECT_LT(err / scale, 2e-6);  // fp32 round-off of the same sums in another order
  EXPECT_LT(lse_err, 2e-6);
}

struct Case {
  std::string name;
  TokenLayout tokens;
  int block_size;
};

std::vector<Case> cases() {
  return {
      {"video only, 450 tokens, 64-blocks", video_only(5, 10, 9), 64},
      {"text before, padded", with_text(3, 10, 11, 77, 60, TextPosition::Before), 64},
      {"text after, padded, 128-blocks", with_text(4, 9, 10, 45, 30, TextPosition::After), 128},
  };
}

// Chunk boundaries that cut blocks, frames and text anywhere (and one at a block
// start), as a sequence split over ranks does.
std::vector<int64_t> cuts_for(int64_t N, int parts, std::mt19937& rng) {
  std::vector<int64_t> c = {0};
  std::uniform_int_distribution<int64_t> jitter(-37, 37);
  for (int i = 1; i < parts; ++i) c.push_back(N * i / parts + (i == 1 ? 0 : jitter(rng)));
  c.push_back(N);
  return c;
}

}  // namespace

TEST(CpuChunks, MergedChunkPairsEqualTheWholeCall) {
  std::mt19937 rng(7);
  for (const Case& cs : cases()) {
    const int64_t N = cs.tokens.total_tokens(), B = 2, H = 3, D = 32;
    const BlockGrid grid = make_block_grid(cs.tokens, cs.block_size);
    HostTensor q = random_host(B, N, H, D, rng), k = random_host(B, N, H, D, rng),
               v = random_host(B, N, H, D, rng);
    for (double density : {1.0, 0.35}) {
      for (int parts : {2, 3, 4}) {
        SCOPED_TRACE(cs.name + ", density " + std::to_string(density) + ", " +
                     std::to_string(parts) + " chunks");
        BlockLayout layout;
        const bool dense = density == 1.0;
        if (!dense) layout = random_layout(int(B), int(H), grid.num_blocks(), density, true, rng);
        const Whole w = whole_call(cs.tokens, cs.block_size, q, k, v, dense ? nullptr : &layout);
        std::vector<double> out, lse;
        merged_chunks(cs.tokens, cs.block_size, q, k, v, dense ? nullptr : &layout,
                      cuts_for(N, parts, rng), out, lse);
        expect_merge_matches(w, out, lse);
      }
    }
  }
}

TEST(CpuChunks, DiagonalLayoutSkipsFarChunkPairs) {
  // A diagonal-only layout: far chunk pairs have no live block and are skipped,
  // the rest still merges to the whole call.
  std::mt19937 rng(3);
  const TokenLayout tokens = video_only(6, 10, 12);  // 720 tokens, 12 blocks of 64
  const BlockGrid grid = make_block_grid(tokens, 64);
  const int64_t N = tokens.total_tokens(), H = 2, D = 16;
  BlockMask m(1, int(H), grid.num_blocks(), grid.num_blocks());
  for (int h = 0; h < H; ++h)
    for (int b = 0; b < grid.num_blocks(); ++b) m.at(0, h, b, b) = 1;
  const BlockLayout layout = to_layout(m);
  HostTensor q = random_host(1, N, H, D, rng), k = random_host(1, N, H, D, rng),
             v = random_host(1, N, H, D, rng);
  const Whole w = whole_call(tokens, 64, q, k, v, &layout);
  std::vector<double> out, lse;
  const int skipped = merged_chunks(tokens, 64, q, k, v, &layout, {0, 180, 360, 540, 720}, out, lse);
  EXPECT_EQ(skipped, 16 - 4 - 3 * 2);  // only pairs sharing a cut block meet a diagonal block
  expect_merge_matches(w, out, lse);
}

TEST(CpuChunks, WholeRangeChunkEqualsTheWholeCallBitForBit) {
  std::mt19937 rng(5);
  const TokenLayout tokens = with_text(3, 8, 9, 20, 17, TextPosition::After);
  const int64_t N = tokens.total_tokens(), H = 2, D = 32;
  HostTensor q = random_host(1, N, H, D, rng), k = random_host(1, N, H, D, rng),
             v = random_host(1, N, H, D, rng);
  const Whole w = whole_call(tokens, 64, q, k, v, nullptr);
  HostTensor out(DType::F32, 1, N, H, D);
  std::vector<float> lse(static_cast<size_t>(H * N));
  AttentionCall c;
  c.chunk = true;
  c.q = q.view();
  c.k = k.view();
  c.v = v.view();
  c.out = out.view();
  c.tokens = &tokens;
  c.block_size = 64;
  c.lse = lse.data();
  cpu().attention(c);
  EXPECT_EQ(out.bytes, w.out.bytes);
  EXPECT_EQ(lse, w.lse);
}

TEST(CpuChunks, HeadSubsetOnAChunkWritesOnlyItsHeads) {
  std::mt19937 rng(9);
  const TokenLayout tokens = video_only(4, 8, 8);  // 256 tokens
  const int64_t N = tokens.total_tokens(), H = 3, D = 16;
  HostTensor q = random_host(1, N, H, D, rng), k = random_host(1, N, H, D, rng),
             v = random_host(1, N, H, D, rng);
  HostTensor out(DType::F32, 1, 100, H, D);
  for (int64_t i = 0; i < out.numel(); ++i) out.f32()[i] = 12345.f;
  const std::vector<int32_t> heads = {1};
  AttentionCall c;
  c.chunk = true;
  c.q_begin = 50;
  c.k_begin = 0;
  c.q = rows_of(q.view(), 50, 100);
  c.k = k.view();
  c.v = v.view();
  c.out = out.view();
  c.tokens = &tokens;
  c.block_size = 64;
  c.heads = &heads;
  cpu().attention(c);
  const Whole w = whole_call(tokens, 64, q, k, v, nullptr);
  for (int64_t t = 0; t < 100; ++t)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t d = 0; d < D; ++d) {
        const float got = out.f32()[(t * H + h) * D + d];
        if (h == 1) EXPECT_NEAR(got, w.out.f32()[((t + 50) * H + h) * D + d], 1e-5f);
        else EXPECT_EQ(got, 12345.f);
      }
}

TEST(CpuChunks, BlocksMeetingAndSliceLayout) {
  const TokenLayout tokens = with_text(2, 10, 10, 70, 70, TextPosition::Before);  // text 70, video 200
  const BlockGrid grid = make_block_grid(tokens, 64);  // starts 0 64 70 134 198 262 270
  ASSERT_EQ(grid.num_blocks(), 6);
  EXPECT_EQ(blocks_meeting(grid, 0, 64), std::make_pair(0, 1));
  EXPECT_EQ(blocks_meeting(grid, 63, 65), std::make_pair(0, 2));
  EXPECT_EQ(blocks_meeting(grid, 64, 70), std::make_pair(1, 2));
  EXPECT_EQ(blocks_meeting(grid, 100, 270), std::make_pair(2, 6));
  EXPECT_THROW(blocks_meeting(grid, 10, 10), Error);
  EXPECT_THROW(blocks_meeting(grid, 0, 271), Error);

  BlockMask m(1, 2, 6, 6);
  for (int h = 0; h < 2; ++h)
    for (int q = 0; q < 6; ++q)
      for (int k = 0; k < 6; ++k) m.at(0, h, q, k) = (q + k + h) % 2;
  const BlockLayout l = to_layout(m);
  const BlockLayout s = slice_layout(l, grid, 65, 140, 100, 200);  // q blocks 1..3, k blocks 2..4
  EXPECT_EQ(s.num_q_blocks, 3);
  EXPECT_EQ(s.num_k_blocks, 6);
  const BlockMask sm = to_mask(s);
  for (int h = 0; h < 2; ++h)
    for (int q = 0; q < 3; ++q)
      for (int k = 0; k < 6; ++k)
        EXPECT_EQ(sm.at(0, h, q, k), (k >= 2 && k <= 4) ? m.at(0, h, q + 1, k) : 0)
            << h << " " << q << " " << k;
  EXPECT_THROW(slice_layout(s, grid, 0, 10, 0, 10), Error);  // not a whole-sequence layout
}

TEST(CpuChunks, BadChunkCallsAreRefusedNamingTheProblem) {
  std::mt19937 rng(1);
  const TokenLayout tokens = video_only(2, 8, 8);  // 128 tokens
  HostTensor q = random_host(1, 128, 2, 16, rng), k = q, v = q, out = q;
  auto base = [&] {
    AttentionCall c;
    c.chunk = true;
    c.q_begin = 64;
    c.k_begin = 0;
    c.q = rows_of(q.view(), 0, 64);
    c.k = rows_of(k.view(), 0, 32);
    c.v = rows_of(v.view(), 0, 32);
    c.out = rows_of(out.view(), 0, 64);
    c.tokens = &tokens;
    c.block_size = 64;
    return c;
  };
  auto message = [&](AttentionCall c) -> std::string {
    try {
      cpu().attention(c);
    } catch (const Error& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_EQ(message(base()), "");
  {
    AttentionCall c = base();
    c.q_begin = 100;
    EXPECT_NE(message(c).find("query chunk [100, 164) is not inside the sequence of 128"),
              std::string::npos)
        << message(c);
  }
  {
    AttentionCall c = base();
    c.k_begin = -1;
    EXPECT_NE(message(c).find("key chunk"), std::string::npos) << message(c);
  }
  {
    AttentionCall c = base();
    std::vector<int32_t> counts(4);
    c.map_counts = counts.data();
    EXPECT_NE(message(c).find("no sparsity map on a chunk call"), std::string::npos) << message(c);
  }
  {
    AttentionCall c = base();
    c.v = rows_of(v.view(), 0, 48);
    EXPECT_NE(message(c).find("v: shape"), std::string::npos) << message(c);
  }
  {
    AttentionCall c = base();  // keys [0, 32): block 0 only; the layout lists block 1
    BlockMask m(1, 2, 1, 2);
    m.at(0, 0, 0, 1) = 1;
    const BlockLayout l = to_layout(m);
    c.layout = &l;
    EXPECT_NE(message(c).find("outside the key chunk's blocks [0, 1)"), std::string::npos)
        << message(c);
  }
  {
    AttentionCall c = base();  // the whole-sequence layout is not a chunk layout
    const BlockLayout l = full_layout(1, 2, 2);
    c.layout = &l;
    EXPECT_NE(message(c).find("the call needs [batch 1, heads 2, 1x2]"), std::string::npos)
        << message(c);
  }
  {
    AttentionCall c = base();  // without `chunk`, a short q is the old error
    c.chunk = false;
    c.k = rows_of(k.view(), 0, 64);
    c.v = rows_of(v.view(), 0, 64);
    EXPECT_NE(message(c).find("sequence length 64 does not match the token layout"),
              std::string::npos)
        << message(c);
  }
}
