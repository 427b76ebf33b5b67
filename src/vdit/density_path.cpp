// Sparse-vDiT at a target density (include/moddit/sparse_vdit.hpp): a nested,
// greedy path over the measured loss table, so that a higher target never gets
// a larger predicted loss than a lower one.
//
// Per (step, layer, head) "unit", the candidates and full (density 1, nMSE 0)
// are points (density, nMSE). Only the lower convex hull from the sparsest
// point to full can be optimal for a density budget (a point above the hull is
// beaten by mixing its hull neighbours across units), so each unit walks its
// hull from left to right. Every unit starts at its sparsest point; each step
// of the path takes, over all units, the hull move with the largest nMSE
// reduction per unit of density (a max-heap). Because each unit's hull rates
// decrease, this is the Lagrangian (lambda) sweep resolved one head at a time:
// the chosen set grows with the target, the density rises and the summed nMSE
// falls at every step. The path stops at the step closest to the target.
// A skipped head is a point at density 0 like any other: it is counted at what
// it computes (nothing), and the decision reports how many heads it skips.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <queue>

#include "moddit/error.hpp"
#include "moddit/sparse_vdit.hpp"

namespace moddit {

namespace {

struct HullPoint {
  double density, nmse;
  int index;  // candidate index; -1 = full
};

// The lower-left convex hull of one unit's points, sparsest first, ending at the
// lowest nMSE (full unless a candidate is exact).
std::vector<HullPoint> unit_hull(const std::vector<VditScored>& cands) {
  std::vector<HullPoint> pts;
  for (size_t i = 0; i < cands.size(); ++i)
    pts.push_back({cands[i].density, cands[i].nmse, static_cast<int>(i)});
  pts.push_back({1.0, 0.0, -1});
  std::stable_sort(pts.begin(), pts.end(), [](const HullPoint& a, const HullPoint& b) {
    return a.density < b.density || (a.density == b.density && a.nmse < b.nmse);
  });
  // Pareto front: density strictly up, nMSE strictly down.
  std::vector<HullPoint> front;
  for (const HullPoint& p : pts)
    if (front.empty() || p.nmse < front.back().nmse) {
      if (!front.empty() && p.density == front.back().density) continue;  // same x, worse y
      front.push_back(p);
    }
  std::vector<HullPoint> hull;
  for (const HullPoint& p : front) {
    while (hull.size() >= 2) {
      const HullPoint &a = hull[hull.size() - 2], &b = hull.back();
      const double cross = (b.density - a.density) * (p.nmse - a.nmse) -
                           (b.nmse - a.nmse) * (p.density - a.density);
      if (cross > 0) break;  // b is strictly below a->p: keep it
      hull.pop_back();
    }
    hull.push_back(p);
  }
  return hull;
}

std::string num(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4f", x);
  return buf;
}

}  // namespace

VditDensityDecision decide_vdit_density(const VditLossTable& table, double target,
                                        const std::vector<std::vector<double>>& weights) {
  MODDIT_CHECK(target > 0 && target <= 1, "target density must be in (0, 1], got ", target);
  MODDIT_CHECK(!table.scored.empty(), "Sparse-vDiT density decision: the loss table is empty");
  MODDIT_CHECK(weights.empty() || weights.size() == table.scored.size(),
               "Sparse-vDiT density decision: ", weights.size(), " step weights for ",
               table.scored.size(), " searched steps");
  // Units, step-major then layer then head.
  std::vector<std::vector<HullPoint>> hulls;
  std::vector<double> w;
  for (size_t i = 0; i < table.scored.size(); ++i) {
    MODDIT_CHECK(weights.empty() || weights[i].size() == table.scored[i].size(),
                 "Sparse-vDiT density decision: step ", table.steps[i], " has ",
                 weights.empty() ? 0 : weights[i].size(), " layer weights for ",
                 table.scored[i].size(), " layers");
    for (size_t l = 0; l < table.scored[i].size(); ++l) {
      const double wl = weights.empty() ? 1.0 : weights[i][l];
      MODDIT_CHECK(std::isfinite(wl) && wl >= 0, "Sparse-vDiT density decision: weight ", wl,
                   " of step ", table.steps[i], " layer ", l, " must be finite and >= 0");
      for (const auto& cands : table.scored[i][l]) {
        hulls.push_back(unit_hull(cands));
        w.push_back(wl);
      }
    }
  }
  double W = 0;
  for (double x : w) W += x;
  MODDIT_CHECK(W > 0, "Sparse-vDiT density decision: every (step, layer) has weight 0");

  std::vector<size_t> pos(hulls.size(), 0);
  double density = 0;
  for (size_t u = 0; u < hulls.size(); ++u) density += w[u] * hulls[u].front().density / W;
  VditDensityDecision out;
  out.target = target;
  out.min_density = density;

  // Next move of each weighted unit: (rate, unit); ties to the lower unit index.
  using Move = std::pair<double, size_t>;
  auto cmp = [](const Move& a, const Move& b) {
    return a.first < b.first || (a.first == b.first && a.second > b.second);
  };
  std::priority_queue<Move, std::vector<Move>, decltype(cmp)> heap(cmp);
  auto push_next = [&](size_t u) {
    const auto& h = hulls[u];
    if (w[u] <= 0 || pos[u] + 1 >= h.size()) return;
    const HullPoint &a = h[pos[u]], &b = h[pos[u] + 1];
    heap.push({(a.nmse - b.nmse) / (b.density - a.density), u});
  };
  for (size_t u = 0; u < hulls.size(); ++u) push_next(u);
  double rate = 0;       // loss reduction per density of the last move taken
  double last_step = 0;  // its density change
  while (density < target && !heap.empty()) {
    const auto [r, u] = heap.top();
    const HullPoint &a = hulls[u][pos[u]], &b = hulls[u][pos[u] + 1];
    const double next = density + w[u] * (b.density - a.density) / W;
    if (next - target > target - density) break;  // the move overshoots by more than it gains
    heap.pop();
    last_step = next - density;
    density = next;
    rate = r;
    ++pos[u];
    push_next(u);
  }
  if (!heap.empty()) {  // the move not taken bounds the step size at the target
    const size_t u = heap.top().second;
    out.next_step = w[u] * (hulls[u][pos[u] + 1].density - hulls[u][pos[u]].density) / W;
  }

  VditConfig& c = out.config;
  c.shape = table.shape;
  c.search = table.options;
  c.search.lambda = rate;
  c.search.eps = std::numeric_limits<double>::max();  // the path has no eps
  c.search.validate();
  c.calibration = table.calibration;
  c.steps = table.steps;
  size_t u = 0;
  double sum_d = 0;
  for (size_t i = 0; i < table.scored.size(); ++i) {
    std::vector<std::vector<VditHeadChoice>> layers;
    for (const auto& layer : table.scored[i]) {
      std::vector<VditHeadChoice> heads;
      for (const auto& cands : layer) {
        // A unit of weight 0 (never run where the decision is used) stays full.
        const HullPoint& p = w[u] > 0 ? hulls[u][pos[u]] : HullPoint{1.0, 0.0, -1};
        heads.push_back(p.index < 0 ? VditHeadChoice{} : cands[size_t(p.index)].choice);
        if (w[u] > 0) {
          sum_d += w[u] * p.density;
          out.loss += w[u] * p.nmse;
          out.heads += 1;
          out.skip_heads += heads.back().mode == VditMode::Skip;
        }
        ++u;
      }
      layers.push_back(std::move(heads));
    }
    c.choices.push_back(std::move(layers));
  }
  out.density = sum_d / W;
  if (std::fabs(out.density - target) > kVditDensityTolerance) {
    if (out.density > target && last_step == 0)
      out.off_target = "every head at its sparsest candidate already gives density " +
                       num(out.min_density) + " (no candidate mode is sparser)";
    else
      out.off_target = "the path moves one head at a time and the move at the target changes "
                       "the density by " + num(out.density > target ? last_step : out.next_step) +
                       " (" + std::to_string(out.heads) +
                       " (step, layer, head) decisions share the budget)";
  }
  return out;
}

VditConfig decide_vdit_for_density(const VditLossTable& table, double target) {
  return decide_vdit_density(table, target).config;
}

}  // namespace moddit
