#include "cpu/cpu_attention.hpp"

// GCC 12 reports a false "maybe uninitialized" inside Eigen's AVX-512 exp/max
// packets (_mm512_undefined_ps); it is not in our code.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <Eigen/Core>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <cstdlib>
#include <limits>
#include <memory>
#include <new>
#include <utility>
#include <vector>

#include "cpu/thread_pool.hpp"
#include "moddit/mask_policy.hpp"

namespace moddit {

namespace {

using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MatMap = Eigen::Map<RowMat>;
using ConstMatMap = Eigen::Map<const RowMat>;
// Score rows with a padded leading dimension.
using StridedMap = Eigen::Map<RowMat, Eigen::Aligned64, Eigen::OuterStride<>>;

// Converted K and V of the heads in flight are bounded by this many bytes, so
// that long sequences with many heads do not hold every head's copy at once.
constexpr int64_t kHeadCopyBudget = int64_t(256) << 20;
constexpr int64_t kConvertChunkRows = 512;

// Converts D elements at `src + offset` (of dtype `dt`) into fp32.
void convert_row(const void* src, DType dt, int64_t offset, int D, float* dst) {
  switch (dt) {
    case DType::F32: {
      const float* s = static_cast<const float*>(src) + offset;
      std::memcpy(dst, s, sizeof(float) * static_cast<size_t>(D));
      break;
    }
    case DType::BF16: {
      const uint16_t* s = static_cast<const uint16_t*>(src) + offset;
      for (int d = 0; d < D; ++d) {
        const uint32_t u = uint32_t(s[d]) << 16;
        std::memcpy(dst + d, &u, 4);
      }
      break;
    }
    case DType::F16: {
      const uint16_t* s = static_cast<const uint16_t*>(src) + offset;
      for (int d = 0; d < D; ++d) dst[d] = f16_to_f32(s[d]);
      break;
    }
  }
}

// Writes D fp32 values into `dst + offset`, converting to dtype `dt`.
void store_row(void* dst, DType dt, int64_t offset, int D, const float* src) {
  switch (dt) {
    case DType::F32:
      std::memcpy(static_cast<float*>(dst) + offset, src, sizeof(float) * static_cast<size_t>(D));
      break;
    case DType::BF16: {
      uint16_t* d16 = static_cast<uint16_t*>(dst) + offset;
      for (int d = 0; d < D; ++d) d16[d] = f32_to_bf16(src[d]);
      break;
    }
    case DType::F16: {
      uint16_t* d16 = static_cast<uint16_t*>(dst) + offset;
      for (int d = 0; d < D; ++d) d16[d] = f32_to_f16(src[d]);
      break;
    }
  }
}

int64_t tensor_offset(const int64_t* stride, int64_t b, int64_t n, int64_t h) {
  return b * stride[0] + n * stride[1] + h * stride[2];
}

// Real keys of one live key block, placed at columns [col, col + len) of the
// query block's score matrix.
struct Piece {
  int kb;
  int64_t start, len, col;
};
// A maximal run of consecutive real live keys: one GEMM each.
struct Run {
  int64_t start, len, col;
};

// A 64-byte aligned float buffer that only grows (contents are dropped when it
// grows). Eigen's element-wise loops
// and reductions peel to the first aligned element, so a row's rounding depends
// on its address: every score row starts on a 64-byte boundary, in every
// thread's scratch, so that results never depend on which thread ran an item.
class AlignedBuffer {
 public:
  float* get(size_t count) {
    if (count > capacity_) {
      const size_t bytes = (count * sizeof(float) + 63) / 64 * 64;
      data_.reset(static_cast<float*>(std::aligned_alloc(64, bytes)));
      if (!data_) throw std::bad_alloc();
      capacity_ = bytes / sizeof(float);
    }
    return data_.get();
  }

