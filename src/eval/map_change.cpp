// measure_map_change(): the map-change statistics of docs/quality (stats.py) on a
// TrajectorySource, from the evaluation's dense block stats and oracle.
#include "eval/map_change.hpp"

#include <algorithm>
#include <cmath>
#include <map>

#include "core/sparsity_map.hpp"
#include "eval/dense_reference.hpp"
#include "eval/dense_stats.hpp"
#include "eval/metrics.hpp"
#include "moddit/backend.hpp"
#include "moddit/error.hpp"

namespace moddit {
namespace eval {
namespace {

// What one (step, layer) leaves for the later steps: per (b, h) the oracle mask,
// the block mass and S.
struct Maps {
  int step = -1;
  std::vector<std::vector<uint8_t>> mask;
  std::vector<std::vector<double>> mass;
  std::vector<std::vector<float>> smap;
};

// Pearson correlation off the diagonal of two n x n maps; NaN if one is constant.
template <typename T>
double pearson_off_diagonal(const T* a, const T* b, int n) {
  double sa = 0, sb = 0;
  int count = 0;
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j)
      if (i != j) {
        sa += a[i * n + j];
        sb += b[i * n + j];
        ++count;
      }
  if (count == 0) return 0.0;
  const double ma = sa / count, mb = sb / count;
  double xy = 0, xx = 0, yy = 0;
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j)
      if (i != j) {
        const double x = a[i * n + j] - ma, y = b[i * n + j] - mb;
        xy += x * y;
        xx += x * x;
        yy += y * y;
      }
  if (xx == 0 || yy == 0) return std::nan("");
  return xy / (std::sqrt(xx) * std::sqrt(yy));
}

double overlap(const std::vector<uint8_t>& now, const std::vector<uint8_t>& before) {
  double both = 0, was = 0;
  for (size_t e = 0; e < now.size(); ++e) {
    both += now[e] && before[e];
    was += before[e];
  }
  return both / std::max(was, 1.0);
}

struct Mean {
  double sum = 0;
  long count = 0;
  void add(double v) {
    if (std::isnan(v)) return;  // a constant map: no correlation
    sum += v;
    ++count;
  }
  double value() const { return count ? sum / count : std::nan(""); }
};

}  // namespace

MapChangeStats measure_map_change(TrajectorySource& source, const MapChangeSettings& s) {
  const TrajectoryInfo& info = source.info();
  const BlockGrid grid = make_block_grid(info.tokens, s.block_size);
  const int n = grid.num_video_blocks, B = info.batch, H = info.heads;
  const int64_t N = info.tokens.total_tokens();
  std::vector<int64_t> len(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) len[static_cast<size_t>(i)] = grid.video_block_end(i) - grid.video_block_begin(i);

  std::shared_ptr<Backend> backend = make_cpu_backend(s.threads);
  DenseReference reference(*backend, B, H, N);
  HostTensor out(DType::F32, B, N, H, info.head_dim);
  DenseBlockStats stats;

  Mean next_overlap, next_mass, next_smap, smap_constant;
  std::vector<Mean> frozen_share(s.ref_steps.size()), frozen_overlap(s.ref_steps.size());
  std::map<int, Maps> prev;                   // layer -> maps of its last step
  std::map<std::pair<int, int>, Maps> refs;   // (layer, ref step) -> maps
  std::vector<uint16_t> counts(static_cast<size_t>(n) * n);

  for (int step : info.steps) {
    for (int layer : info.layers) {
      HostTensor q, k, v;
      source.load(step, layer, q, k, v);
      MODDIT_CHECK(q.dtype == DType::F32 && k.dtype == DType::F32 && v.dtype == DType::F32,
                   "map change: the trajectory must be F32");
      reference.run(q, k, v, info.tokens, s.block_size, s.eta, out);
      compute_dense_block_stats(q, k, reference.lse(), info.tokens, grid, 0.f, s.eta, s.threads, stats);

      Maps now;
      now.step = step;
      for (int b = 0; b < B; ++b)
        for (int h = 0; h < H; ++h) {
          const double* m = stats.mass_of(b, h);
          now.mask.push_back(oracle_video_mask(m, grid, s.density));
          now.mass.emplace_back(m, m + static_cast<size_t>(n) * n);
          const int32_t* c = stats.below_eta_of(b, h);
          std::copy(c, c + static_cast<size_t>(n) * n, counts.begin());
          std::vector<float> smap(static_cast<size_t>(n) * n);
          core::counts_to_map(counts.data(), len, smap.data());
          now.smap.push_back(std::move(smap));
        }
      const bool sparse = step >= s.warmup;
      auto p = prev.find(layer);
      if (sparse && p != prev.end() && p->second.step == step - 1) {
        for (int h = 0; h < H; ++h) {
          Mean o, cm, cs;
          for (int b = 0; b < B; ++b) {
            const size_t i = static_cast<size_t>(b) * H + h;
            o.add(overlap(now.mask[i], p->second.mask[i]));
            cm.add(pearson_off_diagonal(p->second.mass[i].data(), now.mass[i].data(), n));
            const double c = pearson_off_diagonal(p->second.smap[i].data(), now.smap[i].data(), n);
            smap_constant.add(std::isnan(c) ? 1.0 : 0.0);
            if (!std::isnan(c)) cs.add(c);
          }
          next_overlap.add(o.value());
          next_mass.add(cm.value());
          if (cs.count) next_smap.add(cs.value());
        }
      }
      for (size_t r = 0; r < s.ref_steps.size(); ++r) {
        auto ref = refs.find({layer, s.ref_steps[r]});
        if (!sparse || ref == refs.end() || step <= s.ref_steps[r]) continue;
        for (int h = 0; h < H; ++h) {
          double o = 0, kept_ref = 0, kept_own = 0;
          for (int b = 0; b < B; ++b) {
            const size_t i = static_cast<size_t>(b) * H + h;
            o += overlap(now.mask[i], ref->second.mask[i]);
            // Recall pooled over the batch; the total mass cancels in the share.
            kept_ref += kept_mass(ref->second.mask[i].data(), stats.mass_of(b, h),
                                  stats.other_mass_of(b, h), n);
            kept_own += kept_mass(now.mask[i].data(), stats.mass_of(b, h),
                                  stats.other_mass_of(b, h), n);
          }
          frozen_overlap[r].add(o / B);
          frozen_share[r].add(kept_ref / std::max(kept_own, 1e-30));
        }
      }
      if (std::find(s.ref_steps.begin(), s.ref_steps.end(), step) != s.ref_steps.end())
        refs[{layer, step}] = now;
      prev[layer] = std::move(now);
    }
  }
  MapChangeStats r;
  r.next_overlap = next_overlap.value();
  r.next_mass_corr = next_mass.value();
  r.next_smap_corr = next_smap.value();
  r.smap_constant_share = smap_constant.value();
  for (size_t i = 0; i < s.ref_steps.size(); ++i) {
    r.frozen_recall_share.push_back(frozen_share[i].value());
    r.frozen_overlap.push_back(frozen_overlap[i].value());
  }
  return r;
}

}  // namespace eval
}  // namespace moddit
