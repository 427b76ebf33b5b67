#pragma once
// Aggregates of a run (see run_summary.cpp).
#include <string>
#include <vector>

#include "moddit/eval.hpp"

namespace moddit {
namespace eval {

// Fills r.per_step, the means over steps >= sparse_from (all steps if none is),
// r.per_layer_head and, for moddit, nae and oracle_recall_same_density.
void summarize_policy(PolicyResult& r, int sparse_from, const std::vector<int>& layers, int heads);

// The policies whose density is off the target by more than kDensityTolerance,
// each with the reason.
std::vector<std::string> off_target_notes(const EvalResult& res);

// The notes of report.json: how the numbers were obtained.
std::vector<std::string> standard_notes(const EvalResult& res, int first_step);

}  // namespace eval
}  // namespace moddit
