#include "cpu/test_support.hpp"

#include "moddit/mask_policy.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>

namespace moddit_test {

using namespace moddit;

namespace {
constexpr float kLsePoison = 777.25f;
constexpr int32_t kCountPoison = -7;
}  // namespace

TestTensor random_tensor(DType dt, Arrangement arr, int64_t B, int64_t N, int64_t H, int64_t D,
                         float scale, std::mt19937& rng) {
  TestTensor t;
  int64_t elems = 0, offset = 0;
  int64_t stride[4] = {0, 0, 0, 1};
  switch (arr) {
    case Arrangement::NHD:
      stride[kH] = D;
      stride[kN] = H * D;
      stride[kB] = N * H * D;
      elems = B * N * H * D;
      break;
    case Arrangement::HND:
      stride[kN] = D;
      stride[kH] = N * D;
      stride[kB] = H * N * D;
      elems = B * N * H * D;
      break;
    case Arrangement::Strided: {
      // [B][N][H + 1][D + 5] plus a batch gap, starting 3 elements in: like a
      // view of q out of a fused qkv buffer.
      const int64_t row = D + 5;
      stride[kH] = row;
      stride[kN] = (H + 1) * row;
      stride[kB] = N * (H + 1) * row + 7;
      offset = 3;
      elems = offset + B * stride[kB];
      break;
    }
  }
  const int64_t es = dtype_size(dt);
  t.storage.resize(static_cast<size_t>(elems * es));
  std::normal_distribution<float> dist(0.f, scale);
  for (int64_t i = 0; i < elems; ++i) {
    const float x = dist(rng);
    if (dt == DType::F32) {
      std::memcpy(t.storage.data() + i * 4, &x, 4);
    } else {
      const uint16_t h = dt == DType::BF16 ? f32_to_bf16(x) : f32_to_f16(x);
      std::memcpy(t.storage.data() + i * 2, &h, 2);
    }
  }
  t.view.data = t.storage.data() + offset * es;
  t.view.dtype = dt;
  t.view.device = Device::CPU;
  const int64_t shape[4] = {B, N, H, D};
  for (int a = 0; a < 4; ++a) {
    t.view.shape[a] = shape[a];
    t.view.stride[a] = stride[a];
  }
  return t;
}

int Problem::num_blocks() const {
  int fv = 0, nv = 0;
  return static_cast<int>(reference_tiling(tokens, block_size, &fv, &nv).size()) - 1;
}
int Problem::num_video_blocks() const {
  int fv = 0, nv = 0;
  reference_tiling(tokens, block_size, &fv, &nv);
  return nv;
}

AttentionCall Instance::call() const {
  AttentionCall c;
  c.q = q.view;
  c.k = k.view;
  c.v = v.view;
  c.out = out.view;
  c.tokens = &problem.tokens;
  c.block_size = problem.block_size;
  c.softmax_scale = problem.softmax_scale;
  c.heads = problem.heads.empty() ? nullptr : &problem.heads;
  c.layout = problem.use_layout ? &problem.layout : nullptr;
  c.lse = problem.want_lse ? const_cast<float*>(lse.data()) : nullptr;
  c.map_counts = problem.want_map ? const_cast<int32_t*>(counts.data()) : nullptr;
  c.eta = problem.eta;
  c.precision = problem.precision;
  c.map_statistic = problem.map_statistic;
  return c;
}

std::unique_ptr<Instance> make_instance(const Problem& p, uint32_t seed) {
  auto inst = std::make_unique<Instance>();
  inst->problem = p;
  std::mt19937 rng(seed);
  const int64_t N = p.N();
  inst->q = random_tensor(p.dtype, p.arrangement, p.B, N, p.H, p.D, p.q_scale, rng);
  inst->k = random_tensor(p.dtype, p.arrangement, p.B, N, p.H, p.D, p.k_scale, rng);
  inst->v = random_tensor(p.dtype, p.arrangement, p.B, N, p.H, p.D, p.v_scale, rng);
  inst->out = random_tensor(p.dtype, p.arrangement, p.B, N, p.H, p.D, 5.f, rng);  // poison
  inst->out_initial = inst->out.storage;
  const int64_t n = p.num_video_blocks();
  inst->lse.assign(static_cast<size_t>(p.B * p.H * N), kLsePoison);
  inst->counts.assign(static_cast<size_t>(p.B * p.H * n * n), kCountPoison);
  return inst;
}

void run_backend(Backend& backend, Instance& inst) {
  inst.out.storage = inst.out_initial;
  std::fill(inst.lse.begin(), inst.lse.end(), kLsePoison);
  std::fill(inst.counts.begin(), inst.counts.end(), kCountPoison);
  backend.attention(inst.call());
}

Tolerance default_tolerance(DType dt) {
  switch (dt) {
    // The reference reads the same (rounded) inputs, so half-precision inputs
    // only add the rounding of the output; the LSE is fp32 in every case.
    case DType::F32: return {1e-5, 2e-6};
    case DType::BF16: return {4e-3, 2e-6};  // output rounding to 8 mantissa bits
    case DType::F16: return {1e-3, 2e-6};   // output rounding to 11 mantissa bits
  }
  return {0, 0};
}

double expect_matches_reference(const Instance& inst, const Reference& ref, Tolerance tol) {
  const Problem& p = inst.problem;
  const TensorView& o = inst.out.view;
  const int64_t B = p.B, N = p.N(), H = p.H, D = p.D;
  const int64_t es = dtype_size(p.dtype);

  // out, over the selected heads, and which bytes the call may write.
  std::vector<uint8_t> writable(inst.out.storage.size(), 0);
  const uint8_t* base = static_cast<const uint8_t*>(o.data);
  const ptrdiff_t view_offset = base - inst.out.storage.data();
  double err2 = 0, ref2 = 0;
  std::vector<float> row(static_cast<size_t>(D));
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < N; ++t)
      for (int64_t h = 0; h < H; ++h) {
        if (!ref.head_selected[static_cast<size_t>(h)]) continue;
        const size_t at = static_cast<size_t>(view_offset + o.offset(b, t, h) * es);
        std::fill(writable.begin() + static_cast<ptrdiff_t>(at),
                  writable.begin() + static_cast<ptrdiff_t>(at + D * es), 1);
        load_row_f32(o, b, t, h, row.data());
        for (int64_t d = 0; d < D; ++d) {
          const double r = ref.out_at(b, t, h, d), x = row[static_cast<size_t>(d)];
          err2 += (x - r) * (x - r);
          ref2 += r * r;
        }
      }
  const double rel = std::sqrt(err2 / std::max(ref2, 1e-300));
  if (std::getenv("MODDIT_TEST_VERBOSE")) std::printf("  out rel error %.3g\n", rel);
  EXPECT_LT(rel, tol.out_rel) << "relative out error";
  size_t untouched_bad = 0;
  for (size_t i = 0; i < writable.size(); ++i)
    if (!writable[i] && inst.out.storage[i] != inst.out_initial[i]) ++untouched_bad;
  EXPECT_EQ(untouched_bad, 0u) << "bytes of out outside the selected heads were written";

