#pragma once
// Sparse-vDiT (DESIGN.md 4, docs/SPARSE_VDIT.md): a static choice, per
// (step, layer, head), among five attention modes, found offline by a search
// over calibration trajectories and stored as a versioned JSON config that a
// Session policy loads.
//
// Modes and what they compute (text rows and columns are always dense; the
// diagonal block of every row is always kept, so no row is ever empty):
//   full            every block
//   skip            nothing: the head's output is zeros, no launch
//   diagonal        video key block kb is live for video query block qb iff
//                   |kb - qb| <= window (window in blocks)
//   multi_diagonal  kb is live for qb iff some token of qb and some token of kb
//                   have spatial indices (position within their frame, row-major)
//                   at most `window` tokens apart, in any frames: block bands at
//                   offsets k*P tokens, built from token ranges so frames that are
//                   not aligned with blocks are exact
//   vertical_stripe a stored set of video key blocks (chosen offline by dense
//                   attention mass) that every query block attends to
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "moddit/backend.hpp"
#include "moddit/block_layout.hpp"
#include "moddit/policy.hpp"
#include "moddit/token_layout.hpp"
#include "moddit/trajectory.hpp"

namespace moddit {

enum class VditMode : int32_t { Full = 0, Skip = 1, Diagonal = 2, MultiDiagonal = 3, VerticalStripe = 4 };
constexpr int kNumVditModes = 5;
const char* to_string(VditMode);  // "full", "skip", "diagonal", "multi_diagonal", "vertical_stripe"
VditMode vdit_mode_from_string(const std::string&);  // throws naming the unknown mode

// One head's mode at one (step, layer).
struct VditHeadChoice {
  VditMode mode = VditMode::Full;
  int window = 0;                // diagonal: radius in blocks; multi_diagonal: spatial radius in tokens
  std::vector<int32_t> stripes;  // vertical_stripe: video key blocks (0..n-1), ascending
  bool operator==(const VditHeadChoice& o) const {
    return mode == o.mode && window == o.window && stripes == o.stripes;
  }
};

// The n x n video x video block mask (row-major, 1 = live, diagonal always live)
// of a mode. Full -> all ones; Skip -> all zeros (nothing is computed).
std::vector<uint8_t> vdit_video_mask(const VditHeadChoice& choice, const TokenLayout& tokens,
                                     const BlockGrid& grid);
// Video density (token-pair weighted, text excluded) of a mode: full 1, skip 0.
double vdit_density(const VditHeadChoice& choice, const TokenLayout& tokens, const BlockGrid& grid);
// The layout of one head group: [batch, choices.size()] over the whole grid,
// text rows/columns dense; every batch item of a head shares its choice.
BlockLayout vdit_group_layout(const std::vector<const VditHeadChoice*>& choices, int batch,
                              const TokenLayout& tokens, const BlockGrid& grid);

// What the search was run for; a config is refused for any other shape.
struct VditShape {
  int num_layers = 0;
  int num_heads = 0;
  int head_dim = 0;
  int num_steps = 0;
  int block_size = 128;
  TokenLayout tokens;
};

struct VditSearchOptions {
  double lambda = 0.5;  // L = nMSE + lambda * density
  double eps = 1.0;     // full when every L > eps
  // Candidate modes (full is the fallback, not a candidate) and their parameters.
  std::vector<VditMode> modes = {VditMode::Skip, VditMode::Diagonal, VditMode::MultiDiagonal,
                                 VditMode::VerticalStripe};
  std::vector<int> diagonal_windows = {0, 1, 2, 4};         // blocks
  std::vector<int> multi_diagonal_windows = {0, 16, 64};    // tokens of spatial index
  std::vector<int> stripe_counts = {1, 2, 4, 8};            // key blocks
  int block_size = 128;
  int stripe_sample_rows = 512;  // query rows sampled per (item, head) to rank stripe blocks
  int first_step = 0;  // recorded steps before it are not searched (they stay full)
  void validate() const;
};

// The searched decisions: a versioned JSON file (docs/SPARSE_VDIT.md).
struct VditConfig {
  static constexpr int kVersion = 1;
  VditShape shape;
  VditSearchOptions search;          // the options that produced it (recorded)
  std::vector<std::string> calibration;  // sources of the calibration trajectories
  std::vector<int> steps;            // searched steps, ascending
  // choices[i][layer][head] for steps[i].
  std::vector<std::vector<std::vector<VditHeadChoice>>> choices;

