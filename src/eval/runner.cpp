// run_evaluation(): every policy of a run over a trajectory, against the dense
// reference computed once per (step, layer). See include/moddit/eval.hpp.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <thread>

#include "eval/baselines.hpp"
#include "eval/dense_reference.hpp"
#include "eval/dense_stats.hpp"
#include "eval/equal_density.hpp"
#include "eval/metrics.hpp"
#include "eval/parallel.hpp"
#include "eval/run_summary.hpp"
#include "eval/svg_policy.hpp"
#include "eval/vdit_eval.hpp"
#include "moddit/backend.hpp"
#include "moddit/error.hpp"
#include "moddit/eval.hpp"
#include "moddit/session.hpp"
#include "moddit/size_limits.hpp"

namespace moddit {

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// One policy under evaluation: its Session (none for "dense", which is the
// reference itself) and typed handles for what the runner feeds or reads.
struct PolicyRun {
  EvalPolicySpec spec;
  std::shared_ptr<eval::RecordingPolicy> recorder;
  std::unique_ptr<Session> session;
  ModditPolicy* moddit = nullptr;
  eval::OraclePolicy* oracle = nullptr;
  eval::SvgPolicy* svg = nullptr;
  PolicyResult result;
  std::vector<uint8_t> last_masks;  // [B, H, n, n] of the latest call
};

std::shared_ptr<Policy> make_policy(const EvalPolicySpec& spec, int num_layers, int num_heads,
                                    PolicyRun& run) {
  const ModditConfig& c = spec.config;
  if (spec.kind == "dense") return std::make_shared<DensePolicy>();
  if (spec.kind == "moddit") {
    auto p = std::make_shared<ModditPolicy>(c, num_layers, num_heads);
    run.moddit = p.get();
    return p;
  }
  if (spec.kind == "oracle") {
    auto p = std::make_shared<eval::OraclePolicy>(c.target_density, c.warmup_steps);
    run.oracle = p.get();
    return p;
  }
  if (spec.kind == "svg") {
    auto p = std::make_shared<eval::SvgPolicy>(c.target_density, c.warmup_steps);
    run.svg = p.get();
    return p;
  }
  if (spec.kind == "window")
    return std::make_shared<eval::StaticMaskPolicy>(core::StaticMaskKind::Window,
                                                    c.target_density, c.warmup_steps);
  if (spec.kind == "radial")
    return std::make_shared<eval::StaticMaskPolicy>(core::StaticMaskKind::Radial,
                                                    c.target_density, c.warmup_steps);
  throw Error("unknown policy '" + spec.kind + "'");
}

HostTensor as_f32(HostTensor&& t) {
  if (t.dtype == DType::F32) return std::move(t);
  return t.to(DType::F32);
}

// Per-head density, recall and rel_l2 of one call (pooled over the batch) from
// the video masks it ran [B, H, n, n]; `out` null = the reference itself. With
// `oracle_same_density`, also the oracle's recall at each head's own density.
void measure_heads(const std::vector<uint8_t>& masks, const eval::DenseBlockStats& stats,
                   const BlockGrid& grid, const TokenLayout& tokens, const HostTensor* out,
                   const HostTensor& out_ref, bool oracle_same_density, int threads,
                   CallMetrics& cm) {
  const int B = stats.batch, H = stats.heads, n = stats.n;
  const size_t nn = static_cast<size_t>(n) * n;
  const double rows = double(B) * double(tokens.video_tokens());
  cm.heads.assign(H, HeadMetrics{});
  if (oracle_same_density) cm.oracle_recall_same_density.assign(H, 0.0);
  eval::parallel_for(H, threads, [&](int h) {
    double dens = 0.0, kept = 0.0, kept_oracle = 0.0;
    for (int b = 0; b < B; ++b) {
      const uint8_t* m = masks.data() + (static_cast<size_t>(b) * H + h) * nn;
      const double d = video_mask_density(m, grid);
      dens += d;
      kept += eval::kept_mass(m, stats.mass_of(b, h), stats.other_mass_of(b, h), n);
      if (oracle_same_density) {
        const auto om = eval::oracle_video_mask(stats.mass_of(b, h), grid, d);
        kept_oracle += eval::kept_mass(om.data(), stats.mass_of(b, h), stats.other_mass_of(b, h), n);
      }
    }
    double err2 = 0.0, ref2 = 0.0;
    if (out)
      eval::video_output_error(*out, out_ref, tokens.video_begin(), tokens.video_tokens(), h, err2,
                               ref2);
    // A non-finite output (from finite inputs: a backend bug) is refused, not
    // scored: a NaN norm would compare as a perfect 0.
    MODDIT_CHECK(std::isfinite(err2) && std::isfinite(ref2), "eval: head ", h,
                 ": the output or the dense reference is not finite");
    HeadMetrics& hm = cm.heads[h];
    hm.density = dens / B;
    hm.recall = kept / rows;
    hm.rel_l2 = ref2 > 0 ? std::sqrt(err2 / ref2) : (err2 > 0 ? 1.0 : 0.0);
    if (oracle_same_density) cm.oracle_recall_same_density[h] = kept_oracle / rows;
  });
}

// The maps of one (step, layer, head) for a picture (batch item 0).
EvalSnapshot make_snapshot(int step, int layer, int h, const BlockGrid& grid,
                           const eval::DenseBlockStats& stats, const PolicyRun* moddit_run,
                           const PolicyRun* oracle_run) {
  const int n = grid.num_video_blocks, fv = grid.first_video_block;
  EvalSnapshot s;
  s.step = step;
  s.layer = layer;
  s.head = h;
  s.n = n;
  const int32_t* below = stats.below_eta_of(0, h);
  s.sparsity.resize(static_cast<size_t>(n) * n);
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j)
      s.sparsity[i * n + j] =
          float(below[i * n + j]) / (float(grid.block_len(fv + i)) * grid.block_len(fv + j));
  const size_t off = static_cast<size_t>(h) * n * n;
  if (moddit_run) {
    s.fitted = moddit_run->moddit->fitted_map(layer, 0, h);
    s.moddit_mask.assign(moddit_run->last_masks.begin() + off,
                         moddit_run->last_masks.begin() + off + n * n);
  }
  if (oracle_run)
    s.oracle_mask.assign(oracle_run->last_masks.begin() + off,
                         oracle_run->last_masks.begin() + off + n * n);
  return s;
}

}  // namespace

