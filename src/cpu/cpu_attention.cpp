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
#include "moddit/fp8.hpp"
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
  std::vector<float> row_lse, row_inv, row_shift;
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
  float* k_mean;        // FP8: per head in the group, the mean of K over its real keys (D)

  int64_t head_elems() const { return int64_t(p->k_tokens) * p->head_dim; }  // K or V of one head
  const float* k_of(int64_t t) const { return kv + (t - group_begin) * 2 * head_elems(); }
  const float* v_of(int64_t t) const { return k_of(t) + head_elems(); }
  float* k_mean_of(int64_t t) const { return k_mean + (t - group_begin) * p->head_dim; }
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

// Precision FP8 (fp8.hpp): replaces the head's fp32 K by its smoothed,
// per-block quantized values k' = round(k - mean) and V by its per-channel
// quantized values, both dequantized (exact: the scales are powers of two), and
// keeps the mean for the LSE. Padding keys become zeros, as on the GPU.
void quantize_head_fp8(const CallContext& c, int64_t t) {
  const AttentionParams& p = *c.p;
  const int D = p.head_dim;
  const int64_t N = p.seq_len;
  float* k = const_cast<float*>(c.k_of(t));
  float* v = const_cast<float*>(c.v_of(t));
  float* mean = c.k_mean_of(t);
  auto real = [&](int64_t n) { return key_is_real(n, p.key_pad_begin, p.key_pad_end); };
  std::vector<double> sum(static_cast<size_t>(D), 0.0);
  std::vector<float> vmax(static_cast<size_t>(D), 0.f);
  int64_t count = 0;
  for (int64_t n = 0; n < N; ++n) {
    if (!real(n)) continue;
    ++count;
    for (int d = 0; d < D; ++d) {
      sum[d] += k[n * D + d];
      vmax[d] = std::max(vmax[d], std::fabs(v[n * D + d]));
    }
  }
  for (int d = 0; d < D; ++d) mean[d] = count ? static_cast<float>(sum[d] / double(count)) : 0.f;
  std::vector<float> vs(static_cast<size_t>(D));
  for (int d = 0; d < D; ++d) vs[d] = fp8::pow2_scale(vmax[d]);
  for (int b = 0; b < p.num_blocks; ++b) {
    const int64_t a = p.block_starts[b], e = p.block_starts[b + 1];
    float amax = 0.f;
    for (int64_t n = a; n < e; ++n)
      if (real(n))
        for (int d = 0; d < D; ++d) amax = std::max(amax, std::fabs(k[n * D + d] - mean[d]));
    const float ks = fp8::pow2_scale(amax);
    for (int64_t n = a; n < e; ++n)
      for (int d = 0; d < D; ++d) {
        float& kx = k[n * D + d];
        float& vx = v[n * D + d];
        if (!real(n)) {
          kx = vx = 0.f;
          continue;
        }
        kx = fp8::round_e4m3((kx - mean[d]) / ks) * ks;
        vx = fp8::round_e4m3(vx / vs[d]) * vs[d];
      }
  }
}

