#include "gpu_test_util.hpp"

#include <algorithm>
#include <limits>

namespace moddit::gputest {

namespace {

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

}  // namespace

Outcome run_case(Backend& gpu, Backend& cpu, const Case& c) {
  std::mt19937 rng(c.seed);
  const TokenLayout& tk = c.tokens;
  const int64_t N = tk.total_tokens();
  const int B = c.B, H = c.H, D = c.D;
  const int64_t numel = int64_t(B) * N * H * D;
  const BlockGrid grid = make_block_grid(tk, c.block_size);
  const int nb = grid.num_blocks(), n = grid.num_video_blocks;
  const int S = c.heads.empty() ? H : int(c.heads.size());

  HostPair q = random_tensor(rng, numel, c.dtype, c.q_scale);
  HostPair k = random_tensor(rng, numel, c.dtype, c.q_scale);
  HostPair v = random_tensor(rng, numel, c.dtype, 1.0f);
  // Poison the output so that unwritten (and uncovered) elements show.
  HostPair o0 = random_tensor(rng, numel, c.dtype, 3.0f);

  BlockLayout layout;
  const BlockLayout* lp = nullptr;
  if (c.mask == Case::Mask::Random) layout = random_layout(rng, B, S, nb, c.density);
  if (c.mask == Case::Mask::Diagonal) layout = random_layout(rng, B, S, nb, 0.0);
  if (c.mask == Case::Mask::FullLayout) layout = full_layout(B, S, nb);
  if (c.mask != Case::Mask::Dense) lp = &layout;

  // GPU run.
  auto dq = upload(gpu, q.bits), dk = upload(gpu, k.bits), dv = upload(gpu, v.bits),
       dout = upload(gpu, o0.bits);
  const size_t lse_n = size_t(B) * H * N, map_n = size_t(B) * H * n * n;
  auto dlse = gpu.allocate(lse_n * sizeof(float));
  auto dmap = gpu.allocate(std::max<size_t>(map_n, 1) * sizeof(int32_t));
  gpu.fill_i32(static_cast<int32_t*>(dmap.get()), -1, map_n);
  AttentionCall gc;
  gc.q = make_view(dq.get(), c.dtype, c.layout, B, N, H, D, Device::CUDA);
  gc.k = make_view(dk.get(), c.dtype, c.layout, B, N, H, D, Device::CUDA);
  gc.v = make_view(dv.get(), c.dtype, c.layout, B, N, H, D, Device::CUDA);
  gc.out = make_view(dout.get(), c.dtype, c.layout, B, N, H, D, Device::CUDA);
  gc.tokens = &tk;
  gc.block_size = c.block_size;
  gc.heads = c.heads.empty() ? nullptr : &c.heads;
  gc.layout = lp;
  gc.lse = static_cast<float*>(dlse.get());
  gc.map_counts = c.with_map ? static_cast<int32_t*>(dmap.get()) : nullptr;
  gc.eta = c.eta;
  gc.map_statistic = c.map_statistic;
  gpu.attention(gc);
  gpu.synchronize();
  const auto g_out = download<uint16_t>(gpu, dout, numel);
  const auto g_lse = download<float>(gpu, dlse, lse_n);
  const auto g_map = download<int32_t>(gpu, dmap, map_n);

  // CPU reference on the same values in f32.
  std::vector<float> c_out(numel, 0.f), c_lse(lse_n, 0.f);
  std::vector<int32_t> c_map(map_n, -1);
  AttentionCall cc = gc;
  cc.q = make_view(q.f32.data(), DType::F32, c.layout, B, N, H, D);
  cc.k = make_view(k.f32.data(), DType::F32, c.layout, B, N, H, D);
  cc.v = make_view(v.f32.data(), DType::F32, c.layout, B, N, H, D);
  cc.out = make_view(c_out.data(), DType::F32, c.layout, B, N, H, D);
  cc.lse = c_lse.data();
  cc.map_counts = c.with_map ? c_map.data() : nullptr;
  cpu.attention(cc);

  Outcome r;
  std::vector<char> covered(H, c.heads.empty() ? 1 : 0);
  for (int32_t h : c.heads) covered[h] = 1;
  const TensorView vq = cc.q;  // for offsets (same strides for every tensor)
  double err2 = 0, ref2 = 0;
  for (int b = 0; b < B; ++b)
    for (int64_t t = 0; t < N; ++t)
      for (int h = 0; h < H; ++h) {
        const int64_t off = vq.offset(b, t, h);
        for (int d = 0; d < D; ++d) {
          const float gv = from_bits(g_out[off + d], c.dtype);
          if (!std::isfinite(gv)) ++r.nonfinite;
          if (!covered[h]) {
            if (g_out[off + d] != o0.bits[off + d]) ++r.untouched_wrong;
            continue;
          }
          const double e = double(gv) - c_out[off + d];
          err2 += e * e;
          ref2 += double(c_out[off + d]) * c_out[off + d];
        }
        if (covered[h]) {
          const size_t li = (size_t(b) * H + h) * N + t;
          const float gl = g_lse[li], cl = c_lse[li];
          if (std::isinf(cl) || std::isinf(gl)) {
            if (gl != cl) r.lse_max_abs = std::numeric_limits<double>::infinity();
          } else {
            r.lse_max_abs = std::max(r.lse_max_abs, double(std::fabs(gl - cl)));
          }
        }
      }
  r.out_rel_l2 = ref2 > 0 ? std::sqrt(err2 / ref2) : std::sqrt(err2);

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
            const int32_t gm = g_map[mi], cm = c_map[mi];
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
              const double thr = c_lse[(size_t(b) * H + h) * N + t] + log_eta;
              const float* qr = &q.f32[vq.offset(b, t, h)];
              for (int64_t u = grid.starts[kb]; u < grid.starts[kb + 1]; ++u) {
                const float* kr = &k.f32[vq.offset(b, u, h)];
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
