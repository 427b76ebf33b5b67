// The five Sparse-vDiT modes as block masks (include/moddit/sparse_vdit.hpp).
#include <algorithm>

#include "moddit/error.hpp"
#include "moddit/sparse_vdit.hpp"

#include "core/video_mask.hpp"
#include "vdit/geometry.hpp"

namespace moddit {

const char* to_string(VditMode m) {
  switch (m) {
    case VditMode::Full: return "full";
    case VditMode::Skip: return "skip";
    case VditMode::Diagonal: return "diagonal";
    case VditMode::MultiDiagonal: return "multi_diagonal";
    case VditMode::VerticalStripe: return "vertical_stripe";
  }
  return "?";
}

VditMode vdit_mode_from_string(const std::string& s) {
  for (int i = 0; i < kNumVditModes; ++i)
    if (s == to_string(static_cast<VditMode>(i))) return static_cast<VditMode>(i);
  throw Error("unknown Sparse-vDiT mode '" + s +
              "' (expected full, skip, diagonal, multi_diagonal or vertical_stripe)");
}

std::vector<uint8_t> vdit_video_mask(const VditHeadChoice& c, const TokenLayout& tokens,
                                     const BlockGrid& grid) {
  const int n = grid.num_video_blocks;
  MODDIT_CHECK(c.window >= 0, "Sparse-vDiT ", to_string(c.mode), ": window must be >= 0, got ",
               c.window);
  switch (c.mode) {
    case VditMode::Full: return std::vector<uint8_t>(size_t(n) * n, 1);
    case VditMode::Skip: return std::vector<uint8_t>(size_t(n) * n, 0);
    case VditMode::Diagonal: return geometry::band_mask(grid, c.window);
    case VditMode::MultiDiagonal: return geometry::frame_window_mask(tokens, grid, -1, c.window);
    case VditMode::VerticalStripe: {
      std::vector<uint8_t> mask = geometry::band_mask(grid, 0);
      for (int32_t kb : c.stripes) {
        MODDIT_CHECK(kb >= 0 && kb < n, "Sparse-vDiT vertical_stripe: key block ", kb,
                     " out of range [0, ", n, ")");
        for (int q = 0; q < n; ++q) mask[size_t(q) * n + kb] = 1;
      }
      return mask;
    }
  }
  throw Error("Sparse-vDiT: invalid mode value");
}

double vdit_density(const VditHeadChoice& c, const TokenLayout& tokens, const BlockGrid& grid) {
  if (c.mode == VditMode::Full) return 1.0;
  if (c.mode == VditMode::Skip) return 0.0;
  return video_mask_density(vdit_video_mask(c, tokens, grid).data(), grid);
}

BlockLayout vdit_group_layout(const std::vector<const VditHeadChoice*>& choices, int batch,
                              const TokenLayout& tokens, const BlockGrid& grid) {
  MODDIT_CHECK(!choices.empty() && batch > 0, "Sparse-vDiT: empty head group or batch");
  const int heads = static_cast<int>(choices.size());
  const size_t nn = static_cast<size_t>(grid.num_video_blocks) * grid.num_video_blocks;
  std::vector<uint8_t> masks(nn * size_t(batch) * size_t(heads));
  for (int h = 0; h < heads; ++h) {
    MODDIT_CHECK(choices[h]->mode != VditMode::Skip,
                 "Sparse-vDiT: a skipped head has no layout (it is not launched)");
    const std::vector<uint8_t> video = vdit_video_mask(*choices[h], tokens, grid);
    for (int b = 0; b < batch; ++b)
      std::copy(video.begin(), video.end(), masks.begin() + (size_t(b) * heads + h) * nn);
  }
  return core::layout_from_video_masks(masks, grid, batch, heads);
}

}  // namespace moddit
