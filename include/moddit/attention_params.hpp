#pragma once
// The plain parameter struct every attention kernel takes (CPU reference and
// CUDA alike). No framework types: pointers, sizes, strides. Pointers live on
// the backend's device. Built and validated by prepare_params() (backend.hpp).
#include <cstdint>
#include <string>

#include "moddit/tensor.hpp"

namespace moddit {

// How a call computes its two products. Exact: in the tensors' dtype with fp32
// accumulation (bf16/f16 operands on the GPU, fp32 on the CPU). FP8: Q, K, V and
// P quantized to e4m3 by the rules of include/moddit/fp8.hpp, fp32
// accumulation: on Hopper (sm_90a, 128-token blocks) the FP8 tensor cores, on
// the CPU backend an emulation of the same quantization (for evaluation and
// tests); other GPUs refuse it.
enum class Precision : int32_t { Exact = 0, FP8 = 1 };
const char* to_string(Precision);
Precision precision_from_string(const std::string&);  // "exact" | "fp8"; throws otherwise

// What the map pass writes per (query block i, key block j) into the int32 map,
// always in the units of Eq. 2's count (S = value / (len_i len_j), higher =
// sparser), so that the fusion, the fit, the prediction and the masks are one
// code path for both. Eq2 (the paper's): the number of pairs with P < eta.
// Mass: len_i len_j - len_j * (the block's probability mass summed over its
// rows), rounded (map_mass_value), i.e. S = 1 - the block's mean share of its
// rows' mass. It sees a block whose mass sits on one sink token, which Eq. 2's
// count of near-zero probabilities cannot tell from an empty block.
enum class MapStatistic : int32_t { Eq2 = 0, Mass = 1 };
const char* to_string(MapStatistic);
MapStatistic map_statistic_from_string(const std::string&);  // "eq2" | "mass"; throws otherwise

struct AttentionParams {
  // Q, K, V, O: logical [B, N, H, D], element strides per axis (D stride is 1).
  const void* q = nullptr;
  const void* k = nullptr;
  const void* v = nullptr;
  void* out = nullptr;  // same dtype as q
  DType dtype = DType::F32;
  int64_t q_stride[3] = {0, 0, 0};  // b, n, h
  int64_t k_stride[3] = {0, 0, 0};
  int64_t v_stride[3] = {0, 0, 0};
  int64_t o_stride[3] = {0, 0, 0};
  int batch = 0;
  int seq_len = 0;
  int num_heads = 0;
  int head_dim = 0;
  float softmax_scale = 0.f;  // usually 1/sqrt(D)
  Precision precision = Precision::Exact;

  // Block tiling: block b covers tokens [block_starts[b], block_starts[b+1]).
  const int32_t* block_starts = nullptr;
  int num_blocks = 0;
  int max_block_len = 0;  // 64 or 128
  int first_video_block = 0;
  int num_video_blocks = 0;
  // Keys in [key_pad_begin, key_pad_end) are text padding: excluded everywhere.
  int64_t key_pad_begin = 0;
  int64_t key_pad_end = 0;

  // The part of the sequence the call covers (ring attention runs one query
  // chunk against one key chunk). q, out and lse hold the query tokens
  // [q_token_begin, q_token_begin + q_tokens), k and v the key tokens
  // [k_token_begin, k_token_begin + k_tokens); pointers are at those first
  // tokens and lse is [B, H, q_tokens]. Work items are the query blocks
  // q_block_begin .. q_block_begin + num_q_blocks - 1 (layout row
  // (b * num_sel_heads + s) * num_q_blocks + qb - q_block_begin); a dense call
  // visits key blocks [k_block_begin, k_block_end). Every block's token range is
  // clipped to the call's query or key range. A whole-sequence call: 0, seq_len,
  // 0, seq_len, 0, num_blocks, 0, num_blocks (prepare_params).
  int q_token_begin = 0, q_tokens = 0;
  int k_token_begin = 0, k_tokens = 0;
  int q_block_begin = 0, num_q_blocks = 0;
  int k_block_begin = 0, k_block_end = 0;

  // Head subset (head fusion): the launch covers heads[0..num_sel_heads). Null
  // means all heads in order. Heads not covered are not touched.
  const int32_t* heads = nullptr;
  int num_sel_heads = 0;

  // Block-sparse layout over the selected heads (BlockLayout CSR): row
  // ((b * num_sel_heads + s) * num_q_blocks + qb - q_block_begin). Null row_ptr = dense.
  const int32_t* layout_row_ptr = nullptr;
  const int32_t* layout_col_idx = nullptr;

  // Optional outputs.
  float* lse = nullptr;  // [B, H, q_tokens] natural-log sum-exp of the scaled scores; -inf for an empty row
  // Exact sparsity-map counts on computed video x video blocks: [B, H, n, n],
  // count of real (query, key) pairs with P < eta, P normalised over the computed
  // keys of the row. Blocks not computed are not written (callers fill -1).
  int32_t* map_counts = nullptr;
  float log_eta = 0.f;  // ln(eta), eta > 0 (Eq2 only)
  MapStatistic map_statistic = MapStatistic::Eq2;  // what map_counts holds
};

}  // namespace moddit