  // The choices of (step, layer): those of the latest searched step <= step; all
  // full before the first searched step (steps not searched are dense). Throws on
  // a layer out of range.
  std::vector<VditHeadChoice> layer_choices(int step, int layer) const;
  // Throws naming the inconsistent field.
  void validate() const;
  // Throws a one-line message naming what differs ("searched for ... , this model ...").
  void check_matches(const TokenLayout& tokens, int block_size, int num_heads, int head_dim,
                     int num_steps) const;
  // Mean density over every (step, layer, head).
  double mean_density() const;
};

std::string vdit_config_to_json(const VditConfig& config);
VditConfig vdit_config_from_json(const std::string& json_text);  // validates
VditConfig load_vdit_config(const std::string& path);            // errors name the file
void save_vdit_config(const VditConfig& config, const std::string& path);  // atomic

// Share of heads per mode for one layer (over steps), or overall (layer = -1).
std::vector<double> vdit_mode_shares(const VditConfig& config, int layer = -1);
// A text table: one row per layer, one column per mode (percent of heads).
std::string vdit_summary_table(const VditConfig& config);

// --- search -----------------------------------------------------------------
// Every candidate's measured loss terms at one (step, layer, head).
struct VditScored {
  VditHeadChoice choice;
  double nmse = 0.0;     // MSE vs dense / mean square of the layer's dense output
  double density = 0.0;  // video density
};

// The measurements of a search, from which decisions for any (lambda, eps)
// follow without touching the data again.
struct VditLossTable {
  VditShape shape;
  VditSearchOptions options;
  std::vector<std::string> calibration;
  std::vector<int> steps;
  std::vector<int> layers;  // searched layers (all 0..num_layers-1)
  // scored[i][layer][head]: candidates of steps[i].
  std::vector<std::vector<std::vector<std::vector<VditScored>>>> scored;
};

using VditProgress = std::function<void(int done, int total)>;

// Runs every candidate of every (step, layer, head) on `backend` (the CPU backend,
// or a GPU backend: vdit/candidate_runner.hpp) against
// dense attention, averaged over the sources (same shape required) and batch
// items. Greedy per step on the recorded (dense-trajectory) Q/K/V.
VditLossTable measure_vdit_candidates(const std::vector<TrajectorySource*>& sources,
                                      Backend& backend, const VditSearchOptions& options,
                                      const VditProgress& progress = nullptr);
// The decision rule (paper Eq. 3): full if every L > eps, else argmin L.
VditConfig decide_vdit(const VditLossTable& table, double lambda, double eps);
// measure + decide with options.lambda/eps.
VditConfig search_vdit(const std::vector<TrajectorySource*>& sources, Backend& backend,
                       const VditSearchOptions& options, const VditProgress& progress = nullptr);

// How far a density decision may land from its target before it says why (the
// evaluation's kDensityTolerance is the same value).
constexpr double kVditDensityTolerance = 0.005;

// The decision for a target density and what it predicts.
struct VditDensityDecision {
  VditConfig config;
  double target = 0.0;
  // Weighted mean video density of the decision; skipped heads count at 0 (they
  // compute nothing), full heads at 1.
  double density = 0.0;
  double loss = 0.0;         // weighted sum of the chosen candidates' nMSE (full: 0)
  double min_density = 0.0;  // every head at its sparsest candidate
  double next_step = 0.0;    // density change of the next move on the path (0 at the end)
  int64_t heads = 0;         // (step, layer, head) decisions of weight > 0
  int64_t skip_heads = 0;    // of them, skipped (counted at density 0)
  std::string off_target;    // why |density - target| > kVditDensityTolerance; empty if not
};

// A nested greedy path (src/vdit/density_path.cpp): per (step, layer, head) the
// lower convex hull of its candidates and full in (density, nMSE); every head
// starts at its sparsest point and the path repeatedly takes the move with the
// largest nMSE reduction per density over all heads, stopping at the density
// closest to `target`. So the decision at a higher target never has a larger
// loss, and the density moves in steps of one head. `weights[i][layer]` (>= 0)
// is how much (steps[i], layer) counts in the mean density and the loss (e.g.
// how many evaluated steps use it); empty = 1 each; a unit of weight 0 stays
// full. The recorded search lambda is the last move's rate, eps the largest
// double (the path does not use eps).
VditDensityDecision decide_vdit_density(const VditLossTable& table, double target,
                                        const std::vector<std::vector<double>>& weights = {});
// decide_vdit_density(table, target).config.
VditConfig decide_vdit_for_density(const VditLossTable& table, double target);

// A view of `source` without its first `first_item` batch items. Synthetic
// trajectories share the model (head kinds and projections) across batch items
// and vary the content, so item 1 of a seed is "another prompt" for the model
// that item 0 of the same seed evaluates: the search calibrates there.
std::unique_ptr<TrajectorySource> drop_batch_items(std::unique_ptr<TrajectorySource> source,
                                                   int first_item);

// --- inference ----------------------------------------------------------------
// The Session policy: per (step, layer) one head group per mode present (head
// fusion), skipped heads in no group. Checks the call's shape against the
// config on every new (step, layer) and refuses a mismatch.
class SparseVditPolicy : public Policy {
 public:
  explicit SparseVditPolicy(VditConfig config);
  std::string name() const override { return "sparse_vdit"; }
  Plan plan(const CallInfo& call) override;
  const VditConfig& config() const { return config_; }

 private:
  VditConfig config_;
  struct CacheKey {
    int step_index, layer, batch;
    bool operator<(const CacheKey& o) const;
  };
  std::map<CacheKey, Plan> cache_;  // one entry per (searched step, layer, batch)
};

std::shared_ptr<Policy> make_sparse_vdit_policy(VditConfig config);

}  // namespace moddit
