#include "eval/vdit_eval.hpp"

#include <algorithm>
#include <cstdio>
#include <map>
#include <mutex>

#include "moddit/backend.hpp"
#include "moddit/error.hpp"
#include "moddit/eval.hpp"

static_assert(moddit::kVditDensityTolerance == moddit::kDensityTolerance,
              "one density tolerance for the search and the evaluation");

namespace moddit {
namespace eval {

VditEvalPolicy::VditEvalPolicy(VditConfig config, int warmup_steps)
    : inner_(std::move(config)), warmup_(warmup_steps) {}

Plan VditEvalPolicy::plan(const CallInfo& call) {
  if (call.step < warmup_) return dense_plan(call.num_heads);
  return inner_.plan(call);
}

void add_head_modes(const Plan& plan, int num_heads, std::map<std::string, double>& counts) {
  int covered = 0;
  for (const HeadGroup& g : plan.groups) {
    counts[g.label] += double(g.heads.size());
    covered += static_cast<int>(g.heads.size());
  }
  if (covered < num_heads) counts["skip"] += double(num_heads - covered);
}

VditSearchOptions vdit_eval_search_options(const TokenLayout& tokens, int block_size,
                                           int first_step) {
  VditSearchOptions o;
  o.block_size = block_size;
  o.first_step = std::max(0, first_step);
  const int n = make_block_grid(tokens, block_size).num_video_blocks;
  o.diagonal_windows.clear();
  for (int w : {0, 1, 2, 3, 4, 6, 8, 12, 16})
    if (w < n) o.diagonal_windows.push_back(w);
  o.multi_diagonal_windows.clear();
  for (int w : {0, 8, 32, 128})
    if (w < tokens.tokens_per_frame()) o.multi_diagonal_windows.push_back(w);
  o.stripe_counts.clear();
  for (int k : {1, 2, 3, 4, 6, 8})
    if (k < n) o.stripe_counts.push_back(k);
  if (o.stripe_counts.empty()) o.stripe_counts = {1};
  return o;
}

std::vector<std::vector<double>> vdit_step_weights(const std::vector<int>& config_steps,
                                                   int num_layers,
                                                   const std::vector<int>& scored_steps,
                                                   const std::vector<int>& scored_layers,
                                                   int warmup_steps) {
  std::vector<std::vector<double>> w(config_steps.size(),
                                     std::vector<double>(size_t(std::max(0, num_layers)), 0.0));
  for (int s : scored_steps) {
    if (s < warmup_steps) continue;  // dense there (VditEvalPolicy)
    auto it = std::upper_bound(config_steps.begin(), config_steps.end(), s);
    if (it == config_steps.begin()) continue;  // before the first searched step: full
    auto& row = w[size_t(it - config_steps.begin()) - 1];
    for (int l : scored_layers)
      if (l >= 0 && l < num_layers) row[size_t(l)] += 1.0;
  }
  return w;
}

namespace {

// A held-out calibration item of the generator that made the evaluated
// trajectory: the same spec (the same synthetic "model": head kinds and
// projections depend on the seed only) with one more batch item, of which only
// the extra item is used (another "prompt": scene, noise and text depend on it).
std::unique_ptr<TrajectorySource> synthetic_twin(const SyntheticSpec& spec, int* item_out) {
  SyntheticSpec s = spec;
  s.batch = spec.batch + 1;
  *item_out = spec.batch;
  return drop_batch_items(make_synthetic(s), spec.batch);
}

std::mutex cache_mutex;
std::map<std::string, std::shared_ptr<const VditLossTable>> table_cache;

}  // namespace

std::shared_ptr<VditEvalPolicy> make_vdit_eval_policy(TrajectorySource& evaluated,
                                                      const ModditConfig& run,
                                                      double target_density, std::string* note,
                                                      const std::string& config_path,
                                                      int threads, const std::string& calibration,
                                                      const SyntheticSpec* synthetic,
                                                      const std::vector<int>& scored_steps,
                                                      const std::vector<int>& scored_layers,
                                                      std::shared_ptr<const VditLossTable>* measured) {
  const TrajectoryInfo& info = evaluated.info();
  if (!config_path.empty()) {
    VditConfig c = load_vdit_config(config_path);
    c.check_matches(info.tokens, run.block_size, info.heads, info.head_dim, info.num_steps);
    if (note)
      *note = "sparse_vdit: config " + config_path + " (mean density over its steps " +
              std::to_string(c.mean_density()) + "; the --density target does not apply)";
    return std::make_shared<VditEvalPolicy>(std::move(c), run.warmup_steps);
  }
  const int first_step = std::max(0, run.warmup_steps - 2);
  int item = 0;
  std::unique_ptr<TrajectorySource> twin, file;
  std::string what;
  if (calibration == "synthetic" || (calibration.empty() && synthetic)) {
    MODDIT_CHECK(synthetic, "sparse_vdit: calibration 'synthetic' needs the generator's settings "
                 "(only a run on the generator, `moddit demo` or `eval --synthetic`, has them); give a "
                 "calibration file or 'self'");
    twin = synthetic_twin(*synthetic, &item);
    what = "batch item " + std::to_string(item) + " of the same synthetic generator (" +
           synthetic->describe() + "; held out: another scene, not the evaluated one)";
  } else if (calibration.empty() || calibration == "self") {
    what = std::string("the evaluated trajectory itself (in-sample") +
           (calibration.empty() ? "; no held-out calibration data given" : "") + ")";
  } else {
    file = open_trajectory(calibration);
    const TrajectoryInfo& ci = file->info();
    MODDIT_CHECK(ci.tokens.describe() == info.tokens.describe() && ci.heads == info.heads &&
                     ci.head_dim == info.head_dim,
                 "sparse_vdit: calibration file ", calibration, " has another geometry (",
                 ci.tokens.describe(), ", ", ci.heads, " heads x ", ci.head_dim,
                 ") than the evaluated trajectory (", info.tokens.describe(), ", ", info.heads,
                 " heads x ", info.head_dim, ")");
    what = "the calibration file " + calibration + " (held out)";
  }
  TrajectorySource& calib = twin ? *twin : file ? *file : evaluated;
  const std::string key = twin ? synthetic->describe() + "|bs" + std::to_string(run.block_size) +
                                     "|from" + std::to_string(first_step)
                               : std::string();
  // Only a synthetic twin is cached: its content is a function of its settings
  // (the key). A file's "source" metadata does not identify its tensors (two
  // recordings of one model share it), so a file is measured every time.
  // A table measured for this run is reused if it was searched from the same step
  // with the same block size (a policy entry may override the warm-up).
  std::shared_ptr<const VditLossTable> table = measured ? *measured : nullptr;
  if (table && (table->options.first_step != first_step || table->options.block_size != run.block_size))
    table = nullptr;
  if (!table && twin) {
    std::lock_guard<std::mutex> lock(cache_mutex);
    auto it = table_cache.find(key);
    if (it != table_cache.end()) table = it->second;
  }
  if (!table) {
    std::shared_ptr<Backend> cpu = make_cpu_backend(threads);
    auto t = std::make_shared<VditLossTable>(measure_vdit_candidates(
        {&calib}, *cpu, vdit_eval_search_options(info.tokens, run.block_size, first_step)));
    table = t;
    if (twin) {
      std::lock_guard<std::mutex> lock(cache_mutex);
      table_cache[key] = t;
    }
  }
  if (measured) *measured = table;
  const std::vector<std::vector<double>> weights = vdit_step_weights(
      table->steps, static_cast<int>(table->layers.size()),
      scored_steps.empty() ? info.steps : scored_steps,
      scored_layers.empty() ? info.layers : scored_layers, run.warmup_steps);
  double total_weight = 0;
  for (const auto& row : weights)
    for (double x : row) total_weight += x;
  // No scored sparse step (a run shorter than its warm-up): the searched steps, evenly.
  VditDensityDecision d =
      decide_vdit_density(*table, target_density, total_weight > 0 ? weights : decltype(weights){});
  if (note) {
    char buf[512];
    std::snprintf(buf, sizeof buf,
                  "; decided on the density path for %.3f: density %.4f over the scored steps, "
                  "predicted summed nMSE %.4g; skip heads: %lld of %lld, counted at density 0",
                  target_density, d.density, d.loss, static_cast<long long>(d.skip_heads),
                  static_cast<long long>(d.heads));
    *note = "sparse_vdit: calibrated (searched) on " + what + buf +
            (d.off_target.empty() ? "" : " (off target: " + d.off_target + ")");
  }
  return std::make_shared<VditEvalPolicy>(std::move(d.config), run.warmup_steps);
}

}  // namespace eval
}  // namespace moddit
