#pragma once
// How fast a trajectory's attention maps change over the denoising steps: the
// statistics docs/quality/attention_stats.json ("map_change") holds for
// moddit-tiny, measured the same way on any TrajectorySource (e.g. the synthetic
// generator, to compare it with the trained model). Definitions follow
// python/moddit/quality/stats.py, except that the mask is the evaluation's oracle
// (oracle_video_mask, the global one) rather than the quality report's row
// oracle: the two agree on which blocks matter and this library has one oracle.
#include <vector>

#include "moddit/trajectory.hpp"

namespace moddit {
namespace eval {

struct MapChangeSettings {
  int block_size = 128;
  double density = 0.15;         // the oracle's density
  float eta = 1e-4f;             // S = share of pairs with P < eta (paper Eq. 2)
  int warmup = 12;               // steps >= warmup are averaged (the sparse steps)
  std::vector<int> ref_steps = {1, 3, 5, 7, 11};  // last warm-up steps m - 1
  int threads = 0;
};

// Means over the sparse steps, every recorded layer and head (each (b, h)
// value averaged over the batch first).
struct MapChangeStats {
  // Step t-1 -> t: |mask_t & mask_{t-1}| / |mask_{t-1}|, and the Pearson
  // correlation (off the diagonal) of the block mass and of S.
  // Pairs where either map is constant have no correlation and are left out of
  // the means (stats.py counts them as 0); smap_constant_share says how many
  // (b, h, step) pairs that was for S, whose maps are all 0 on heads too diffuse
  // for any P to fall below eta (with few tokens P stays above 1 / N > eta).
  double next_overlap = 0, next_mass_corr = 0, next_smap_corr = 0;
  double smap_constant_share = 0;
  // Per ref step r (mask frozen at r), over the sparse steps t > r: the recall
  // of that mask at t over the recall of t's own oracle mask, and the overlap.
  std::vector<double> frozen_recall_share, frozen_overlap;
};

// Runs dense attention (CPU backend) over every step and layer of `source`.
MapChangeStats measure_map_change(TrajectorySource& source, const MapChangeSettings& settings);

}  // namespace eval
}  // namespace moddit
