#pragma once
// Sparse-vDiT as an evaluation policy at a target density (DESIGN.md 6).
//
// The config comes from a file written by `moddit search`, or, without one, from
// a search run here on the calibration data the run names (EvalSettings::
// vdit_calibration; the trajectory's `source` text never decides): a held-out
// batch item of the same synthetic generator, a calibration file, or the
// evaluated trajectory itself (in-sample; the note says so). The search's loss
// table of a synthetic calibration is cached per generator settings, so several
// densities cost one search; (lambda, eps) are then picked for the target
// density (decide_vdit_for_density). Dense before the run's warm-up, like every
// baseline, so that all are compared on the same steps.
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "moddit/config.hpp"
#include "moddit/policy.hpp"
#include "moddit/sparse_vdit.hpp"
#include "moddit/trajectory.hpp"

namespace moddit {
namespace eval {

class VditEvalPolicy : public Policy {
 public:
  VditEvalPolicy(VditConfig config, int warmup_steps);
  std::string name() const override { return "sparse_vdit"; }
  Plan plan(const CallInfo& call) override;
  const VditConfig& config() const { return inner_.config(); }

 private:
  SparseVditPolicy inner_;
  int warmup_;
};

// `note` (may be null) receives one line for the report: where the config came
// from, the density it achieves and its skipped heads. The searched decision
// meets the target over the steps and layers the run scores (`scored_steps`
// from warmup_steps on, `scored_layers`; empty = every recorded one of
// `evaluated`), each searched step weighted by how many scored steps use it.
// `measured` (may be null): a search table to decide from instead of searching
// (when *measured is set), and where the table used is left.
// `calibration` and `synthetic` as EvalSettings::vdit_calibration / synthetic.
std::shared_ptr<VditEvalPolicy> make_vdit_eval_policy(TrajectorySource& evaluated,
                                                      const ModditConfig& run,
                                                      double target_density,
                                                      std::string* note = nullptr,
                                                      const std::string& config_path = "",
                                                      int threads = 0,
                                                      const std::string& calibration = "",
                                                      const SyntheticSpec* synthetic = nullptr,
                                                      const std::vector<int>& scored_steps = {},
                                                      const std::vector<int>& scored_layers = {},
                                                      std::shared_ptr<const VditLossTable>* measured = nullptr);

// How much each searched (step, layer) of `config_steps` counts in the run's
// means: the number of scored steps (>= warmup_steps) whose decision it is (the
// latest searched step <= them), per scored layer; 0 for the others.
std::vector<std::vector<double>> vdit_step_weights(const std::vector<int>& config_steps,
                                                   int num_layers,
                                                   const std::vector<int>& scored_steps,
                                                   const std::vector<int>& scored_layers,
                                                   int warmup_steps);

// Adds one call's heads per group label to `counts` (heads in no group count as
// "skip"): the "share of heads per mode" of the report, for any policy.
void add_head_modes(const Plan& plan, int num_heads, std::map<std::string, double>& counts);

// The candidate parameters the evaluation searches (wide enough to reach low
// densities on small grids).
VditSearchOptions vdit_eval_search_options(const TokenLayout& tokens, int block_size,
                                           int first_step);

}  // namespace eval
}  // namespace moddit
