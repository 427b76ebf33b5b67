// The offline Sparse-vDiT search (paper Eq. 2-3, Algorithm 1; DESIGN.md 4).
//
// Per (step, layer) of the calibration trajectories: dense output O0, then every
// candidate mode/parameter on all heads at once (one launch per candidate), and
// per head nMSE = MSE(O_i, O0) / mean square of the layer's dense output (all
// heads, real rows; text padding rows excluded). Normalising by the layer rather
// than by the head keeps the paper's intent for skip: a head whose output is
// small compared to its layer is cheap to drop (per-head normalisation would give
// every skipped head nMSE = 1 exactly). The trajectory is dense Q/K/V from one
// fixed run, so the paper's "along the sparsified trajectory" is approximated by
// the per-step greedy decision on the recorded Q/K/V.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "moddit/error.hpp"
#include "core/parallel.hpp"
#include "moddit/sparse_vdit.hpp"
#include "vdit/candidate_runner.hpp"

namespace moddit {

namespace {

// The candidate list shared by every head; stripe candidates get their head's
// own key blocks filled in per (step, layer).
std::vector<VditHeadChoice> candidate_templates(const VditSearchOptions& o) {
  std::vector<VditHeadChoice> out;
  for (VditMode m : o.modes) {
    auto add = [&](int window) {
      VditHeadChoice c;
      c.mode = m;
      c.window = window;
      out.push_back(c);
    };
    switch (m) {
      case VditMode::Skip: add(0); break;
      case VditMode::Diagonal:
        for (int w : o.diagonal_windows) add(w);
        break;
      case VditMode::MultiDiagonal:
        for (int w : o.multi_diagonal_windows) add(w);
        break;
      case VditMode::VerticalStripe:
        for (int k : o.stripe_counts) add(k);  // window temporarily holds the count
        break;
      case VditMode::Full: break;
    }
  }
  return out;
}

bool same_shape(const TrajectoryInfo& a, const TrajectoryInfo& b) {
  const TokenLayout &x = a.tokens, &y = b.tokens;
  return x.frames == y.frames && x.height == y.height && x.width == y.width &&
         x.text_tokens == y.text_tokens && x.text_position == y.text_position &&
         a.heads == b.heads && a.head_dim == b.head_dim && a.num_steps == b.num_steps &&
         a.layers == b.layers;
}

struct LayerData {
  HostTensor q, k, v, dense;
  double layer_ms = 0;            // mean square of the dense output over real rows, all heads
  std::vector<double> head_ms;    // per head
};

// Sum of squares per head over real rows (padding rows excluded).
std::vector<double> head_sq(const HostTensor& t, const HostTensor* ref, const TokenLayout& tokens) {
  const int64_t B = t.shape[0], N = t.shape[1], H = t.shape[2], D = t.shape[3];
  const int64_t pb = tokens.pad_begin(), pe = tokens.pad_end();
  std::vector<double> out(size_t(H), 0.0);
  const float* a = t.f32();
  const float* r = ref ? ref->f32() : nullptr;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t n = 0; n < N; ++n) {
      if (n >= pb && n < pe) continue;
      for (int64_t h = 0; h < H; ++h) {
        const int64_t off = ((b * N + n) * H + h) * D;
        double s = 0;
        for (int64_t d = 0; d < D; ++d) {
          const double e = r ? double(a[off + d]) - r[off + d] : a[off + d];
          s += e * e;
        }
        out[size_t(h)] += s;
      }
    }
  return out;
}

int64_t real_rows(const TokenLayout& t) { return t.total_tokens() - (t.pad_end() - t.pad_begin()); }

// Dense attention mass per (head, video key block) from a strided sample of video
// query rows: the ranking that chooses vertical stripes.
void add_stripe_mass(const LayerData& d, const TokenLayout& tokens, const BlockGrid& grid,
                     int sample_rows, std::vector<std::vector<double>>& mass) {
  const int64_t B = d.q.shape[0], N = d.q.shape[1], H = d.q.shape[2], D = d.q.shape[3];
  const int64_t v0 = tokens.video_begin(), V = tokens.video_tokens();
  const int64_t pb = tokens.pad_begin(), pe = tokens.pad_end();
  const int64_t stride = std::max<int64_t>(1, V / sample_rows);
  const float scale = 1.0f / std::sqrt(float(D));
  std::vector<int> video_block(static_cast<size_t>(N), -1);
  for (int v = 0; v < grid.num_video_blocks; ++v)
    for (int64_t t = grid.video_block_begin(v); t < grid.video_block_end(v); ++t)
      video_block[size_t(v0 + t)] = v;
  const float *Q = d.q.f32(), *K = d.k.f32();
  // Work units: (item, head, piece of the sampled rows), a fixed number of pieces
  // so that the sums (each unit its own, added in unit order) do not depend on
  // the thread count.
  std::vector<int64_t> rows;
  for (int64_t i = v0 + stride / 2; i < v0 + V; i += stride) rows.push_back(i);
  const int64_t pieces = std::min<int64_t>(16, std::max<int64_t>(1, int64_t(rows.size())));
  const int64_t units = B * H * pieces;
  const size_t n = size_t(grid.num_video_blocks);
  std::vector<std::vector<double>> part(size_t(units), std::vector<double>(n, 0.0));
  core::parallel_for(int(units), 1, [&](int u0, int u1) {
    std::vector<float> score(static_cast<size_t>(N));
    for (int u = u0; u < u1; ++u) {
      const int64_t piece = u % pieces, h = (u / pieces) % H, b = u / pieces / H;
      const size_t r0 = size_t(int64_t(rows.size()) * piece / pieces);
      const size_t r1 = size_t(int64_t(rows.size()) * (piece + 1) / pieces);
      std::vector<double>& acc = part[size_t(u)];
      for (size_t r = r0; r < r1; ++r) {
        const float* qi = Q + ((b * N + rows[r]) * H + h) * D;
        float mx = -std::numeric_limits<float>::infinity();
        for (int64_t j = 0; j < N; ++j) {
          if (j >= pb && j < pe) continue;
          const float* kj = K + ((b * N + j) * H + h) * D;
          float s = 0;
          for (int64_t e = 0; e < D; ++e) s += qi[e] * kj[e];
          score[size_t(j)] = s * scale;
          mx = std::max(mx, score[size_t(j)]);
        }
        double z = 0;
        for (int64_t j = 0; j < N; ++j)
          if (!(j >= pb && j < pe)) z += std::exp(double(score[size_t(j)] - mx));
        for (int64_t j = 0; j < N; ++j)
          if (video_block[size_t(j)] >= 0)
            acc[size_t(video_block[size_t(j)])] += std::exp(double(score[size_t(j)] - mx)) / z;
      }
    }
  });
  for (int64_t u = 0; u < units; ++u) {
    const int64_t h = (u / pieces) % H;
    for (size_t v = 0; v < n; ++v) mass[size_t(h)][v] += part[size_t(u)][v];
  }
}

std::vector<int32_t> top_blocks(const std::vector<double>& mass, int count) {
  std::vector<int32_t> idx(mass.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(),
                   [&](int32_t a, int32_t b) { return mass[size_t(a)] > mass[size_t(b)]; });
  idx.resize(std::min<size_t>(idx.size(), size_t(count)));
  std::sort(idx.begin(), idx.end());
  return idx;
}

}  // namespace

