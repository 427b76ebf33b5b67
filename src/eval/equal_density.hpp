#pragma once
// The equal-density view of a run (include/moddit/eval.hpp: SweepPoint,
// EqualDensityPoint): extra runs that bracket the target for the policies that
// miss it, and each policy's recall and rel_l2 at the target.
#include <string>

#include "moddit/eval.hpp"
#include "moddit/trajectory.hpp"

namespace moddit {
namespace eval {

// The next density to request from a policy that achieved `achieved` when
// asked for `requested`: shifted by the miss, so that it lands on the other
// side of `target`; in [0.001, 1].
double next_sweep_request(double requested, double achieved, double target);

// A policy's point at `target` from its own means and its sweep runs: measured,
// interpolated between the nearest runs on either side, or (no bracket) the run
// nearest the target, never extrapolated.
EqualDensityPoint equal_density_point(const PolicyResult& policy, double target);

// Runs the extra passes for the policies of `res` that are off the target
// (res.settings.equal_density; at most kMaxSweepRuns passes) and fills every
// policy's at_target. Returns the number of extra policy runs made.
int add_equal_density_view(EvalResult& res, TrajectorySource& source);

}  // namespace eval
}  // namespace moddit
