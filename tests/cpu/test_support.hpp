#pragma once
// Test fixtures for attention backends: random tensors in several memory
// arrangements, a problem description, and the comparison of a backend's
// outputs against the naive reference (including "untouched" checks on
// everything the call must not write).
#include <cstdint>
#include <memory>
#include <random>
#include <vector>

#include "cpu/attention_reference.hpp"
#include "moddit/backend.hpp"
#include "moddit/block_layout.hpp"

namespace moddit_test {

// NHD, HND, or a strided view into a larger buffer (gaps between rows, spare
// heads, an offset start) whose gaps must never be written.
enum class Arrangement { NHD, HND, Strided };

struct TestTensor {
  std::vector<uint8_t> storage;
  moddit::TensorView view;
};

// Every element of the storage (gaps included) gets a fresh N(0, scale^2) value.
TestTensor random_tensor(moddit::DType dt, Arrangement arr, int64_t B, int64_t N, int64_t H,
                         int64_t D, float scale, std::mt19937& rng);

struct Problem {
  moddit::TokenLayout tokens;
  int64_t B = 1, H = 2, D = 64;
  int block_size = 64;
  moddit::DType dtype = moddit::DType::F32;
  Arrangement arrangement = Arrangement::NHD;
  std::vector<int32_t> heads;  // empty: all heads
  bool use_layout = false;
  moddit::BlockLayout layout;
  float eta = 1e-3f;
  float softmax_scale = 0.f;
  bool want_lse = true, want_map = true;
  float q_scale = 1.f, k_scale = 1.f, v_scale = 1.f;
  moddit::Precision precision = moddit::Precision::Exact;
  moddit::MapStatistic map_statistic = moddit::MapStatistic::Eq2;

  int64_t N() const { return tokens.total_tokens(); }
  int num_blocks() const;
  int num_video_blocks() const;
  int num_selected_heads() const { return heads.empty() ? int(H) : int(heads.size()); }
};

// Inputs and output buffers of one call; `out`, `lse` and `counts` start filled
// with poison so that writes outside the call's scope are detected.
struct Instance {
  Problem problem;
  TestTensor q, k, v, out;
  std::vector<uint8_t> out_initial;
  std::vector<float> lse;
  std::vector<int32_t> counts;

  moddit::AttentionCall call() const;  // points into this instance
};
std::unique_ptr<Instance> make_instance(const Problem& p, uint32_t seed);

// Runs the backend on the instance (fresh poisoned outputs each time).
void run_backend(moddit::Backend& backend, Instance& inst);

struct Tolerance {
  double out_rel;  // ||out - ref|| / ||ref|| over the selected heads
  double lse_rel;  // |lse - ref| <= lse_rel * (1 + |ref|)
};
Tolerance default_tolerance(moddit::DType dt);

// Compares everything (out, lse, counts, untouched bytes) against the
// reference; records gtest failures. Returns the measured out error.
double expect_matches_reference(const Instance& inst, const Reference& ref, Tolerance tol);

// Random block layout over the selected heads; `keep_diagonal` keeps block
// (qb, qb) of every row.
moddit::BlockLayout random_layout(int batch, int heads, int num_blocks, double density,
                                  bool keep_diagonal, std::mt19937& rng);

moddit::TokenLayout video_only(int64_t frames, int64_t height, int64_t width);
moddit::TokenLayout with_text(int64_t frames, int64_t height, int64_t width, int64_t text,
                              int64_t text_valid, moddit::TextPosition where);

}  // namespace moddit_test