 private:
  struct Free {
    void operator()(float* p) const { std::free(p); }
  };
  std::unique_ptr<float, Free> data_;
  size_t capacity_ = 0;
};

struct Scratch {
  std::vector<Piece> pieces;
  std::vector<Run> runs;
  AlignedBuffer q, scores, probs, out;
  std::vector<float> row_lse, row_inv;
};

// The live key blocks of (head t, query block qb): `count` entries of col_idx,
// or, when the layout is dense, every block of the call's key range.
struct LiveBlocks {
  const int32_t* idx;  // null = blocks first .. first + count - 1
  int count;
  int first;
  int at(int i) const { return idx ? idx[i] : first + i; }
};

LiveBlocks live_blocks(const AttentionParams& p, int64_t t, int qb) {
  if (!p.layout_row_ptr) return {nullptr, p.k_block_end - p.k_block_begin, p.k_block_begin};
  const int64_t r = t * p.num_q_blocks + (qb - p.q_block_begin);
  const int32_t begin = p.layout_row_ptr[r], end = p.layout_row_ptr[r + 1];
  return {p.layout_col_idx + begin, end - begin, 0};
}

// Block b's tokens within the call's query / key range (the whole block on a
// whole-sequence call).
std::pair<int64_t, int64_t> query_span(const AttentionParams& p, int b) {
  return {std::max<int64_t>(p.block_starts[b], p.q_token_begin),
          std::min<int64_t>(p.block_starts[b + 1], int64_t(p.q_token_begin) + p.q_tokens)};
}
std::pair<int64_t, int64_t> key_span(const AttentionParams& p, int b) {
  return {std::max<int64_t>(p.block_starts[b], p.k_token_begin),
          std::min<int64_t>(p.block_starts[b + 1], int64_t(p.k_token_begin) + p.k_tokens)};
}

// Lists the real keys of the live blocks (within the key range) as pieces and
// merged runs, their starts relative to the key buffer's first token; returns the
// number of columns of the score matrix.
int64_t collect_keys(const AttentionParams& p, const LiveBlocks& live, Scratch& s) {
  s.pieces.clear();
  s.runs.clear();
  int64_t col = 0;
  auto add = [&](int kb, int64_t a, int64_t e) {
    if (e <= a) return;
    a -= p.k_token_begin;
    e -= p.k_token_begin;
    s.pieces.push_back({kb, a, e - a, col});
    if (!s.runs.empty() && s.runs.back().start + s.runs.back().len == a)
      s.runs.back().len += e - a;
    else
      s.runs.push_back({a, e - a, col});
    col += e - a;
  };
  const bool has_padding = p.key_pad_end > p.key_pad_begin;
  for (int i = 0; i < live.count; ++i) {
    const int kb = live.at(i);
    const auto [a, e] = key_span(p, kb);
    if (!has_padding) {
      add(kb, a, e);
    } else {  // the block minus the padding interval: at most two pieces
      add(kb, a, std::min(e, p.key_pad_begin));
      add(kb, std::max(a, p.key_pad_end), e);
    }
  }
  return col;
}

// Everything one call shares between work items.
struct CallContext {
  const AttentionParams* p;
  int64_t group_begin;  // first head (flat b * num_sel_heads + s) of the group in flight
  float* kv;            // per head in the group: K then V, N x D fp32 each
  std::vector<Scratch>* scratch;