EvalResult run_evaluation(TrajectorySource& source, const EvalSettings& settings,
                          const EvalProgress& progress) {
  const auto t_start = Clock::now();
  MODDIT_CHECK(!settings.policies.empty(), "eval: no policies given");
  const ModditConfig& cfg = settings.config;
  cfg.validate();
  for (const EvalPolicySpec& p : settings.policies)
    MODDIT_CHECK(p.config.block_size == cfg.block_size,
                 "eval: policy ", p.label, " has block_size ", p.config.block_size,
                 " but the run uses ", cfg.block_size, " (metrics need one block grid)");

  const TrajectoryInfo& info = source.info();
  EvalResult res;
  res.info = info;
  res.settings = settings;
  const BlockGrid grid = make_block_grid(info.tokens, cfg.block_size);
  const int n = grid.num_video_blocks;
  res.num_video_blocks = n;
  for (const EvalPolicySpec& p : settings.policies)
    MODDIT_CHECK(p.kind != "moddit" || p.config.top_k <= 3 * n - 1, "eval: policy ", p.label,
                 ": top_k = ", p.config.top_k, " is more than the 3n-1 = ", 3 * n - 1,
                 " lines of this trajectory's ", n, "x", n, " video block grid");
  res.threads = eval::resolve_threads(settings.threads);
  res.hardware_threads = std::thread::hardware_concurrency();
  res.sparse_from_step = cfg.warmup_steps;

  const int first_step =
      settings.first_step >= 0 ? settings.first_step : std::max(0, cfg.warmup_steps - 2);
  bool has_moddit = false;
  for (const EvalPolicySpec& p : settings.policies) has_moddit |= p.kind == "moddit";
  MODDIT_CHECK(!has_moddit || first_step <= std::max(0, cfg.warmup_steps - 2),
               "eval: first step ", first_step, " skips MOD-DiT's reference steps ",
               cfg.warmup_steps - 2, " and ", cfg.warmup_steps - 1,
               " (first_step must be <= warmup_steps - 2)");
  for (int s : info.steps)
    if (s >= first_step) res.steps.push_back(s);
  MODDIT_CHECK(!res.steps.empty(), "eval: the trajectory has no step >= ", first_step,
               " (recorded steps end at ",
               info.steps.empty() ? -1 : info.steps.back(), ")");
  res.layers = info.layers;
  if (settings.max_layers > 0 && static_cast<int>(res.layers.size()) > settings.max_layers)
    res.layers.resize(settings.max_layers);
  MODDIT_CHECK(!res.layers.empty(), "eval: the trajectory has no layers");

  const int B = info.batch, H = info.heads, D = info.head_dim;
  const int64_t N = info.tokens.total_tokens();
  // q, k, v, the reference and a policy's output, f32, held at once.
  check_fits_in_memory(uint64_t(checked_product({5, B, N, H, D, 4}, INT64_MAX, "eval: tensor bytes")),
                       "eval: the tensors of one (step, layer) (5 x [B, N, H, D] f32)");
  const int num_layers = res.layers.back() + 1;

  std::shared_ptr<Backend> backend = make_cpu_backend(res.threads);
  res.backend = backend->name();
  SessionOptions opts;
  opts.num_steps = info.num_steps;
  opts.num_layers = num_layers;
  opts.num_heads = H;
  opts.head_dim = D;
  opts.block_size = cfg.block_size;

  std::vector<PolicyRun> runs(settings.policies.size());
  std::vector<std::string> vdit_notes;
  for (size_t i = 0; i < runs.size(); ++i) {
    PolicyRun& r = runs[i];
    r.spec = settings.policies[i];
    r.result.kind = r.spec.kind;
    r.result.label = r.spec.label;
    std::shared_ptr<Policy> inner;
    if (r.spec.kind == "sparse_vdit") {  // searches (or loads) its config: src/eval/vdit_eval.hpp
      vdit_notes.emplace_back();
      inner = eval::make_vdit_eval_policy(source, r.spec.config, r.spec.config.target_density,
                                          &vdit_notes.back(), settings.vdit_config, res.threads,
                                          settings.vdit_calibration,
                                          settings.synthetic ? &*settings.synthetic : nullptr,
                                          res.steps, res.layers, &res.settings.vdit_measured);
    } else {
      inner = make_policy(r.spec, num_layers, H, r);
    }
    r.recorder = std::make_shared<eval::RecordingPolicy>(inner);
    if (r.spec.kind != "dense")
      r.session = std::make_unique<Session>(info.tokens, opts, backend, r.recorder);
  }
  PolicyRun* moddit_run = nullptr;
  PolicyRun* oracle_run = nullptr;
  for (PolicyRun& r : runs) {
    if (r.moddit && !moddit_run) moddit_run = &r;
    if (r.oracle && !oracle_run) oracle_run = &r;
  }

  // Pictures: which (step, layer, heads).
  std::vector<int> snap_steps = settings.snapshot_steps;
  if (snap_steps.empty()) {
    auto first_sparse = std::find_if(res.steps.begin(), res.steps.end(),
                                     [&](int s) { return s >= res.sparse_from_step; });
    if (first_sparse != res.steps.end()) snap_steps.push_back(*first_sparse);
    if (snap_steps.empty() || snap_steps.back() != res.steps.back())
      snap_steps.push_back(res.steps.back());
  }
  const int snap_layer = settings.snapshot_layer >= 0 ? settings.snapshot_layer : res.layers.back();
  std::vector<int> snap_heads;
  for (int h : settings.snapshot_heads)
    if (h >= 0 && h < H) snap_heads.push_back(h);

  HostTensor out_ref(DType::F32, B, N, H, D), out_pol(DType::F32, B, N, H, D);
  eval::DenseReference reference(*backend, B, H, N);
  eval::DenseBlockStats stats;
  const float eta = static_cast<float>(cfg.eta);

  const int total = static_cast<int>(res.steps.size() * res.layers.size());
  int done = 0;
  if (progress) progress(0, total);
  for (int step : res.steps) {
    for (PolicyRun& r : runs)
      if (r.session) r.session->begin_step(step);
    for (int layer : res.layers) {
      auto t = Clock::now();
      HostTensor q, k, v;
      source.load(step, layer, q, k, v);
      // Any source (a file refuses them itself): NaN/Inf inputs are never scored.
      const std::string where = "eval: step " + std::to_string(step) + " layer " + std::to_string(layer);
      check_finite(q, where + ": q");
      check_finite(k, where + ": k");
      check_finite(v, where + ": v");
      q = as_f32(std::move(q));
      k = as_f32(std::move(k));
      v = as_f32(std::move(v));
      MODDIT_CHECK(q.shape[0] == B && q.shape[1] == N && q.shape[2] == H && q.shape[3] == D,
                   "eval: step ", step, " layer ", layer, ": q has shape [", q.shape[0], ", ",
                   q.shape[1], ", ", q.shape[2], ", ", q.shape[3], "], the trajectory says [",
                   B, ", ", N, ", ", H, ", ", D, "]");
      res.load_seconds += seconds_since(t);

      // The dense reference, once: output and row LSE.
      t = Clock::now();
      reference.run(q, k, v, info.tokens, cfg.block_size, eta, out_ref);
      const double ref_seconds = seconds_since(t);
      res.reference_seconds += ref_seconds;

      t = Clock::now();
      eval::compute_dense_block_stats(q, k, reference.lse(), info.tokens, grid, 0.f, eta, res.threads,
                                      stats);
      stats.step = step;
      stats.layer = layer;
      res.stats_seconds += seconds_since(t);

      for (PolicyRun& r : runs) {
        CallMetrics cm;
        cm.step = step;
        cm.layer = layer;
        const HostTensor* out = &out_ref;
        if (!r.session) {
          cm.kind = "dense";
          cm.seconds = ref_seconds;
          r.last_masks.assign(static_cast<size_t>(B) * H * n * n, 1);
        } else {
          if (r.oracle) r.oracle->set_dense_stats(&stats);
          if (r.svg) r.svg->set_inputs(&q, &k, &v);
          r.session->attention(layer, q.view(), k.view(), v.view(), out_pol.view(), 0);
          const CallRecord& rec = r.session->history().back();
          cm.kind = to_string(rec.kind);
          cm.seconds = rec.seconds;
          cm.overhead_seconds = rec.overhead_seconds;
          r.last_masks = eval::video_masks_of_plan(r.recorder->last_plan(), grid, B, H);
          if (step >= res.sparse_from_step)
            eval::add_head_modes(r.recorder->last_plan(), H, r.result.head_modes);
          out = &out_pol;
          if (r.oracle) r.oracle->set_dense_stats(nullptr);
          if (r.svg) r.svg->set_inputs(nullptr, nullptr, nullptr);
        }
        measure_heads(r.last_masks, stats, grid, info.tokens, out == &out_ref ? nullptr : out,
                      out_ref, r.moddit != nullptr, res.threads, cm);
        if (settings.keep_masks) cm.video_masks = r.last_masks;
        r.result.calls.push_back(std::move(cm));
      }

      if (layer == snap_layer &&
          std::find(snap_steps.begin(), snap_steps.end(), step) != snap_steps.end()) {
        for (int h : snap_heads)
          res.snapshots.push_back(make_snapshot(step, layer, h, grid, stats, moddit_run, oracle_run));
      }
      ++done;
      if (progress) progress(done, total);
    }
  }

  for (PolicyRun& r : runs) {
    if (r.moddit) r.result.fits = r.moddit->fits();
    eval::summarize_policy(r.result, res.sparse_from_step, res.layers, H);
    double heads = 0;
    for (const auto& m : r.result.head_modes) heads += m.second;
    for (auto& m : r.result.head_modes) m.second /= heads;
    res.policies.push_back(std::move(r.result));
  }
  const int sweep_runs = eval::add_equal_density_view(res, source);
  res.notes = eval::standard_notes(res, first_step);
  if (settings.equal_density) {
    char buf[96];
    std::snprintf(buf, sizeof buf, "%.4g (the at_target entries and the plots): its own means where it is within %.4g",
                  settings.target_density, kDensityTolerance);
    res.notes.push_back(
        std::string("Equal density: every policy's recall and rel_l2 at the target density ") +
        buf + " of the target, else interpolated linearly between its nearest runs on either side "
        "of the target (" + std::to_string(sweep_runs) + " extra run(s) at other requested "
        "densities made here), else its run nearest the target, labelled 'own density' (never "
        "extrapolated). The oracle at the target is the bound.");
  }
  res.off_target = eval::off_target_notes(res);
  for (const std::string& note : res.off_target) res.notes.push_back(note);
  for (const std::string& note : vdit_notes) res.notes.push_back(note);
  for (int ref_step : {cfg.warmup_steps - 2, cfg.warmup_steps - 1})
    if (has_moddit && ref_step >= 0 &&
        std::find(res.steps.begin(), res.steps.end(), ref_step) == res.steps.end())
      res.notes.push_back("The trajectory lacks step " + std::to_string(ref_step) +
                          ", one of MOD-DiT's two reference steps: its masks are not "
                          "representative.");
  if (info.source.find("synthetic") != std::string::npos)
    res.notes.push_back(
        "The trajectory is synthetic (DESIGN.md 6): a procedural stand-in for a real video DiT, "
        "not a measurement of one.");
  res.wall_seconds = seconds_since(t_start);
  return res;
}

}  // namespace moddit