VditLossTable measure_vdit_candidates(const std::vector<TrajectorySource*>& sources,
                                      Backend& backend, const VditSearchOptions& options,
                                      const VditProgress& progress) {
  options.validate();
  MODDIT_CHECK(!sources.empty(), "search: no calibration trajectory");
  const TrajectoryInfo& info = sources[0]->info();
  for (size_t s = 1; s < sources.size(); ++s)
    MODDIT_CHECK(same_shape(info, sources[s]->info()), "search: calibration trajectory ", s + 1,
                 " (", sources[s]->info().tokens.describe(), ", ", sources[s]->info().heads,
                 " heads) differs in shape from the first (", info.tokens.describe(), ", ",
                 info.heads, " heads)");
  for (size_t l = 0; l < info.layers.size(); ++l)
    MODDIT_CHECK(info.layers[l] == static_cast<int>(l),
                 "search: the trajectory must record every layer 0..L-1 (layer ", l, " missing)");
  // Steps recorded by every source.
  std::vector<int> steps;
  for (int s : info.steps)
    if (s >= options.first_step) steps.push_back(s);
  for (size_t s = 1; s < sources.size(); ++s) {
    std::vector<int> both;
    const auto& o = sources[s]->info().steps;
    std::set_intersection(steps.begin(), steps.end(), o.begin(), o.end(), std::back_inserter(both));
    steps = both;
  }
  MODDIT_CHECK(!steps.empty(), "search: the calibration trajectories share no recorded step >= ",
               options.first_step);

  VditLossTable table;
  table.shape.num_layers = static_cast<int>(info.layers.size());
  table.shape.num_heads = info.heads;
  table.shape.head_dim = info.head_dim;
  table.shape.num_steps = info.num_steps;
  table.shape.block_size = options.block_size;
  table.shape.tokens = info.tokens;
  table.options = options;
  for (TrajectorySource* s : sources) table.calibration.push_back(s->info().source);
  table.steps = steps;
  table.layers = info.layers;

  const TokenLayout& tokens = info.tokens;
  const BlockGrid grid = make_block_grid(tokens, options.block_size);
  const int H = info.heads, n = grid.num_video_blocks;
  // Candidates that compute every block are full under another name: dropped.
  std::vector<VditHeadChoice> templates;
  for (const VditHeadChoice& t : candidate_templates(options))
    if (t.mode == VditMode::VerticalStripe ? t.window < n
                                           : vdit_density(t, tokens, grid) < 1.0)
      templates.push_back(t);
  const int total = static_cast<int>(steps.size() * info.layers.size());
  int done = 0;
  std::vector<LayerData> data(sources.size());
  HostTensor out;
  vdit::CandidateRunner runner(backend, tokens, options.block_size, sources.size());

  for (int step : steps) {
    std::vector<std::vector<std::vector<VditScored>>> step_scores;
    for (int layer : info.layers) {
      // Load, dense reference, normalisers.
      std::vector<std::vector<double>> mass(size_t(H), std::vector<double>(size_t(n), 0.0));
      for (size_t s = 0; s < sources.size(); ++s) {
        LayerData& d = data[s];
        sources[s]->load(step, layer, d.q, d.k, d.v);
        if (d.q.dtype != DType::F32) d.q = d.q.to(DType::F32);
        if (d.k.dtype != DType::F32) d.k = d.k.to(DType::F32);
        if (d.v.dtype != DType::F32) d.v = d.v.to(DType::F32);
        runner.load(s, d.q, d.k, d.v);
        runner.run(s, nullptr, d.dense);
        d.head_ms = head_sq(d.dense, nullptr, tokens);
        const double denom = double(d.q.shape[0]) * real_rows(tokens) * info.head_dim;
        double sum = 0;
        for (double& x : d.head_ms) {
          x /= denom;
          sum += x;
        }
        d.layer_ms = std::max(sum / H, std::numeric_limits<double>::min());
        if (std::find(options.modes.begin(), options.modes.end(), VditMode::VerticalStripe) !=
            options.modes.end())
          add_stripe_mass(d, tokens, grid, options.stripe_sample_rows, mass);
      }

      std::vector<std::vector<VditScored>> heads(static_cast<size_t>(H));
      for (const VditHeadChoice& t : templates) {
        std::vector<VditHeadChoice> choices(size_t(H), t);
        if (t.mode == VditMode::VerticalStripe)
          for (int h = 0; h < H; ++h) {
            choices[size_t(h)].stripes = top_blocks(mass[size_t(h)], t.window);
            choices[size_t(h)].window = 0;
          }
        std::vector<double> nmse(size_t(H), 0.0);
        if (t.mode == VditMode::Skip) {
          for (const LayerData& d : data)
            for (int h = 0; h < H; ++h) nmse[size_t(h)] += d.head_ms[size_t(h)] / d.layer_ms;
        } else {
          std::vector<const VditHeadChoice*> ptrs;
          for (const auto& c : choices) ptrs.push_back(&c);
          BlockLayout layout;
          for (size_t s = 0; s < data.size(); ++s) {
            LayerData& d = data[s];
            // Sources may differ in batch size: the layout follows each one.
            if (layout.batch != d.q.shape[0])
              layout = vdit_group_layout(ptrs, static_cast<int>(d.q.shape[0]), tokens, grid);
            runner.run(s, &layout, out);
            const std::vector<double> err = head_sq(out, &d.dense, tokens);
            const double denom = double(d.q.shape[0]) * real_rows(tokens) * info.head_dim;
            for (int h = 0; h < H; ++h) nmse[size_t(h)] += err[size_t(h)] / denom / d.layer_ms;
          }
        }
        for (int h = 0; h < H; ++h) {
          VditScored sc;
          sc.choice = choices[size_t(h)];
          sc.nmse = nmse[size_t(h)] / double(sources.size());
          sc.density = vdit_density(sc.choice, tokens, grid);
          heads[size_t(h)].push_back(std::move(sc));
        }
      }
      step_scores.push_back(std::move(heads));
      if (progress) progress(++done, total);
    }
    table.scored.push_back(std::move(step_scores));
  }
  return table;
}

