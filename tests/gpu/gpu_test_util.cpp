#include "gpu_test_util.hpp"

#include <algorithm>
#include <limits>

#include "expect_error.hpp"

namespace moddit::gputest {

namespace {

// The fields of a case's call that do not depend on the backend.
AttentionCall case_call(const Case& c, const CaseInputs& in, Precision precision) {
  AttentionCall call;
  call.tokens = &c.tokens;
  call.block_size = c.block_size;
  call.heads = c.heads.empty() ? nullptr : &c.heads;
  call.layout = in.layout_or_null();
  call.eta = c.eta;
  call.map_statistic = c.map_statistic;
  call.precision = precision;
  return call;
}

// An f32 host view of the case's shape; make_view takes a mutable pointer, and
// the calls here only read q, k and v.
TensorView host_view(const Case& c, const float* data) {
  return make_view(const_cast<float*>(data), DType::F32, c.layout, c.B, c.tokens.total_tokens(), c.H, c.D);
}

size_t lse_size(const Case& c) { return size_t(c.B) * c.H * c.tokens.total_tokens(); }
size_t map_size(const Case& c) {
  const size_t n = size_t(make_block_grid(c.tokens, c.block_size).num_video_blocks);
  return size_t(c.B) * c.H * n * n;
}

}  // namespace

void expect_refused_before_launch(Backend& gpu, const AttentionCall& call, const std::string& what) {
  const int64_t before = gpu.launches();
  moddit::test::expect_error([&] { gpu.attention(call); }, what);
  EXPECT_EQ(gpu.launches(), before);
}

CaseInputs make_inputs(const Case& c) {
  std::mt19937 rng(c.seed);
  const int64_t numel = int64_t(c.B) * c.tokens.total_tokens() * c.H * c.D;
  const int nb = make_block_grid(c.tokens, c.block_size).num_blocks();
  const int S = c.heads.empty() ? c.H : int(c.heads.size());
  CaseInputs in;
  in.q = random_tensor(rng, numel, c.dtype, c.q_scale);
  in.k = random_tensor(rng, numel, c.dtype, c.q_scale);
  in.v = random_tensor(rng, numel, c.dtype, 1.0f);
  // Poison the output so that unwritten (and uncovered) elements show.
  in.poison = random_tensor(rng, numel, c.dtype, 3.0f);
  if (c.mask == Case::Mask::Random) in.layout = random_layout(rng, c.B, S, nb, c.density);
  if (c.mask == Case::Mask::Diagonal) in.layout = random_layout(rng, c.B, S, nb, 0.0);
  if (c.mask == Case::Mask::FullLayout) in.layout = full_layout(c.B, S, nb);
  in.dense = c.mask == Case::Mask::Dense;
  return in;
}

GpuRun run_on_gpu(Backend& gpu, const Case& c, const CaseInputs& in, Precision precision) {
  const int64_t N = c.tokens.total_tokens();
  const size_t lse_n = lse_size(c), map_n = map_size(c);
  auto dq = upload(gpu, in.q.bits), dk = upload(gpu, in.k.bits), dv = upload(gpu, in.v.bits),
       dout = upload(gpu, in.poison.bits);
  auto dlse = gpu.allocate(lse_n * sizeof(float));
  auto dmap = gpu.allocate(std::max<size_t>(map_n, 1) * sizeof(int32_t));
  gpu.fill_i32(static_cast<int32_t*>(dmap.get()), -1, map_n);
  AttentionCall gc = case_call(c, in, precision);
  gc.q = make_view(dq.get(), c.dtype, c.layout, c.B, N, c.H, c.D, Device::CUDA);
  gc.k = make_view(dk.get(), c.dtype, c.layout, c.B, N, c.H, c.D, Device::CUDA);
  gc.v = make_view(dv.get(), c.dtype, c.layout, c.B, N, c.H, c.D, Device::CUDA);
  gc.out = make_view(dout.get(), c.dtype, c.layout, c.B, N, c.H, c.D, Device::CUDA);
  gc.lse = static_cast<float*>(dlse.get());
  gc.map_counts = c.with_map ? static_cast<int32_t*>(dmap.get()) : nullptr;
  gpu.attention(gc);
  gpu.synchronize();
  GpuRun r;
  r.out = download<uint16_t>(gpu, dout, in.poison.bits.size());
  r.lse = download<float>(gpu, dlse, lse_n);
  r.map = download<int32_t>(gpu, dmap, map_n);
  return r;
}

CpuRun run_on_cpu(Backend& cpu, const Case& c, const CaseInputs& in, Precision precision) {
  CpuRun r;
  r.out.assign(in.q.f32.size(), 0.f);
  r.lse.assign(lse_size(c), 0.f);
  r.map.assign(map_size(c), -1);
  AttentionCall cc = case_call(c, in, precision);
  cc.q = host_view(c, in.q.f32.data());
  cc.k = host_view(c, in.k.f32.data());
  cc.v = host_view(c, in.v.f32.data());
  cc.out = host_view(c, r.out.data());
  cc.lse = r.lse.data();
  cc.map_counts = c.with_map ? r.map.data() : nullptr;
  cpu.attention(cc);
  return r;
}

std::vector<char> covered_heads(const Case& c) {
  std::vector<char> covered(c.H, c.heads.empty() ? 1 : 0);
  for (int32_t h : c.heads) covered[h] = 1;
  return covered;
}

Outcome run_case(Backend& gpu, Backend& cpu, const Case& c) {
  const TokenLayout& tk = c.tokens;
  const int64_t N = tk.total_tokens();
  const int B = c.B, H = c.H, D = c.D;
  const BlockGrid grid = make_block_grid(tk, c.block_size);
  const int n = grid.num_video_blocks;
  const int S = c.heads.empty() ? H : int(c.heads.size());

  const CaseInputs in = make_inputs(c);
  const GpuRun g = run_on_gpu(gpu, c, in, Precision::Exact);
  // CPU reference on the same values in f32.
  const CpuRun ref = run_on_cpu(cpu, c, in, Precision::Exact);

  Outcome r;
  const std::vector<char> covered = covered_heads(c);
  const TensorView vq = host_view(c, in.q.f32.data());  // for offsets (same strides for every tensor)
  double err2 = 0, ref2 = 0;
  for (int b = 0; b < B; ++b)
    for (int64_t t = 0; t < N; ++t)
      for (int h = 0; h < H; ++h) {
        const int64_t off = vq.offset(b, t, h);
        for (int d = 0; d < D; ++d) {
          const float gv = from_bits(g.out[off + d], c.dtype);
          if (!std::isfinite(gv)) ++r.nonfinite;
          if (!covered[h]) {
            if (g.out[off + d] != in.poison.bits[off + d]) ++r.untouched_wrong;
            continue;
          }
          const double e = double(gv) - ref.out[off + d];
          err2 += e * e;
          ref2 += double(ref.out[off + d]) * ref.out[off + d];
        }
        if (covered[h]) {
          const size_t li = (size_t(b) * H + h) * N + t;
          const float gl = g.lse[li], cl = ref.lse[li];
          if (std::isinf(cl) || std::isinf(gl)) {
            if (gl != cl) r.lse_max_abs = std::numeric_limits<double>::infinity();
          } else {
            r.lse_max_abs = std::max(r.lse_max_abs, double(std::fabs(gl - cl)));
          }
        }
      }
  r.out_rel_l2 = rel_l2(err2, ref2);

  if (c.with_map && n > 0) {
    const double log_eta = std::log(double(c.eta));
    const double scale = 1.0 / std::sqrt(double(D));
    const int fvb = grid.first_video_block;
    for (int b = 0; b < B; ++b)
      for (int s = 0; s < S; ++s) {
        const int h = c.heads.empty() ? s : c.heads[s];
        for (int qi = 0; qi < n; ++qi)
          for (int kj = 0; kj < n; ++kj) {
            const size_t mi = ((size_t(b) * H + h) * n + qi) * n + kj;
            const int32_t gm = g.map[mi], cm = ref.map[mi];
            if ((gm < 0) != (cm < 0)) {
              ++r.map_written_wrong;
              continue;
            }
            if (cm < 0) continue;
            if (c.map_statistic == MapStatistic::Mass) {
              // value = keys (rows - mass): the GPU's mass may differ from the CPU's
              // by its relative error (P = exp(s - lse) moves with the LSE
              // difference, plus fp32 sums and expf), scaled by the keys, plus the
              // rounding of each side.
              const int qb = fvb + qi, kb = fvb + kj;
              const int64_t rows = grid.starts[qb + 1] - grid.starts[qb],
                            keys = grid.starts[kb + 1] - grid.starts[kb];
              const double mass = double(rows) - double(cm) / double(keys);
              const double scale_of = double(keys) * std::max(mass, 1e-6);
              const double diff = std::fabs(double(gm) - double(cm));
              r.map_mass_max_rel = std::max(r.map_mass_max_rel, std::max(0.0, diff - 1.0) / scale_of);
              if (diff > 2.0 + scale_of * (2.0 * r.lse_max_abs + 1e-3)) ++r.map_mismatch;
              continue;
            }
            int64_t straddle = 0;
            const int qb = fvb + qi, kb = fvb + kj;
            for (int64_t t = grid.starts[qb]; t < grid.starts[qb + 1]; ++t) {
              const double thr = ref.lse[(size_t(b) * H + h) * N + t] + log_eta;
              const float* qr = &in.q.f32[vq.offset(b, t, h)];
              for (int64_t u = grid.starts[kb]; u < grid.starts[kb + 1]; ++u) {
                const float* kr = &in.k.f32[vq.offset(b, u, h)];
                double dot = 0;
                for (int d = 0; d < D; ++d) dot += double(qr[d]) * kr[d];
                const double sc = dot * scale;
                if (std::fabs(sc - thr) < r.lse_max_abs + 1e-4 * (1.0 + std::fabs(sc))) ++straddle;
              }
            }
            r.map_straddle += straddle;
            r.map_mismatch += std::max<int64_t>(0, std::abs(gm - cm) - straddle);
          }
      }
  }
  return r;
}

}  // namespace moddit::gputest
