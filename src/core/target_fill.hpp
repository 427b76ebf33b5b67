#pragma once
// The one rule by which every static or evaluation mask meets a target density
// (the oracle, window, radial, SVG, MOD-DiT's sparse warm-up): blocks are taken in the policy's own order, each
// only while it brings the token-pair weighted video density closer to the
// target, and the first that would not ends the walk. The achieved density is
// then within half a block's area of the target, unless the mask's mandatory
// blocks (the diagonal) already exceed it or every block is taken. MOD-DiT's
// mask builder (core/video_mask.cpp) applies the same rule to its own order.
#include <cstdint>
#include <vector>

#include "moddit/block_layout.hpp"

namespace moddit {
namespace core {

// Token pairs of block (i, j) of the n x n video grid, row-major.
std::vector<double> video_block_pairs(const BlockGrid& grid);

// Adds the blocks `order` names (row-major indices into the n x n mask; blocks
// already live are skipped) by the rule above. Returns the achieved density.
double fill_to_target(const std::vector<int32_t>& order, const BlockGrid& grid, double target,
                      uint8_t* mask);

}  // namespace core
}  // namespace moddit
