#include "core/static_mask_layout.hpp"

#include "core/video_mask.hpp"
#include "moddit/error.hpp"

namespace moddit {
namespace core {

StaticMaskKind static_mask_kind(const std::string& name, const char* key) {
  if (name == "radial") return StaticMaskKind::Radial;
  if (name == "window") return StaticMaskKind::Window;
  throw Error(std::string(key) + " must be \"radial\" or \"window\", got \"" + name + "\"");
}

const BlockLayout& StaticMaskLayout::layout(const CallInfo& call) {
  MODDIT_CHECK(call.tokens && call.grid, "static mask: call has no token layout or grid");
  // The whole token layout, not just n: two layouts with the same number of
  // video blocks (another frame shape) need another mask.
  const std::string key = call.tokens->describe() + ", block " +
                          std::to_string(call.grid->block_size) + ", batch " +
                          std::to_string(call.batch) + ", heads " + std::to_string(call.num_heads);
  if (key != key_) {
    mask_ = static_video_mask(kind_, *call.tokens, *call.grid, density_);
    const size_t nn = mask_.size(), rows = static_cast<size_t>(call.batch) * call.num_heads;
    std::vector<uint8_t> masks(nn * rows);
    for (size_t r = 0; r < rows; ++r) std::copy(mask_.begin(), mask_.end(), masks.begin() + r * nn);
    layout_ = layout_from_video_masks(masks, *call.grid, call.batch, call.num_heads);
    key_ = key;
  }
  return layout_;
}

}  // namespace core
}  // namespace moddit