namespace {
// Index of the chosen candidate, or -1 for full (paper Eq. 3).
int choose(const std::vector<VditScored>& cands, double lambda, double eps) {
  int best = -1;
  double best_loss = std::numeric_limits<double>::infinity();
  bool any_ok = false;
  for (size_t i = 0; i < cands.size(); ++i) {
    const double L = cands[i].nmse + lambda * cands[i].density;
    any_ok = any_ok || L <= eps;
    // Ties go to the sparser candidate.
    if (L < best_loss || (L == best_loss && best >= 0 && cands[i].density < cands[size_t(best)].density)) {
      best_loss = L;
      best = static_cast<int>(i);
    }
  }
  return any_ok ? best : -1;
}
}  // namespace

VditConfig decide_vdit(const VditLossTable& table, double lambda, double eps) {
  VditConfig c;
  c.shape = table.shape;
  c.search = table.options;
  c.search.lambda = lambda;
  c.search.eps = eps;
  c.search.validate();
  c.calibration = table.calibration;
  c.steps = table.steps;
  for (const auto& step : table.scored) {
    std::vector<std::vector<VditHeadChoice>> layers;
    for (const auto& layer : step) {
      std::vector<VditHeadChoice> heads;
      for (const auto& cands : layer) {
        const int i = choose(cands, lambda, eps);
        heads.push_back(i < 0 ? VditHeadChoice{} : cands[size_t(i)].choice);
      }
      layers.push_back(std::move(heads));
    }
    c.choices.push_back(std::move(layers));
  }
  return c;
}

VditConfig search_vdit(const std::vector<TrajectorySource*>& sources, Backend& backend,
                       const VditSearchOptions& options, const VditProgress& progress) {
  return decide_vdit(measure_vdit_candidates(sources, backend, options, progress), options.lambda,
                     options.eps);
}

}  // namespace moddit
