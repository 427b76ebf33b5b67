#pragma once
// Static (content-independent) video masks of the evaluation baselines, on the
// n x n video block grid, sized to a target density.
//
// Geometry: a video block is a run of frame-major tokens; it is split at frame
// boundaries into segments, each summarised by its frame and the mean (y, x) of
// its tokens in the latent grid. The distance of two blocks is the smallest
// distance between their segments, so blocks that straddle a frame boundary are
// near both frames.
//
// - window: a 3D sliding tile in latent token space, a cube in
//   (frame, row, column) token units (Chebyshev distance, ties by Euclidean
//   distance). It grows until the target density is reached.
// - radial: the energy-decay mask of Radial Attention: the spatial window halves
//   every time the temporal distance doubles (key = max(spatial distance, 1)
//   * 2^band(df), band(0) = 0, band(df) = floor(log2 df) + 1; ties by df), so
//   nearby frames see a wide spatial neighbourhood and far frames only the same
//   location.
//
// Both keep the diagonal, then add block pairs in ascending key order until the
// token-pair weighted density reaches the target (the smallest such prefix; ties
// beyond it are cut by (|i-j|, i, j), so the density matches the target to one block).
#include <cstdint>
#include <string>
#include <vector>

#include "moddit/token_layout.hpp"

namespace moddit {
namespace eval {

enum class StaticMaskKind { Window, Radial };

std::vector<uint8_t> static_video_mask(StaticMaskKind kind, const TokenLayout& tokens,
                                       const BlockGrid& grid, double target_density);

}  // namespace eval
}  // namespace moddit
