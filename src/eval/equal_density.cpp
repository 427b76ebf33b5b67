// The equal-density view (equal_density.hpp). A policy whose achieved density
// misses the target is run again (a whole run: MOD-DiT's state depends on every
// step) at a request shifted by the miss; the nearest runs on either side of the
// target are interpolated linearly. Policies on target cost nothing more, and
// all policies needing a run share one pass (one dense reference per call).
#include "eval/equal_density.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace moddit {
namespace eval {

namespace {

struct Run {
  double requested, density, recall, rel_l2;
  const std::vector<double>* per_step_recall;
  const std::vector<double>* per_step_rel_l2;
};

// The policy's own run (asked for `target`) and its sweep runs.
std::vector<Run> runs_of(const PolicyResult& p, double target) {
  std::vector<Run> out = {{target, p.density, p.recall, p.rel_l2, &p.per_step.recall,
                           &p.per_step.rel_l2}};
  for (const SweepPoint& s : p.sweep)
    out.push_back({s.requested, s.density, s.recall, s.rel_l2, &s.per_step_recall,
                   &s.per_step_rel_l2});
  return out;
}

std::string num(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4f", x);
  return buf;
}

bool can_sweep(const PolicyResult& p, const EvalSettings& s) {
  if (p.kind == "dense" || p.sparse_calls == 0) return false;
  for (const EvalPolicySpec& spec : s.policies)
    if (spec.label == p.label) return !(spec.kind == "moddit" && spec.config.top_k > 0);
  return false;
}

}  // namespace

double next_sweep_request(double requested, double achieved, double target) {
  return std::min(1.0, std::max(0.001, requested + (target - achieved)));
}

EqualDensityPoint equal_density_point(const PolicyResult& p, double target) {
  EqualDensityPoint e;
  const std::vector<Run> runs = runs_of(p, target);
  auto take = [&](const Run& r, const std::string& basis) {
    e.basis = basis;
    e.density = r.density;
    e.recall = r.recall;
    e.rel_l2 = r.rel_l2;
    e.per_step_recall = *r.per_step_recall;
    e.per_step_rel_l2 = *r.per_step_rel_l2;
  };
  if (std::fabs(p.density - target) <= kDensityTolerance) {
    take(runs[0], "measured");
    return e;
  }
  const Run *lo = nullptr, *hi = nullptr, *nearest = &runs[0];
  for (const Run& r : runs) {
    if (r.density <= target && (!lo || r.density > lo->density)) lo = &r;
    if (r.density >= target && (!hi || r.density < hi->density)) hi = &r;
    if (std::fabs(r.density - target) < std::fabs(nearest->density - target)) nearest = &r;
  }
  if (std::fabs(nearest->density - target) <= kDensityTolerance) {
    take(*nearest, "measured");
    e.why = "measured on its run at requested density " + num(nearest->requested) +
            " (its own run was off the target)";
    return e;
  }
  if (!lo || !hi) {
    take(*nearest, "own density");
    std::string tried;
    for (const Run& r : runs) tried += (tried.empty() ? "" : ", ") + num(r.density);
    e.why = "no run landed on the other side of the target (densities reached: " + tried +
            "); not extrapolated";
    return e;
  }
  const double a = hi->density > lo->density ? (target - lo->density) / (hi->density - lo->density) : 0.0;
  auto lerp = [a](double x, double y) { return (1 - a) * x + a * y; };
  e.basis = "interpolated";
  e.density = target;
  e.lo_density = lo->density;
  e.hi_density = hi->density;
  e.recall = lerp(lo->recall, hi->recall);
  e.rel_l2 = lerp(lo->rel_l2, hi->rel_l2);
  // Per step with the same weights (the runs cover the same steps).
  if (lo->per_step_recall->size() == hi->per_step_recall->size() &&
      lo->per_step_rel_l2->size() == hi->per_step_rel_l2->size())
    for (size_t i = 0; i < lo->per_step_recall->size(); ++i) {
      e.per_step_recall.push_back(lerp((*lo->per_step_recall)[i], (*hi->per_step_recall)[i]));
      e.per_step_rel_l2.push_back(lerp((*lo->per_step_rel_l2)[i], (*hi->per_step_rel_l2)[i]));
    }
  return e;
}

int add_equal_density_view(EvalResult& res, TrajectorySource& source) {
  const double target = res.settings.target_density;
  int extra = 0;
  if (res.settings.equal_density) {
    // Per policy: the last request and whether a run has reached the other side.
    std::vector<double> requested(res.policies.size(), target);
    for (int pass = 0; pass < kMaxSweepRuns; ++pass) {
      EvalSettings s = res.settings;
      s.equal_density = false;
      s.policies.clear();
      s.snapshot_heads.clear();
      s.keep_masks = false;
      std::vector<size_t> which;
      for (size_t i = 0; i < res.policies.size(); ++i) {
        PolicyResult& p = res.policies[i];
        if (!can_sweep(p, res.settings) || std::fabs(p.density - target) <= kDensityTolerance)
          continue;
        // Every mask but Sparse-vDiT's keeps the diagonal blocks: below them no
        // request can land, so no run is made for it.
        const double diagonal = res.num_video_blocks > 0 ? 1.0 / res.num_video_blocks : 1.0;
        if (p.kind != "sparse_vdit" && p.density > target &&
            p.density <= diagonal + kDensityTolerance)
          continue;
        const bool below = p.density < target;
        bool bracketed = false;
        double last = p.density;
        for (const SweepPoint& sp : p.sweep) {
          bracketed |= (sp.density < target) != below || std::fabs(sp.density - target) <= kDensityTolerance;
          last = sp.density;
        }
        if (bracketed) continue;
        const double r = next_sweep_request(requested[i], last, target);
        if (r == requested[i]) continue;  // at the end of the range: nothing else to ask for
        requested[i] = r;
        for (const EvalPolicySpec& spec : res.settings.policies)
          if (spec.label == p.label) {
            EvalPolicySpec x = spec;
            x.config.target_density = r;
            x.label = spec.label + "@" + num(r);
            s.policies.push_back(x);
          }
        which.push_back(i);
      }
      if (which.empty()) break;
      const EvalResult more = run_evaluation(source, s);
      for (size_t k = 0; k < which.size(); ++k) {
        const PolicyResult& q = more.policies[k];
        SweepPoint sp;
        sp.requested = requested[which[k]];
        sp.density = q.density;
        sp.recall = q.recall;
        sp.rel_l2 = q.rel_l2;
        sp.per_step_recall = q.per_step.recall;
        sp.per_step_rel_l2 = q.per_step.rel_l2;
        res.policies[which[k]].sweep.push_back(std::move(sp));
        ++extra;
      }
    }
  }
  for (PolicyResult& p : res.policies) {
    p.at_target = equal_density_point(p, target);
    if (p.kind == "dense") p.at_target.basis = "reference", p.at_target.why.clear();
  }
  return extra;
}

}  // namespace eval
}  // namespace moddit
