#pragma once
// Static (content-independent) video masks, on the n x n video block grid, sized
// to a target density: the evaluation's window and radial baselines, and
// MOD-DiT's sparse warm-up (ModditConfig::sparse_warmup_steps). In core so that
// both use this one implementation.
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
// - radial: the energy-decay mask of Radial Attention (Li et al. 2025): a key
//   is attended when its spatial index in its frame (the token's position in the
//   flattened h x w frame) is within w / 2^band(df) of the query's, band(0) = 0
//   and band(df) = bit_length(df), so the window halves every time the frame
//   distance doubles: the whole frame pair near the diagonal, then ever narrower
//   bands around the same spatial position in farther frames. The window scale w
//   (Radial Attention's decay factor) is set by the target density: block pairs
//   join in ascending order of the w at which they would (ties by frame
//   distance). Radial Attention's frame subsampling for windows narrower than a
//   block is not modelled. Unlike the window, radial reaches along the flattened
//   index, across rows, not over a (row, column) square.
//
// Both keep the diagonal, then add block pairs in ascending key order, ties cut
// by (|i-j|, i, j), to the target density by the rule of core/target_fill.hpp
// (within half a block of it).
#include <cstdint>
#include <string>
#include <vector>

#include "moddit/token_layout.hpp"

namespace moddit {
namespace core {

enum class StaticMaskKind { Window, Radial };

std::vector<uint8_t> static_video_mask(StaticMaskKind kind, const TokenLayout& tokens,
                                       const BlockGrid& grid, double target_density);

}  // namespace core
}  // namespace moddit