  int64_t head_elems() const { return int64_t(p->k_tokens) * p->head_dim; }  // K or V of one head
  const float* k_of(int64_t t) const { return kv + (t - group_begin) * 2 * head_elems(); }
  const float* v_of(int64_t t) const { return k_of(t) + head_elems(); }
  int head_index(int64_t t) const {
    const int s = static_cast<int>(t % p->num_sel_heads);
    return p->heads ? p->heads[s] : s;
  }
};

void convert_head_rows(const CallContext& c, int64_t t, int64_t n0, int64_t n1) {
  const AttentionParams& p = *c.p;
  const int64_t b = t / p.num_sel_heads;
  const int h = c.head_index(t);
  const int D = p.head_dim;
  float* k = const_cast<float*>(c.k_of(t));
  float* v = const_cast<float*>(c.v_of(t));
  for (int64_t n = n0; n < n1; ++n) {
    convert_row(p.k, p.dtype, tensor_offset(p.k_stride, b, n, h), D, k + n * D);
    convert_row(p.v, p.dtype, tensor_offset(p.v_stride, b, n, h), D, v + n * D);
  }
}

// One work item: query block qb of head t (its rows within the query range).
// Rows are indexed from the query buffer's first token.
void attend_query_block(const CallContext& c, int64_t t, int qb, Scratch& s) {
  const AttentionParams& p = *c.p;
  const int64_t b = t / p.num_sel_heads;
  const int h = c.head_index(t);
  const int D = p.head_dim;
  const auto span = query_span(p, qb);
  const int64_t q0 = span.first - p.q_token_begin;
  const int m = static_cast<int>(span.second - span.first);
  const int64_t lse_base = (b * p.num_heads + h) * int64_t(p.q_tokens) + q0;

  const int64_t L = collect_keys(p, live_blocks(p, t, qb), s);
  if (L == 0) {  // no real live key: zeros and -inf
    float* zeros = s.out.get(static_cast<size_t>(D));
    std::fill(zeros, zeros + D, 0.f);
    for (int r = 0; r < m; ++r) {
      store_row(p.out, p.dtype, tensor_offset(p.o_stride, b, q0 + r, h), D, zeros);
      if (p.lse) p.lse[lse_base + r] = -std::numeric_limits<float>::infinity();
    }
    return;
  }

  float* q = s.q.get(static_cast<size_t>(m) * D);
  for (int r = 0; r < m; ++r)
    convert_row(p.q, p.dtype, tensor_offset(p.q_stride, b, q0 + r, h), D, q + r * D);
  MatMap Q(q, m, D);
  Q *= p.softmax_scale;  // scores are then scaled already

  const ConstMatMap K(c.k_of(t), p.k_tokens, D), V(c.v_of(t), p.k_tokens, D);
  const int64_t ld = (L + 15) / 16 * 16;  // 64-byte aligned rows
  float* scores = s.scores.get(static_cast<size_t>(m * ld));
  StridedMap S(scores, m, L, Eigen::OuterStride<>(ld));
  for (const Run& run : s.runs)
    S.middleCols(run.col, run.len).noalias() = Q * K.middleRows(run.start, run.len).transpose();

  // The map compares the raw scores with the row LSE, so when it is requested
  // the exponentials go to a second buffer; otherwise they overwrite the scores.
  const bool want_counts = p.map_counts != nullptr;
  StridedMap E(want_counts ? s.probs.get(static_cast<size_t>(m * ld)) : scores, m, L,
               Eigen::OuterStride<>(ld));
  s.row_lse.resize(static_cast<size_t>(m));
  s.row_inv.resize(static_cast<size_t>(m));
  for (int r = 0; r < m; ++r) {
    const float mx = S.row(r).maxCoeff();
    E.row(r) = (S.row(r).array() - mx).exp().matrix();
    const double sum = E.row(r).cast<double>().sum();  // >= 1: the max contributes exp(0)
    s.row_lse[r] = static_cast<float>(double(mx) + std::log(sum));
    s.row_inv[r] = static_cast<float>(1.0 / sum);
  }

  float* out = s.out.get(static_cast<size_t>(m) * D);
  MatMap O(out, m, D);
  bool first = true;
  for (const Run& run : s.runs) {
    if (first)
      O.noalias() = E.middleCols(run.col, run.len) * V.middleRows(run.start, run.len);
    else
      O.noalias() += E.middleCols(run.col, run.len) * V.middleRows(run.start, run.len);
    first = false;
  }
  for (int r = 0; r < m; ++r) {
    O.row(r) *= s.row_inv[r];
    store_row(p.out, p.dtype, tensor_offset(p.o_stride, b, q0 + r, h), D, out + r * D);
    if (p.lse) p.lse[lse_base + r] = s.row_lse[r];
  }

  const int fv = p.first_video_block, nv = p.num_video_blocks;
  if (!want_counts || qb < fv || qb >= fv + nv) return;
  int32_t* counts = p.map_counts + ((b * p.num_heads + h) * nv + (qb - fv)) * int64_t(nv);
  // Pieces of one block are adjacent in the list; a video block has one piece
  // (padding is text), but the sum does not rely on it.
  for (size_t i = 0; i < s.pieces.size();) {
    const int kb = s.pieces[i].kb;
    int64_t count = 0;
    for (; i < s.pieces.size() && s.pieces[i].kb == kb; ++i) {
      const Piece& pc = s.pieces[i];
      if (kb < fv || kb >= fv + nv) continue;
      for (int r = 0; r < m; ++r) {
        const float* row = scores + r * ld + pc.col;
        const float lse = s.row_lse[r];
        int64_t below = 0;
        for (int64_t j = 0; j < pc.len; ++j) below += below_eta(row[j], lse, p.log_eta) ? 1 : 0;
        count += below;
      }
    }
    if (kb >= fv && kb < fv + nv) counts[kb - fv] = static_cast<int32_t>(count);
  }
}

}  // namespace

void cpu_attention(const AttentionParams& p, int threads) {
  ThreadPool pool(threads);
  cpu_attention(p, pool);
}

void cpu_attention(const AttentionParams& p, ThreadPool& pool) {
  const int64_t heads_total = int64_t(p.batch) * p.num_sel_heads;
  const int64_t N = p.k_tokens;  // K and V rows converted per head
  const int64_t head_bytes = 2 * N * p.head_dim * int64_t(sizeof(float));
  const int64_t group = std::max<int64_t>(
      1, std::min<int64_t>(heads_total, kHeadCopyBudget / std::max<int64_t>(head_bytes, 1)));

  std::vector<Scratch> scratch(static_cast<size_t>(pool.size()));
  AlignedBuffer kv;  // every element is written by the conversion phase before use
  CallContext c{&p, 0, kv.get(static_cast<size_t>(group * 2 * N * p.head_dim)), &scratch};

  struct Item {
    int64_t t;
    int qb;
    int64_t keys;
  };
  std::vector<Item> items;
  const int64_t chunks = (N + kConvertChunkRows - 1) / kConvertChunkRows;
  for (int64_t g0 = 0; g0 < heads_total; g0 += group) {
    const int64_t gn = std::min(group, heads_total - g0);
    c.group_begin = g0;
    pool.parallel_for(gn * chunks, [&](int64_t i, int) {
      const int64_t n0 = (i % chunks) * kConvertChunkRows;
      convert_head_rows(c, g0 + i / chunks, n0, std::min(N, n0 + kConvertChunkRows));
    });

    // Longest rows first, so that the last items to finish are short ones.
    items.clear();
    for (int64_t t = g0; t < g0 + gn; ++t)
      for (int qb = p.q_block_begin; qb < p.q_block_begin + p.num_q_blocks; ++qb) {
        const LiveBlocks live = live_blocks(p, t, qb);
        int64_t keys = 0;
        for (int i = 0; i < live.count; ++i) {
          const auto ks = key_span(p, live.at(i));
          keys += ks.second - ks.first;
        }
        const auto qs = query_span(p, qb);
        items.push_back({t, qb, keys * (qs.second - qs.first)});
      }
    std::stable_sort(items.begin(), items.end(),
                     [](const Item& a, const Item& b) { return a.keys > b.keys; });
    pool.parallel_for(static_cast<int64_t>(items.size()), [&](int64_t i, int worker) {
      attend_query_block(c, items[i].t, items[i].qb, scratch[static_cast<size_t>(worker)]);
    });
  }
}

}  // namespace moddit
