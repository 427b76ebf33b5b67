#include <cmath>

#include "moddit/backend.hpp"
#include "moddit/error.hpp"
#include "moddit/size_limits.hpp"

namespace moddit {

const char* to_string(Precision p) { return p == Precision::FP8 ? "fp8" : "exact"; }

Precision precision_from_string(const std::string& s) {
  if (s == "exact") return Precision::Exact;
  if (s == "fp8") return Precision::FP8;
  throw Error("unknown precision '" + s + "' (expected \"exact\" or \"fp8\")");
}

const char* to_string(MapStatistic m) { return m == MapStatistic::Mass ? "mass" : "eq2"; }

MapStatistic map_statistic_from_string(const std::string& s) {
  if (s == "eq2") return MapStatistic::Eq2;
  if (s == "mass") return MapStatistic::Mass;
  throw Error("unknown map_statistic '" + s + "' (expected \"eq2\" or \"mass\")");
}

namespace {
void copy_strides(const TensorView& t, int64_t* s) {
  s[0] = t.stride[kB];
  s[1] = t.stride[kN];
  s[2] = t.stride[kH];
}
}  // namespace

void check_same_as_q(const TensorView& q, const TensorView& t, const char* name) {
  for (int i = 0; i < 4; ++i)
    MODDIT_CHECK(q.shape[i] == t.shape[i], name, ": shape [", t.shape[0], ", ", t.shape[1], ", ",
                 t.shape[2], ", ", t.shape[3], "] differs from q's [", q.shape[0], ", ",
                 q.shape[1], ", ", q.shape[2], ", ", q.shape[3], "]");
  MODDIT_CHECK(q.dtype == t.dtype, name, ": dtype ", to_string(t.dtype), " differs from q's ",
               to_string(q.dtype));
  MODDIT_CHECK(q.device == t.device && q.device_index == t.device_index, name,
               ": on a different device than q");
}

void check_layout_shape(const BlockLayout& l, const AttentionParams& p) {
  const bool chunk = p.num_q_blocks != p.num_blocks || p.k_block_begin != 0 ||
                     p.k_block_end != p.num_blocks;
  MODDIT_CHECK(l.batch == p.batch && l.heads == p.num_sel_heads &&
                   l.num_q_blocks == p.num_q_blocks && l.num_k_blocks == p.num_blocks,
               "attention: block layout is [batch ", l.batch, ", heads ", l.heads, ", ",
               l.num_q_blocks, "x", l.num_k_blocks, "], the call needs [batch ", p.batch,
               ", heads ", p.num_sel_heads, ", ", p.num_q_blocks, "x", p.num_blocks, "]",
               chunk ? " (a chunk call: rows of the query blocks that meet the chunk; slice_layout)"
                     : "");
  // rows() cannot overflow here: batch x heads x blocks was bounded by prepare_params.
  MODDIT_CHECK(static_cast<int64_t>(l.row_ptr.size()) == l.rows() + 1 && !l.row_ptr.empty() &&
                   l.row_ptr.back() == static_cast<int64_t>(l.col_idx.size()),
               "attention: block layout arrays (row_ptr ", l.row_ptr.size(), ", col_idx ",
               l.col_idx.size(), " entries) do not match its ", l.rows(), " rows");
  if (!chunk) return;
  // Which key blocks a chunk may list depends on the call, not on the layout
  // alone: checked on every chunk call (host layouts only; linear in the layout).
  for (size_t i = 0; i < l.col_idx.size(); ++i)
    MODDIT_CHECK(l.col_idx[i] >= p.k_block_begin && l.col_idx[i] < p.k_block_end,
                 "attention: block layout lists key block ", l.col_idx[i],
                 ", outside the key chunk's blocks [", p.k_block_begin, ", ", p.k_block_end,
                 ") (slice_layout keeps only blocks that meet the chunk)");
}

void validate_layout_for(const BlockLayout& l, const AttentionParams& p) {
  l.validate();
  check_layout_shape(l, p);
}

namespace {
// b against a (named `ref`): the same shape, dtype and device.
void check_same(const TensorView& a, const TensorView& b, const char* name, const char* ref) {
  for (int i = 0; i < 4; ++i)
    MODDIT_CHECK(a.shape[i] == b.shape[i], name, ": shape [", b.shape[0], ", ", b.shape[1], ", ",
                 b.shape[2], ", ", b.shape[3], "] differs from ", ref, "'s [", a.shape[0], ", ",
                 a.shape[1], ", ", a.shape[2], ", ", a.shape[3], "]");
  MODDIT_CHECK(a.dtype == b.dtype, name, ": dtype ", to_string(b.dtype), " differs from ", ref,
               "'s ", to_string(a.dtype));
  MODDIT_CHECK(a.device == b.device && a.device_index == b.device_index, name,
               ": on a different device than ", ref);
}
}  // namespace

AttentionParams prepare_params(const AttentionCall& c, const BlockGrid& grid) {
  MODDIT_CHECK(c.tokens != nullptr, "attention: no token layout given");
  validate_view(c.q, "q");
  validate_view(c.k, "k");
  validate_view(c.v, "v");
  validate_view(c.out, "out");
  const int64_t N = c.tokens->total_tokens();
  const int64_t Nq = c.q.seq_len(), Nk = c.k.seq_len();
  if (!c.chunk) {
    check_same_as_q(c.q, c.k, "k");
    check_same_as_q(c.q, c.v, "v");
    check_same_as_q(c.q, c.out, "out");
    MODDIT_CHECK(Nq == N, "q: sequence length ", Nq, " does not match the token layout (",
                 c.tokens->describe(), ")");
  } else {
    check_same_as_q(c.q, c.out, "out");
    MODDIT_CHECK(c.k.batch() == c.q.batch() && c.k.heads() == c.q.heads() &&
                     c.k.head_dim() == c.q.head_dim(),
                 "k: shape [", c.k.shape[0], ", ", c.k.shape[1], ", ", c.k.shape[2], ", ",
                 c.k.shape[3], "] differs from q's [", c.q.shape[0], ", ", c.q.shape[1], ", ",
                 c.q.shape[2], ", ", c.q.shape[3], "] in more than the sequence length");
    MODDIT_CHECK(c.k.dtype == c.q.dtype, "k: dtype ", to_string(c.k.dtype), " differs from q's ",
                 to_string(c.q.dtype));
    MODDIT_CHECK(c.k.device == c.q.device && c.k.device_index == c.q.device_index,
                 "k: on a different device than q");
    check_same(c.k, c.v, "v", "k");
    MODDIT_CHECK(c.q_begin >= 0 && c.q_begin + Nq <= N, "q: the query chunk [", c.q_begin, ", ",
                 c.q_begin + Nq, ") is not inside the sequence of ", N, " tokens (",
                 c.tokens->describe(), ")");
    MODDIT_CHECK(c.k_begin >= 0 && c.k_begin + Nk <= N, "k: the key chunk [", c.k_begin, ", ",
                 c.k_begin + Nk, ") is not inside the sequence of ", N, " tokens (",
                 c.tokens->describe(), ")");
    MODDIT_CHECK(c.map_counts == nullptr,
                 "attention: no sparsity map on a chunk call (the map compares each score with "
                 "the row's final LSE over every key; record maps on whole-sequence calls)");
    MODDIT_CHECK(c.device_layout == nullptr,
                 "attention: a device layout covers the whole sequence, not a chunk (give a host "
                 "layout from slice_layout)");
    MODDIT_CHECK(c.precision == Precision::Exact,
                 "attention: precision fp8 is not available on a chunk call (K's smoothing mean "
                 "and V's channel scales are per head over the whole sequence; use exact)");
  }
  MODDIT_CHECK(grid.starts.back() == N, "attention: block grid covers ", grid.starts.back(),
               " tokens, the token layout has ", N);
  MODDIT_CHECK(c.block_size == grid.block_size, "attention: block_size ", c.block_size,
               " differs from the grid's ", grid.block_size);
  MODDIT_CHECK(c.q.batch() <= kMaxBatch && c.q.heads() <= kMaxHeads, "q: batch ", c.q.batch(),
               " or heads ", c.q.heads(), " is more than the limit of ", kMaxBatch, " / ", kMaxHeads);
  // Work items (rows) and the optional outputs are products the kernels index
  // with int32 (rows) or allocate by (LSE, map counts).
  checked_product({c.q.batch(), c.q.heads(), grid.num_blocks()}, INT32_MAX,
                  "attention: batch x heads x blocks");
  if (c.lse)
    checked_product({c.q.batch(), c.q.heads(), N}, INT64_MAX / 4, "attention: lse [B, H, N]");
  if (c.map_counts)
    checked_product({c.q.batch(), c.q.heads(), grid.num_video_blocks, grid.num_video_blocks},
                    INT64_MAX / 4, "attention: map counts [B, H, n, n]");
  MODDIT_CHECK(c.map_counts == nullptr || (c.eta > 0.f && std::isfinite(c.eta)),
               "attention: eta must be > 0 to record the sparsity map, got ", c.eta);

  AttentionParams p;
  p.q = c.q.data;
  p.k = c.k.data;
  p.v = c.v.data;
  p.out = c.out.data;
  p.dtype = c.q.dtype;
  copy_strides(c.q, p.q_stride);
  copy_strides(c.k, p.k_stride);
  copy_strides(c.v, p.v_stride);
  copy_strides(c.out, p.o_stride);
  p.batch = static_cast<int>(c.q.batch());
  p.seq_len = static_cast<int>(N);
  p.num_heads = static_cast<int>(c.q.heads());
  p.head_dim = static_cast<int>(c.q.head_dim());
  p.softmax_scale =
      c.softmax_scale > 0.f ? c.softmax_scale : 1.0f / std::sqrt(static_cast<float>(p.head_dim));
  MODDIT_CHECK(c.precision == Precision::Exact || c.precision == Precision::FP8,
               "attention: unknown precision value ", int(c.precision));
  p.precision = c.precision;
  p.block_starts = grid.starts.data();
  p.num_blocks = grid.num_blocks();
  p.max_block_len = grid.block_size;
  p.first_video_block = grid.first_video_block;
  p.num_video_blocks = grid.num_video_blocks;
  p.key_pad_begin = c.tokens->pad_begin();
  p.key_pad_end = c.tokens->pad_end();
  p.q_token_begin = c.chunk ? static_cast<int>(c.q_begin) : 0;
  p.k_token_begin = c.chunk ? static_cast<int>(c.k_begin) : 0;
  p.q_tokens = static_cast<int>(Nq);
  p.k_tokens = static_cast<int>(Nk);
  const auto qbl = blocks_meeting(grid, p.q_token_begin, p.q_token_begin + Nq);
  const auto kbl = blocks_meeting(grid, p.k_token_begin, p.k_token_begin + Nk);
  p.q_block_begin = qbl.first;
  p.num_q_blocks = qbl.second - qbl.first;
  p.k_block_begin = kbl.first;
  p.k_block_end = kbl.second;

  if (c.heads) {
    MODDIT_CHECK(!c.heads->empty(), "attention: empty head subset (skipped heads are not launched)");
    for (size_t i = 0; i < c.heads->size(); ++i) {
      const int32_t h = (*c.heads)[i];
      MODDIT_CHECK(h >= 0 && h < p.num_heads, "attention: head index ", h, " out of range [0, ",
                   p.num_heads, ")");
      MODDIT_CHECK(i == 0 || (*c.heads)[i - 1] < h,
                   "attention: head subset must be ascending without duplicates (at ", h, ")");
    }
    p.heads = c.heads->data();
    p.num_sel_heads = static_cast<int>(c.heads->size());
  } else {
    p.num_sel_heads = p.num_heads;
  }

  MODDIT_CHECK(!(c.layout && c.device_layout), "attention: both a layout and a device layout given");
  if (c.device_layout) {
    // Built on the device by moddit's own kernels: only its shape is checked here.
    const DeviceLayout& l = *c.device_layout;
    MODDIT_CHECK(l.row_ptr && l.col_idx, "attention: device layout without its buffers");
    MODDIT_CHECK(l.batch == p.batch && l.heads == p.num_sel_heads &&
                     l.num_q_blocks == p.num_blocks && l.num_k_blocks == p.num_blocks,
                 "attention: device layout is [batch ", l.batch, ", heads ", l.heads, ", ",
                 l.num_q_blocks, "x", l.num_k_blocks, "], the call needs [batch ", p.batch,
                 ", heads ", p.num_sel_heads, ", ", p.num_blocks, "x", p.num_blocks, "]");
    p.layout_row_ptr = l.row_ptr;
    p.layout_col_idx = l.col_idx;
  }
  if (c.layout) {
    const BlockLayout& l = *c.layout;
    validate_layout_for(l, p);
    p.layout_row_ptr = l.row_ptr.data();
    p.layout_col_idx = l.col_idx.data();
  }
  p.lse = c.lse;
  p.map_counts = c.map_counts;
  p.log_eta = c.map_counts ? std::log(c.eta) : 0.f;
  MODDIT_CHECK(c.map_statistic == MapStatistic::Eq2 || c.map_statistic == MapStatistic::Mass,
               "attention: unknown map_statistic value ", int(c.map_statistic));
  p.map_statistic = c.map_statistic;
  return p;
}

BlockLayout download_layout(Backend& backend, const DeviceLayout& d) {
  BlockLayout l;
  l.batch = d.batch;
  l.heads = d.heads;
  l.num_q_blocks = d.num_q_blocks;
  l.num_k_blocks = d.num_k_blocks;
  l.row_ptr.resize(static_cast<size_t>(d.rows()) + 1);
  backend.copy_to_host(l.row_ptr.data(), d.row_ptr, l.row_ptr.size() * sizeof(int32_t));
  MODDIT_CHECK(l.row_ptr.front() == 0 && l.row_ptr.back() >= 0, "download_layout: bad row offsets");
  l.col_idx.resize(static_cast<size_t>(l.row_ptr.back()));
  if (!l.col_idx.empty())
    backend.copy_to_host(l.col_idx.data(), d.col_idx, l.col_idx.size() * sizeof(int32_t));
  return l;
}

}  // namespace moddit
