#pragma once
// Helpers for the GPU tests: token layouts, the GPU + CPU fixture, random inputs
// in bf16/f16 (and the same values in f32 for the CPU reference), device buffers
// through the backend, random block layouts, one case's run on either backend,
// the comparison of a CUDA run with the CPU reference, and the error metric.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "moddit/backend.hpp"
#include "moddit/block_layout.hpp"
#include "moddit/tensor.hpp"
#include "moddit/token_layout.hpp"

namespace moddit::gputest {

#define MODDIT_REQUIRE_GPU()                                            \
  do {                                                                  \
    if (!::moddit::cuda_available()) GTEST_SKIP() << "no CUDA device"; \
  } while (0)

// The CUDA backend of the tests: device 0 with the environment's options, as
// the CLI makes it.
inline std::shared_ptr<Backend> cuda_backend() { return make_cuda_backend(0, cuda_options_from_environment()); }

// The same with the map pass counting by compare on every row (the path that
// otherwise only rows with tiny thresholds take).
inline std::shared_ptr<Backend> cuda_backend_counting_by_compare() {
  CudaOptions o = cuda_options_from_environment();
  o.map_count_by_compare = true;
  return make_cuda_backend(0, o);
}

// The GPU tests' fixture: the CUDA backend and the CPU reference; skips
// without a device.
struct GpuCpuTest : ::testing::Test {
  std::shared_ptr<Backend> gpu, cpu;
  void SetUp() override {
    MODDIT_REQUIRE_GPU();
    gpu = cuda_backend();
    cpu = make_cpu_backend(0);
  }
};

inline TokenLayout video(int64_t frames, int64_t h, int64_t w) {
  TokenLayout t;
  t.frames = frames;
  t.height = h;
  t.width = w;
  return t;
}
inline TokenLayout with_text(TokenLayout t, TextPosition pos, int64_t tokens, int64_t valid) {
  t.text_position = pos;
  t.text_tokens = tokens;
  t.text_valid = valid;
  return t;
}

template <typename T>
std::shared_ptr<void> upload(Backend& be, const std::vector<T>& host) {
  auto d = be.allocate(host.size() * sizeof(T));
  be.copy_from_host(d.get(), host.data(), host.size() * sizeof(T));
  return d;
}

template <typename T>
std::vector<T> download(Backend& be, const std::shared_ptr<void>& d, size_t n) {
  std::vector<T> h(n);
  be.copy_to_host(h.data(), d.get(), n * sizeof(T));
  return h;
}

// sqrt(err2 / ref2), the relative L2 error of every comparison here; a zero
// reference counts any error as infinite, so no degenerate case passes by it.
inline double rel_l2(double err2, double ref2) {
  if (ref2 > 0) return std::sqrt(err2 / ref2);
  return err2 > 0 ? std::numeric_limits<double>::infinity() : 0.0;
}
inline double rel_l2(const std::vector<float>& a, const std::vector<float>& ref) {
  double err2 = 0, ref2 = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    err2 += (double(a[i]) - ref[i]) * (double(a[i]) - ref[i]);
    ref2 += double(ref[i]) * ref[i];
  }
  return rel_l2(err2, ref2);
}

// `call` is refused by moddit::Error naming `what`, before any launch.
void expect_refused_before_launch(Backend& gpu, const AttentionCall& call, const std::string& what);

inline uint16_t to_bits(float x, DType t) { return t == DType::BF16 ? f32_to_bf16(x) : f32_to_f16(x); }
inline float from_bits(uint16_t b, DType t) { return t == DType::BF16 ? bf16_to_f32(b) : f16_to_f32(b); }

// One tensor [B, N, H, D] in `layout`: the 16-bit values (for the GPU) and the same
// values as f32 (for the CPU reference), both contiguous in that layout.
struct HostPair {
  std::vector<uint16_t> bits;
  std::vector<float> f32;
};

inline HostPair random_tensor(std::mt19937& rng, int64_t n, DType t, float scale) {
  std::normal_distribution<float> nd(0.f, scale);
  HostPair h;
  h.bits.resize(n);
  h.f32.resize(n);
  for (int64_t i = 0; i < n; ++i) {
    h.bits[i] = to_bits(nd(rng), t);
    h.f32[i] = from_bits(h.bits[i], t);
  }
  return h;
}