  // lse
  if (p.want_lse) {
    int bad = 0;
    double worst_lse = 0;
    for (int64_t b = 0; b < B; ++b)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t t = 0; t < N; ++t) {
          const float x = inst.lse[static_cast<size_t>((b * H + h) * N + t)];
          if (!ref.head_selected[static_cast<size_t>(h)]) {
            if (x != kLsePoison && bad++ < 3) ADD_FAILURE() << "lse of unselected head " << h << " written";
            continue;
          }
          const double r = ref.lse_at(b, h, t);
          if (std::isinf(r)) {
            if (!(std::isinf(x) && x < 0) && bad++ < 3)
              ADD_FAILURE() << "lse of empty row " << t << " is " << x << ", expected -inf";
            continue;
          }
          worst_lse = std::max(worst_lse, std::fabs(x - r) / (1 + std::fabs(r)));
          if (!(std::fabs(x - r) <= tol.lse_rel * (1 + std::fabs(r))) && bad++ < 3)
            ADD_FAILURE() << "lse[b" << b << " h" << h << " t" << t << "] = " << x
                          << ", reference " << r;
        }
    EXPECT_EQ(bad, 0) << "lse mismatches";
    if (std::getenv("MODDIT_TEST_VERBOSE")) std::printf("  lse rel error %.3g\n", worst_lse);
  }

  // map counts: exact up to the pairs in the threshold's error band.
  if (p.want_map) {
    int bad = 0;
    int64_t band_total = 0, diff_total = 0;
    for (size_t i = 0; i < ref.counts.size(); ++i) {
      const int64_t got = inst.counts[i];
      int64_t want = ref.counts[i], band = ref.band[i];
      if (want >= 0 && p.map_statistic == MapStatistic::Mass) {
        // The value is keys * (rows - mass): off by the keys times the mass's
        // error (the pairs' bands, and the kernel's fp32 sum), plus the rounding.
        want = map_mass_value(ref.mass[i], ref.rows[i], ref.keys[i]);
        band = 1 + static_cast<int64_t>(double(ref.keys[i]) *
                                        (2.0 * ref.mass_error[i] + 1e-5 * ref.mass[i] +
                                         1e-6 * double(ref.rows[i])));
      }
      if (want >= 0) {
        band_total += band;
        diff_total += std::llabs(got - want);
      }
      const bool ok = want < 0 ? got == kCountPoison : std::llabs(got - want) <= band;
      if (!ok && bad++ < 3)
        ADD_FAILURE() << "map " << to_string(p.map_statistic) << " [" << i << "] = " << got
                      << ", reference " << want << " (band " << band << (want < 0 ? ", must be untouched" : "") << ")";
    }
    EXPECT_EQ(bad, 0) << "map count mismatches";
    if (std::getenv("MODDIT_TEST_VERBOSE"))
      std::printf("  map counts: %lld differ, band %lld\n", static_cast<long long>(diff_total),
                  static_cast<long long>(band_total));
  }
  return rel;
}

BlockLayout random_layout(int batch, int heads, int num_blocks, double density, bool keep_diagonal,
                          std::mt19937& rng) {
  BlockMask m(batch, heads, num_blocks, num_blocks);
  std::uniform_real_distribution<double> u(0, 1);
  for (int b = 0; b < batch; ++b)
    for (int h = 0; h < heads; ++h)
      for (int qb = 0; qb < num_blocks; ++qb)
        for (int kb = 0; kb < num_blocks; ++kb)
          m.at(b, h, qb, kb) = (u(rng) < density || (keep_diagonal && qb == kb)) ? 1 : 0;
  return to_layout(m);
}

TokenLayout video_only(int64_t frames, int64_t height, int64_t width) {
  TokenLayout t;
  t.frames = frames;
  t.height = height;
  t.width = width;
  return t;
}

TokenLayout with_text(int64_t frames, int64_t height, int64_t width, int64_t text,
                      int64_t text_valid, TextPosition where) {
  TokenLayout t = video_only(frames, height, width);
  t.text_tokens = text;
  t.text_valid = text_valid;
  t.text_position = where;
  return t;
}

}  // namespace moddit_test
