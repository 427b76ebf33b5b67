// Aggregation of a policy's per-call metrics (per-step series, means over the
// sparse steps, per (layer, head) means) and the notes every report carries.
#include "eval/run_summary.hpp"

#include <cmath>
#include <cstdio>

#include <algorithm>
#include <limits>
#include <map>

namespace moddit {
namespace eval {

namespace {

double mean(const std::vector<double>& v) {
  if (v.empty()) return std::numeric_limits<double>::quiet_NaN();
  double s = 0.0;
  for (double x : v) s += x;
  return s / double(v.size());
}

}  // namespace

void summarize_policy(PolicyResult& r, int sparse_from, const std::vector<int>& layers,
                      int heads) {
  std::map<int, std::vector<const CallMetrics*>> by_step;
  for (const CallMetrics& c : r.calls) by_step[c.step].push_back(&c);
  bool any_sparse = false;
  for (const CallMetrics& c : r.calls) any_sparse |= c.step >= sparse_from;
  std::vector<double> d, rc, e, ms, orc;
  r.per_step = StepSeries{};
  for (const auto& [step, calls] : by_step) {
    std::vector<double> sd, sr, se, sm;
    for (const CallMetrics* c : calls) {
      sm.push_back(1e3 * (c->seconds + c->overhead_seconds));
      for (const HeadMetrics& h : c->heads) {
        sd.push_back(h.density);
        sr.push_back(h.recall);
        se.push_back(h.rel_l2);
      }
      if (!any_sparse || step >= sparse_from) {
        ms.push_back(sm.back());
        for (const HeadMetrics& h : c->heads) {
          d.push_back(h.density);
          rc.push_back(h.recall);
          e.push_back(h.rel_l2);
        }
        for (double x : c->oracle_recall_same_density) orc.push_back(x);
      }
    }
    std::vector<double> nae;
    for (const FitRecord& f : r.fits)
      if (f.step == step) nae.push_back(f.nae);
    r.per_step.steps.push_back(step);
    r.per_step.density.push_back(mean(sd));
    r.per_step.recall.push_back(mean(sr));
    r.per_step.rel_l2.push_back(mean(se));
    r.per_step.ms_per_call.push_back(mean(sm));
    r.per_step.nae.push_back(mean(nae));  // NaN where no fit
  }
  r.sparse_calls = static_cast<int>(ms.size());
  r.per_layer_head.assign(layers.size() * static_cast<size_t>(heads), HeadMetrics{});
  std::vector<int> counts(r.per_layer_head.size(), 0);
  for (const CallMetrics& c : r.calls) {
    if (any_sparse && c.step < sparse_from) continue;
    const size_t li = static_cast<size_t>(
        std::find(layers.begin(), layers.end(), c.layer) - layers.begin());
    for (int h = 0; h < heads && h < static_cast<int>(c.heads.size()); ++h) {
      HeadMetrics& m = r.per_layer_head[li * heads + h];
      m.density += c.heads[h].density;
      m.recall += c.heads[h].recall;
      m.rel_l2 += c.heads[h].rel_l2;
      ++counts[li * heads + h];
    }
  }
  for (size_t i = 0; i < counts.size(); ++i)
    if (counts[i] > 0) {
      r.per_layer_head[i].density /= counts[i];
      r.per_layer_head[i].recall /= counts[i];
      r.per_layer_head[i].rel_l2 /= counts[i];
    }
  r.density = mean(d);
  r.recall = mean(rc);
  r.rel_l2 = mean(e);
  r.ms_per_call = mean(ms);
  if (r.kind == "moddit") {
    std::vector<double> all;
    for (const FitRecord& f : r.fits) all.push_back(f.nae);
    r.nae = all.empty() ? -1.0 : mean(all);
    r.oracle_recall_same_density = orc.empty() ? -1.0 : mean(orc);
  }
}

std::vector<std::string> off_target_notes(const EvalResult& res) {
  std::vector<std::string> out;
  const double target = res.settings.target_density;
  const int n = res.num_video_blocks;
  auto num = [](double x) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.4f", x);
    return std::string(buf);
  };
  for (const PolicyResult& p : res.policies) {
    if (p.kind == "dense" || p.sparse_calls == 0) continue;
    if (std::fabs(p.density - target) <= kDensityTolerance) continue;
    std::string why;
    const double diagonal = n > 0 ? 1.0 / n : 1.0;
    if (p.kind == "sparse_vdit")
      why = "Sparse-vDiT's density path changes one head's mode at a time, and with few "
            "(step, layer, head) decisions one move is coarser than the tolerance (its note "
            "says which; skipped heads count as density 0)";
    else if (p.kind == "moddit" && p.label.find("top_k") != std::string::npos)
      why = "top_k is set: K lines per head, not a density target";
    else if (p.density > target && diagonal > target - kDensityTolerance)
      why = "the diagonal blocks every mask keeps already take about " + num(diagonal) +
            " of the " + std::to_string(n) + "x" + std::to_string(n) + " grid";
    else
      why = "one block pair is " + num(n > 0 ? 1.0 / (double(n) * n) : 1.0) +
            " of the grid; the policy's order stops at the block closest to the target";
    out.push_back(p.label + ": density " + num(p.density) + ", target " + num(target) + " (off by more than " +
                  num(kDensityTolerance) + "): " + why + ".");
  }
  return out;
}

std::vector<std::string> standard_notes(const EvalResult& res, int first_step) {
  std::vector<std::string> notes = {
      "Q/K/V come from a fixed (dense) trajectory: every policy sees the dense model's inputs at "
      "every step, so errors do not compound across steps and layers as they would in a real "
      "sparse run; rel_l2 is a per-call error, not an end-to-end one.",
      "Steps before " + std::to_string(first_step) +
          " (warmup_steps - 2) are dense for every policy and are not run.",
      "Means are over steps >= " + std::to_string(res.sparse_from_step) +
          " (MOD-DiT's sparse steps, refresh steps included; the baselines are dense before "
          "them too), over layers and heads; per-step lists cover every step run.",
      "density: live video x video token pairs / all video x video token pairs (text excluded); "
      "recall: dense probability mass inside the mask (text keys always computed, so kept), "
      "mean over video query rows; rel_l2: ||O - O_dense|| / ||O_dense|| over video query rows.",
      "Every sparse policy meets the target density the same way: blocks in the policy's own "
      "order, each taken while it brings the density closer to the target (within half a block "
      "pair of it); MOD-DiT trims its kept frames and its last line block by block. "
      "Sparse-vDiT meets it on average over its search.",
      "oracle: per head the diagonal blocks, then the blocks of highest dense mass per token "
      "pair, to the target density (for equal-sized blocks, the highest recall of "
      "any mask with the diagonal at that density). moddit's oracle_recall_same_density is the "
      "oracle's recall at MOD-DiT's own per-head density.",
      "window: static 3D sliding tile (cube in frame/row/column latent-token units around each "
      "block); radial: Radial Attention's static energy decay (a band around the same spatial "
      "index whose width halves as the frame distance doubles, its scale set by the target "
      "density). Both keep the diagonal.",
      "rel_l2 is relative to the dense output's norm: where attention is diffuse over "
      "uncorrelated values the dense output is small, and rel_l2 can approach 1 even at fair "
      "recall; compare policies with each other, not with an absolute bar.",
      "dense: the reference itself (not run a second time); its ms/call is the reference's.",
      "nae: mean over every MOD-DiT fit (the two reference steps and the refresh steps); per-step "
      "nae is null on steps without a fit.",
      "time: the fp32 CPU reference backend, wall time per call (policy overhead included); not "
      "indicative of GPU speed."};
  return notes;
}

}  // namespace eval
}  // namespace moddit