// A random layout: each (b, head, qb) keeps each key block with probability
// `density`, and always its diagonal block.
inline BlockLayout random_layout(std::mt19937& rng, int B, int H, int nb, double density) {
  BlockMask m(B, H, nb, nb, false);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  for (int b = 0; b < B; ++b)
    for (int h = 0; h < H; ++h)
      for (int q = 0; q < nb; ++q)
        for (int k = 0; k < nb; ++k) m.at(b, h, q, k) = (k == q || u(rng) < density) ? 1 : 0;
  return to_layout(m);
}

struct Case {
  TokenLayout tokens;
  int B = 1, H = 2, D = 128;
  DType dtype = DType::BF16;
  Layout layout = Layout::NHD;
  int block_size = 128;
  std::vector<int32_t> heads;  // empty = all
  enum class Mask { Dense, Random, Diagonal, FullLayout } mask = Mask::Dense;
  double density = 0.5;
  bool with_map = true;
  float q_scale = 1.5f;  // score spread: enough that some P < eta and some not
  float eta = 1e-4f;
  MapStatistic map_statistic = MapStatistic::Eq2;
  uint32_t seed = 1;
};

struct Outcome {
  double out_rel_l2 = 0;       // over the computed heads
  double lse_max_abs = 0;      // over finite rows
  int64_t map_mismatch = 0;    // |gpu - cpu| summed over blocks
  int64_t map_straddle = 0;    // pairs whose score is within the fp32/bf16 noise of eta
  // MapStatistic::Mass: map_mismatch counts the blocks whose values differ by more
  // than their mass's tolerance (relative: the LSE difference and fp32 sums);
  // the largest difference over all blocks relative to the block's keys x mass.
  double map_mass_max_rel = 0;
  int64_t map_written_wrong = 0;  // blocks written by one backend and not the other
  int64_t untouched_wrong = 0;    // elements of uncovered heads that changed
  int64_t nonfinite = 0;
};

// A case's random inputs, drawn from its seed in one order (q, k, v, the poisoned
// output, then the layout), so that every test of a seed sees the same values.
struct CaseInputs {
  HostPair q, k, v, poison;
  BlockLayout layout;
  bool dense = true;  // Case::Mask::Dense: no layout
  const BlockLayout* layout_or_null() const { return dense ? nullptr : &layout; }
};
CaseInputs make_inputs(const Case& c);

// One case's call on one backend: out in the case's layout (the GPU's 16-bit
// values, the CPU's f32), lse [B, H, N], map [B, H, n, n] (-1: not written).
struct GpuRun {
  std::vector<uint16_t> out;
  std::vector<float> lse;
  std::vector<int32_t> map;
};
struct CpuRun {
  std::vector<float> out, lse;
  std::vector<int32_t> map;
};
GpuRun run_on_gpu(Backend& gpu, const Case& c, const CaseInputs& in, Precision precision);
CpuRun run_on_cpu(Backend& cpu, const Case& c, const CaseInputs& in, Precision precision);

// The heads a case computes: 1 for each of c.heads (all when empty).
std::vector<char> covered_heads(const Case& c);

Outcome run_case(Backend& gpu, Backend& cpu, const Case& c);

// What cuda::schedule_rows must give (the one row schedule, moddit_step.hpp),
// written plainly: rows in groups of `group` consecutive rows, groups by total
// cost largest first, rows by cost within a group largest first, ties in index
// order. group = all rows: plain longest-first.
inline std::vector<int32_t> reference_schedule(const std::vector<int32_t>& cost, int group) {
  const int64_t rows = int64_t(cost.size()), groups = rows / group;
  std::vector<int64_t> gcost(size_t(groups), 0);
  for (int64_t r = 0; r < rows; ++r) gcost[size_t(r / group)] += cost[size_t(r)];
  std::vector<int32_t> gorder(static_cast<size_t>(groups));
  for (int64_t g = 0; g < groups; ++g) gorder[size_t(g)] = int32_t(g);
  std::stable_sort(gorder.begin(), gorder.end(), [&](int32_t a, int32_t b) { return gcost[a] > gcost[b]; });
  std::vector<int32_t> want;
  for (int32_t g : gorder) {
    const size_t first = want.size();
    for (int q = 0; q < group; ++q) want.push_back(int32_t(int64_t(g) * group + q));
    std::stable_sort(want.begin() + first, want.end(), [&](int32_t a, int32_t b) { return cost[a] > cost[b]; });
  }
  return want;
}

}  // namespace moddit::gputest
