#include "eval/metrics.hpp"

#include <algorithm>
#include <numeric>

#include "core/target_fill.hpp"
#include "moddit/error.hpp"

namespace moddit {
namespace eval {

std::vector<uint8_t> video_masks_of_plan(const Plan& plan, const BlockGrid& grid, int batch,
                                         int heads) {
  const int n = grid.num_video_blocks, fv = grid.first_video_block;
  const size_t nn = static_cast<size_t>(n) * n;
  std::vector<uint8_t> masks(static_cast<size_t>(batch) * heads * nn, 0);
  for (const HeadGroup& g : plan.groups) {
    for (size_t s = 0; s < g.heads.size(); ++s) {
      const int h = g.heads[s];
      MODDIT_CHECK(h >= 0 && h < heads, "eval: plan names head ", h, " of ", heads);
      for (int b = 0; b < batch; ++b) {
        uint8_t* m = masks.data() + (static_cast<size_t>(b) * heads + h) * nn;
        if (!g.layout) {
          std::fill(m, m + nn, uint8_t(1));
          continue;
        }
        const BlockLayout& l = *g.layout;
        MODDIT_CHECK(l.batch == batch && l.heads == static_cast<int>(g.heads.size()),
                     "eval: plan layout covers ", l.batch, "x", l.heads, " (batch x heads), the group ",
                     batch, "x", g.heads.size());
        for (int i = 0; i < n; ++i) {
          const int64_t r = (int64_t(b) * l.heads + int64_t(s)) * l.num_q_blocks + fv + i;
          for (int32_t e = l.row_ptr[r]; e < l.row_ptr[r + 1]; ++e) {
            const int kb = l.col_idx[e];
            if (grid.is_video(kb)) m[static_cast<size_t>(i) * n + (kb - fv)] = 1;
          }
        }
      }
    }
  }
  return masks;
}

double kept_mass(const uint8_t* mask, const double* mass, const double* other_mass, int n) {
  double kept = 0.0;
  for (int i = 0; i < n; ++i) {
    kept += other_mass[i];
    for (int j = 0; j < n; ++j)
      if (mask[static_cast<size_t>(i) * n + j]) kept += mass[static_cast<size_t>(i) * n + j];
  }
  return kept;
}

std::vector<uint8_t> oracle_video_mask(const double* mass, const BlockGrid& grid, double target) {
  const int n = grid.num_video_blocks;
  std::vector<uint8_t> mask(static_cast<size_t>(n) * n, 0);
  const std::vector<double> pairs = core::video_block_pairs(grid);
  for (int i = 0; i < n; ++i) mask[static_cast<size_t>(i) * n + i] = 1;
  std::vector<int32_t> order;
  order.reserve(static_cast<size_t>(n) * n);
  for (int e = 0; e < n * n; ++e)
    if (!mask[e]) order.push_back(e);
  // Mass per token pair, so that a partial block is worth what it holds per pair
  // of density; ties broken by index for determinism.
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) {
    const double da = mass[a] / pairs[a], db = mass[b] / pairs[b];
    return da != db ? da > db : a < b;
  });
  core::fill_to_target(order, grid, target, mask.data());
  return mask;
}

void video_output_error(const HostTensor& out, const HostTensor& ref, int64_t video_begin,
                        int64_t video_tokens, int head, double& err2, double& ref2) {
  const int64_t B = ref.shape[0], N = ref.shape[1], H = ref.shape[2], D = ref.shape[3];
  err2 = 0.0;
  ref2 = 0.0;
  const float* o = out.f32();
  const float* r = ref.f32();
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = video_begin; t < video_begin + video_tokens; ++t) {
      const int64_t off = ((b * N + t) * H + head) * D;
      for (int64_t d = 0; d < D; ++d) {
        const double x = o[off + d], y = r[off + d];
        err2 += (x - y) * (x - y);
        ref2 += y * y;
      }
    }
}

}  // namespace eval
}  // namespace moddit