// Precision FP8: the weights the GPU's P V product uses, in E (which holds
// exp(S - mx) over the row): per key tile (one live block, visited in list
// order) P is 2^8 exp(S - m_t) rounded to e4m3, m_t the running maximum after
// the tile; the online softmax's rescaling by exp(m_t - mx) is exact math.
void round_probs_fp8(const Scratch& s, const StridedMap& S, StridedMap& E, int r, float mx) {
  float m_run = -std::numeric_limits<float>::infinity();
  for (size_t i = 0; i < s.pieces.size();) {
    size_t j = i;
    float tmax = -std::numeric_limits<float>::infinity();
    for (; j < s.pieces.size() && s.pieces[j].kb == s.pieces[i].kb; ++j)
      tmax = std::max(tmax, S.row(r).segment(s.pieces[j].col, s.pieces[j].len).maxCoeff());
    const float m_t = std::max(m_run, tmax);
    const float rescale = std::exp(m_t - mx) * std::ldexp(1.f, -int(fp8::kPLog2));
    for (; i < j; ++i)
      for (int64_t col = s.pieces[i].col; col < s.pieces[i].col + s.pieces[i].len; ++col)
        E(r, col) = fp8::round_e4m3(std::ldexp(std::exp(S(r, col) - m_t), int(fp8::kPLog2))) * rescale;
    m_run = m_t;
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
  const bool fp8 = p.precision == Precision::FP8;
  s.row_shift.assign(static_cast<size_t>(m), 0.f);
  if (fp8) {  // per-row Q scales; the LSE shift of K's smoothing, from the unrounded q
    const float* mean = c.k_mean_of(t);
    for (int r = 0; r < m; ++r) {
      float* qr = q + r * D;
      double dot = 0.0;
      float amax = 0.f;
      for (int d = 0; d < D; ++d) {
        dot += double(qr[d]) * mean[d];
        amax = std::max(amax, std::fabs(qr[d]));
      }
      s.row_shift[r] = static_cast<float>(dot * p.softmax_scale);
      const float qs = fp8::pow2_scale(amax);
      for (int d = 0; d < D; ++d) qr[d] = fp8::round_e4m3(qr[d] / qs) * qs;
    }
  }
  MatMap Q(q, m, D);
  Q *= p.softmax_scale;  // scores are then scaled already

  const ConstMatMap K(c.k_of(t), p.k_tokens, D), V(c.v_of(t), p.k_tokens, D);
  const int64_t ld = (L + 15) / 16 * 16;  // 64-byte aligned rows
  float* scores = s.scores.get(static_cast<size_t>(m * ld));
  StridedMap S(scores, m, L, Eigen::OuterStride<>(ld));
  for (const Run& run : s.runs)
    S.middleCols(run.col, run.len).noalias() = Q * K.middleRows(run.start, run.len).transpose();

  // The map compares the raw scores with the row LSE, so when it is requested
  // the exponentials go to a second buffer; otherwise they overwrite the scores
  // (FP8 needs the scores too: round_probs_fp8).
  const bool want_counts = p.map_counts != nullptr;
  StridedMap E(want_counts || fp8 ? s.probs.get(static_cast<size_t>(m * ld)) : scores, m, L,
               Eigen::OuterStride<>(ld));
  s.row_lse.resize(static_cast<size_t>(m));
  s.row_inv.resize(static_cast<size_t>(m));
  for (int r = 0; r < m; ++r) {
    const float mx = S.row(r).maxCoeff();
    E.row(r) = (S.row(r).array() - mx).exp().matrix();
    const double sum = E.row(r).cast<double>().sum();  // >= 1: the max contributes exp(0)
    s.row_lse[r] = static_cast<float>(double(mx) + std::log(sum));
    s.row_inv[r] = static_cast<float>(1.0 / sum);
    if (fp8) round_probs_fp8(s, S, E, r, mx);
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
    if (p.lse) p.lse[lse_base + r] = s.row_lse[r] + s.row_shift[r];
  }

  const int fv = p.first_video_block, nv = p.num_video_blocks;
  if (!want_counts || qb < fv || qb >= fv + nv) return;
  int32_t* counts = p.map_counts + ((b * p.num_heads + h) * nv + (qb - fv)) * int64_t(nv);
  const bool mass_map = p.map_statistic == MapStatistic::Mass;
  // Pieces of one block are adjacent in the list; a video block has one piece
  // (padding is text), but the sum does not rely on it.
  for (size_t i = 0; i < s.pieces.size();) {
    const int kb = s.pieces[i].kb;
    int64_t count = 0, keys = 0;
    double mass = 0.0;  // Mass: the block's probabilities P = exp(s - lse), summed
    for (; i < s.pieces.size() && s.pieces[i].kb == kb; ++i) {
      const Piece& pc = s.pieces[i];
      if (kb < fv || kb >= fv + nv) continue;
      keys += pc.len;
      for (int r = 0; r < m; ++r) {
        const float* row = scores + r * ld + pc.col;
        const float lse = s.row_lse[r];
        if (mass_map) {
          for (int64_t j = 0; j < pc.len; ++j) mass += std::exp(double(row[j]) - double(lse));
          continue;
        }
        int64_t below = 0;
        for (int64_t j = 0; j < pc.len; ++j) below += below_eta(row[j], lse, p.log_eta) ? 1 : 0;
        count += below;
      }
    }
    if (kb >= fv && kb < fv + nv)
      counts[kb - fv] = mass_map ? map_mass_value(mass, m, keys) : static_cast<int32_t>(count);
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
  const bool fp8 = p.precision == Precision::FP8;
  std::vector<float> k_mean(fp8 ? static_cast<size_t>(group * p.head_dim) : 0);
  CallContext c{&p, 0, kv.get(static_cast<size_t>(group * 2 * N * p.head_dim)), &scratch,
                k_mean.data()};

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
    if (fp8) pool.parallel_for(gn, [&](int64_t i, int) { quantize_head_fp8(c, g0 + i); });

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
