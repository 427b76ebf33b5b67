#include "eval/svg_policy.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/video_mask.hpp"
#include "core/target_fill.hpp"
#include "moddit/error.hpp"
#include "vdit/geometry.hpp"

namespace moddit {
namespace eval {

namespace {

// The mask at the target density between two radii: r, the smallest radius in
// [0, hi] whose mask reaches the target, and the radius below it (or the
// diagonal alone); the blocks the larger radius adds are taken nearest the
// diagonal first, then row-major, by fill_to_target (density grows with the
// radius).
template <typename MaskOf>
std::vector<uint8_t> mask_at_density(MaskOf mask_of, int64_t hi, const BlockGrid& grid,
                                     double target) {
  int64_t lo = 0, top = hi;
  while (lo < top) {
    const int64_t mid = (lo + top) / 2;
    if (video_mask_density(mask_of(mid).data(), grid) >= target) top = mid;
    else lo = mid + 1;
  }
  const int n = grid.num_video_blocks;
  const std::vector<uint8_t> outer = mask_of(lo);
  std::vector<uint8_t> mask(static_cast<size_t>(n) * n, 0);
  if (lo > 0) mask = mask_of(lo - 1);
  for (int i = 0; i < n; ++i) mask[static_cast<size_t>(i) * n + i] = 1;
  std::vector<int32_t> order;
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j)
      if (outer[static_cast<size_t>(i) * n + j] && !mask[static_cast<size_t>(i) * n + j])
        order.push_back(i * n + j);
  std::stable_sort(order.begin(), order.end(), [n](int32_t a, int32_t b) {
    return std::abs(a / n - a % n) < std::abs(b / n - b % n);
  });
  core::fill_to_target(order, grid, target, mask.data());
  return mask;
}

}  // namespace

std::vector<uint8_t> svg_spatial_mask(const TokenLayout& tokens, const BlockGrid& grid,
                                      double target) {
  const int64_t P = tokens.tokens_per_frame();
  auto within_frame = [&](int64_t rs) { return geometry::frame_window_mask(tokens, grid, 0, rs); };
  if (tokens.frames == 1 || video_mask_density(within_frame(P - 1).data(), grid) >= target)
    return mask_at_density(within_frame, P - 1, grid, target);
  // The whole frame is not enough: neighbouring frames join, whole frames each.
  auto frames = [&](int64_t rf) { return geometry::frame_window_mask(tokens, grid, rf, P); };
  return mask_at_density(frames, tokens.frames - 1, grid, target);
}

std::vector<uint8_t> svg_temporal_mask(const TokenLayout& tokens, const BlockGrid& grid,
                                       double target) {
  // The same spatial position in the frames within rf (rf grows first: at low
  // densities SVG's all-frames band would not fit), then a spatial radius in all frames.
  auto same_position = [&](int64_t rf) { return geometry::frame_window_mask(tokens, grid, rf, 0); };
  if (video_mask_density(same_position(tokens.frames - 1).data(), grid) >= target)
    return mask_at_density(same_position, tokens.frames - 1, grid, target);
  auto any_frame = [&](int64_t rt) { return geometry::frame_window_mask(tokens, grid, -1, rt); };
  return mask_at_density(any_frame, tokens.tokens_per_frame() - 1, grid, target);
}

SvgPolicy::SvgPolicy(double target_density, int warmup_steps, int sample_rows)
    : target_(target_density), warmup_(warmup_steps), sample_rows_(sample_rows) {
  MODDIT_CHECK(target_density > 0 && target_density <= 1, "svg: density must be in (0, 1], got ",
               target_density);
  MODDIT_CHECK(sample_rows > 0, "svg: sample_rows must be > 0, got ", sample_rows);
}

void SvgPolicy::set_inputs(const HostTensor* q, const HostTensor* k, const HostTensor* v) {
  q_ = q;
  k_ = k;
  v_ = v;
}

void SvgPolicy::build_masks(const CallInfo& call) {
  // Keyed by the whole token layout and block size (see StaticMaskPolicy).
  const std::string key = call.tokens->describe() + ", block " + std::to_string(call.grid->block_size);
  if (cached_for_ == key) return;
  spatial_ = svg_spatial_mask(*call.tokens, *call.grid, target_);
  temporal_ = svg_temporal_mask(*call.tokens, *call.grid, target_);
  cached_for_ = key;
}

Plan SvgPolicy::plan(const CallInfo& call) {
  if (call.step < warmup_) return dense_plan(call.num_heads);
  MODDIT_CHECK(q_ && k_ && v_, "svg: no Q/K/V for this call (set_inputs() must precede each call)");
  const int B = call.batch, H = call.num_heads;
  const TokenLayout& t = *call.tokens;
  const BlockGrid& g = *call.grid;
  MODDIT_CHECK(q_->dtype == DType::F32 && q_->shape[0] == B && q_->shape[1] == t.total_tokens() &&
                   q_->shape[2] == H,
               "svg: the Q/K/V given do not match the call");
  build_masks(call);
  const int64_t N = t.total_tokens(), D = q_->shape[3], v0 = t.video_begin(), V = t.video_tokens();
  const int64_t pb = t.pad_begin(), pe = t.pad_end();
  const int n = g.num_video_blocks;
  const float scale = 1.0f / std::sqrt(float(D));
  // Video block of every key (-1: text, always kept).
  std::vector<int> vblock(static_cast<size_t>(N), -1);
  for (int b = 0; b < n; ++b)
    for (int64_t j = g.video_block_begin(b); j < g.video_block_end(b); ++j) vblock[size_t(v0 + j)] = b;

  const int64_t stride = std::max<int64_t>(1, V / sample_rows_);
  std::vector<double> err_s(size_t(H), 0.0), err_t(size_t(H), 0.0);
  const size_t Nz = static_cast<size_t>(N), Dz = static_cast<size_t>(D);
  std::vector<float> p(Nz), ps(Nz), pt(Nz);
  std::vector<float> od(Dz), os(Dz), ot(Dz);
  const float *Q = q_->f32(), *K = k_->f32(), *Vv = v_->f32();
  for (int64_t i = v0 + stride / 2; i < v0 + V; i += stride) {
    const int qb = vblock[size_t(i)];
    for (int b = 0; b < B; ++b)
      for (int h = 0; h < H; ++h) {
        const float* qi = Q + ((b * N + i) * H + h) * D;
        float mx = -std::numeric_limits<float>::infinity();
        for (int64_t j = 0; j < N; ++j) {
          const float* kj = K + ((b * N + j) * H + h) * D;
          float s = 0;
          for (int64_t e = 0; e < D; ++e) s += qi[e] * kj[e];
          p[size_t(j)] = (j >= pb && j < pe) ? -std::numeric_limits<float>::infinity() : s * scale;
          mx = std::max(mx, p[size_t(j)]);
        }
        // Unnormalised probabilities of the dense row and of its two masked versions.
        double zd = 0, zs = 0, zt = 0;
        for (int64_t j = 0; j < N; ++j) {
          const float e = std::exp(p[size_t(j)] - mx);
          const int kb = vblock[size_t(j)];
          p[size_t(j)] = e;
          ps[size_t(j)] = (kb < 0 || spatial_[size_t(qb) * n + kb]) ? e : 0.f;
          pt[size_t(j)] = (kb < 0 || temporal_[size_t(qb) * n + kb]) ? e : 0.f;
          zd += e;
          zs += ps[size_t(j)];
          zt += pt[size_t(j)];
        }
        std::fill(od.begin(), od.end(), 0.f);
        std::fill(os.begin(), os.end(), 0.f);
        std::fill(ot.begin(), ot.end(), 0.f);
        for (int64_t j = 0; j < N; ++j) {
          const float* vj = Vv + ((b * N + j) * H + h) * D;
          const float a = p[size_t(j)], as = ps[size_t(j)], at = pt[size_t(j)];
          for (int64_t e = 0; e < D; ++e) {
            od[size_t(e)] += a * vj[e];
            os[size_t(e)] += as * vj[e];
            ot[size_t(e)] += at * vj[e];
          }
        }
        for (int64_t e = 0; e < D; ++e) {
          const double d = od[size_t(e)] / zd;
          err_s[size_t(h)] += std::pow(os[size_t(e)] / zs - d, 2);
          err_t[size_t(h)] += std::pow(ot[size_t(e)] / zt - d, 2);
        }
      }
  }

  Plan plan;
  plan.kind = CallKind::Sparse;
  HeadGroup spatial, temporal;
  spatial.label = "spatial";
  temporal.label = "temporal";
  for (int h = 0; h < H; ++h) (err_s[size_t(h)] <= err_t[size_t(h)] ? spatial : temporal).heads.push_back(h);
  for (HeadGroup* grp : {&spatial, &temporal}) {
    if (grp->heads.empty()) continue;
    const std::vector<uint8_t>& video = grp == &spatial ? spatial_ : temporal_;
    const size_t count = size_t(B) * grp->heads.size();
    std::vector<uint8_t> masks(video.size() * count);
    for (size_t r = 0; r < count; ++r) std::copy(video.begin(), video.end(), masks.begin() + r * video.size());
    grp->layout = core::layout_from_video_masks(masks, g, B, static_cast<int>(grp->heads.size()));
    plan.groups.push_back(std::move(*grp));
  }
  return plan;
}

}  // namespace eval
}  // namespace moddit
