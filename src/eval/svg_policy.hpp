#pragma once
// The SVG baseline (Sparse VideoGen, Xi et al. 2025): every head is classified
// online, per call, as spatial or temporal from a sample of its query rows. For
// the sampled rows the dense output and the outputs under the spatial and the
// temporal mask are computed; the mask with the smaller error wins (summed over
// the batch, so a head has one mask per call).
//
// Masks, at the target video density (the radius that reaches it, its last
// ring trimmed by core/target_fill.hpp's rule, nearest the diagonal first):
//   spatial   the same frame, spatial indices within rs of each other (rs grows
//             to the whole frame, then neighbouring frames join);
//   temporal  the same spatial position in the frames within rf (rf grows to
//             all frames), then spatial indices within rt in any frame (the
//             multi-diagonal band at multiples of the frame length). SVG's
//             temporal heads span all frames; limiting the frame range first is
//             what lets the mask reach low densities on coarse grids.
// Both are built from token ranges (unaligned frames exact); text rows and
// columns dense; the diagonal block kept; dense before `warmup_steps` like the
// other baselines.
#include <memory>
#include <string>
#include <vector>

#include "moddit/host_tensor.hpp"
#include "moddit/policy.hpp"

namespace moddit {
namespace eval {

class SvgPolicy : public Policy {
 public:
  SvgPolicy(double target_density, int warmup_steps, int sample_rows = 64);
  std::string name() const override { return "svg"; }
  // The Q/K/V of the next call (f32 host, [B, N, H, D]); plan() needs them on
  // sparse steps, like the oracle needs its dense stats. Null clears.
  void set_inputs(const HostTensor* q, const HostTensor* k, const HostTensor* v);
  Plan plan(const CallInfo& call) override;

  // The n x n masks for the last grid (empty before the first sparse call).
  const std::vector<uint8_t>& spatial_mask() const { return spatial_; }
  const std::vector<uint8_t>& temporal_mask() const { return temporal_; }

 private:
  void build_masks(const CallInfo& call);

  double target_;
  int warmup_, sample_rows_;
  const HostTensor *q_ = nullptr, *k_ = nullptr, *v_ = nullptr;
  std::string cached_for_;  // the token layout and block size the masks were built for
  std::vector<uint8_t> spatial_, temporal_;
};

// Token-level spatial and temporal masks of SVG at a target density (exposed for tests).
std::vector<uint8_t> svg_spatial_mask(const TokenLayout& tokens, const BlockGrid& grid,
                                      double target_density);
std::vector<uint8_t> svg_temporal_mask(const TokenLayout& tokens, const BlockGrid& grid,
                                       double target_density);

}  // namespace eval
}  // namespace moddit
