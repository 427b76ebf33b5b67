#pragma once
// The block layout of one static mask (core/static_masks.hpp), the same for
// every head and batch item, text rows and columns dense as in every layout
// (layout_from_video_masks): MOD-DiT's sparse warm-up
// (ModditConfig::sparse_warmup_steps) and the evaluation's window and radial
// baselines. Built once per call shape: a call with another token layout, block
// size, batch or head count rebuilds it.
#include <cstdint>
#include <string>
#include <vector>

#include "core/static_masks.hpp"
#include "moddit/block_layout.hpp"
#include "moddit/policy.hpp"

namespace moddit {
namespace core {

// "radial" or "window"; anything else is refused naming `key`.
StaticMaskKind static_mask_kind(const std::string& name, const char* key);

class StaticMaskLayout {
 public:
  StaticMaskLayout(StaticMaskKind kind, double density) : kind_(kind), density_(density) {}
  // The layout for this call's shape, over (call.batch, call.num_heads).
  const BlockLayout& layout(const CallInfo& call);
  // The n x n video mask of the last shape built for (empty before the first).
  const std::vector<uint8_t>& video_mask() const { return mask_; }

 private:
  StaticMaskKind kind_;
  double density_;
  std::string key_;  // the shape layout_ was built for
  std::vector<uint8_t> mask_;
  BlockLayout layout_;
};

}  // namespace core
}  // namespace moddit
