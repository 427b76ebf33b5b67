// `moddit search`: the offline Sparse-vDiT search (docs/SPARSE_VDIT.md) over one
// or more calibration trajectories; writes the versioned JSON config atomically
// and prints the share of heads per mode for every layer.
#include <cstdio>
#include <memory>
#include <optional>
#include <sstream>

#include "commands.hpp"
#include "io/atomic_file.hpp"
#include "moddit/backend.hpp"
#include "moddit/error.hpp"
#include "moddit/eval.hpp"
#include "moddit/size_limits.hpp"
#include "moddit/sparse_vdit.hpp"
#include "moddit/trajectory.hpp"
#include "progress.hpp"

namespace moddit::cli {
namespace {

struct SearchOptions {
  std::vector<std::string> trajectories;
  std::vector<std::string> synthetic;  // one trajectory per occurrence: "key=value,key=value"
  std::string out = "sparse_vdit.json";
  VditSearchOptions search;
  std::string modes = "skip,diagonal,multi_diagonal,vertical_stripe";
  std::optional<double> target_density;  // left out: --lambda / --eps decide
  int first_item = 0;
  int threads = 0;
  bool quiet = false;
};

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string item;
  std::istringstream is(s);
  while (std::getline(is, item, sep))
    if (!item.empty()) out.push_back(item);
  return out;
}

std::unique_ptr<TrajectorySource> synthetic_source(const std::string& settings) {
  SyntheticSpec spec;
  apply_synthetic_settings(split(settings, ','), spec);
  if (spec.text_tokens > 0 && spec.text_position == "none") spec.text_position = "before";
  if (spec.text_valid == 0) spec.text_valid = spec.text_tokens;
  return make_synthetic(spec);
}

void run_search(const SearchOptions& o) {
  // Every value and the output path before any trajectory is opened or generated.
  MODDIT_CHECK(!o.target_density || (*o.target_density > 0.0 && *o.target_density <= 1.0),
               "--target-density must be in (0, 1], got ", *o.target_density);
  MODDIT_CHECK(o.first_item >= 0, "--first-item must be >= 0, got ", o.first_item);
  check_thread_count(o.threads, "--threads");
  check_output_file(o.out);
  VditSearchOptions search = o.search;
  search.modes.clear();
  for (const std::string& m : split(o.modes, ',')) search.modes.push_back(vdit_mode_from_string(m));
  search.validate();

  std::vector<std::unique_ptr<TrajectorySource>> owned;
  for (const std::string& path : o.trajectories)
    owned.push_back(drop_batch_items(open_trajectory(path), o.first_item));
  for (const std::string& s : o.synthetic)
    owned.push_back(drop_batch_items(synthetic_source(s), o.first_item));
  if (owned.empty()) {
    // The eval's default trajectory is batch item 0 of the default synthetic
    // model: calibrate on item 1 (same model, another scene).
    owned.push_back(drop_batch_items(synthetic_source("batch=2"), 1));
  }
  std::vector<TrajectorySource*> sources;
  for (auto& s : owned) {
    sources.push_back(s.get());
    std::fprintf(stderr, "calibration: %s\n", s->info().source.c_str());
  }

  std::shared_ptr<Backend> cpu = make_cpu_backend(o.threads);
  ProgressBar bar("search", !o.quiet);
  VditLossTable table = measure_vdit_candidates(
      sources, *cpu, search, [&bar](int done, int total) { bar.update(done, total); });
  bar.finish();
  for (size_t i = 0; i < o.trajectories.size(); ++i)  // files first: name them in the config
    table.calibration[i] = o.trajectories[i] + ": " + table.calibration[i];
  VditDensityDecision decision;
  if (o.target_density) decision = decide_vdit_density(table, *o.target_density);
  const VditConfig config = o.target_density ? decision.config
                                             : decide_vdit(table, search.lambda, search.eps);
  save_vdit_config(config, o.out);
  std::printf("Sparse-vDiT search: %zu step(s) x %d layer(s) x %d head(s), ", config.steps.size(),
              config.shape.num_layers, config.shape.num_heads);
  if (o.target_density) {
    std::printf("density path to %.4f: density %.4f, predicted summed nMSE %.4g (last move's "
                "rate %.4g)\n",
                *o.target_density, decision.density, decision.loss, config.search.lambda);
    if (!decision.off_target.empty())
      std::printf("off target by more than %.3f: %s\n", kVditDensityTolerance,
                  decision.off_target.c_str());
  } else {
    std::printf("lambda %.4g, eps %.4g\n", config.search.lambda, config.search.eps);
  }
  std::printf("%s", vdit_summary_table(config).c_str());
  std::printf("config written to %s\n", o.out.c_str());
}

void setup(CLI::App& app) {
  auto o = std::make_shared<SearchOptions>();
  auto* cmd = app.add_subcommand(
      "search",
      "Sparse-vDiT offline search: per (step, layer, head) choose full, skip, diagonal, "
      "multi_diagonal or vertical_stripe on calibration trajectories (L = nMSE + lambda * "
      "density; full when every L > eps) and write the config JSON (docs/SPARSE_VDIT.md).");
  cmd->add_option("--trajectory", o->trajectories,
                  "calibration trajectory file (safetensors); repeat for several");
  cmd->add_option("--synthetic", o->synthetic,
                  "a synthetic calibration trajectory, 'key=value,key=value' (frames, height, "
                  "width, text_tokens, text_valid, text_position, num_steps, layers, heads, "
                  "head_dim, batch, seed); repeat for several. Without --trajectory or "
                  "--synthetic: batch item 1 of the default synthetic model (the eval's default "
                  "trajectory is item 0)");
  cmd->add_option("--first-item", o->first_item,
                  "use batch items from this one on (earlier items are left for evaluation)")
      ->capture_default_str();
  cmd->add_option("--out", o->out, "config file to write (atomically)")->capture_default_str();
  cmd->add_option("--lambda", o->search.lambda, "density weight lambda in L = nMSE + lambda * density")
      ->capture_default_str();
  cmd->add_option("--eps", o->search.eps, "keep full when every candidate's L exceeds eps")
      ->capture_default_str();
  cmd->add_option("--target-density", o->target_density,
                  "instead of --lambda/--eps: the density path (docs/SPARSE_VDIT.md) to this mean density");
  cmd->add_option("--modes", o->modes, "candidate modes, comma list")->capture_default_str();
  cmd->add_option("--diagonal-windows", o->search.diagonal_windows,
                  "diagonal radii in blocks (|kb - qb| <= w)")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--multi-diagonal-windows", o->search.multi_diagonal_windows,
                  "multi-diagonal spatial radii in tokens")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--stripe-counts", o->search.stripe_counts,
                  "vertical-stripe key block counts (top blocks by dense attention mass)")
      ->delimiter(',')
      ->capture_default_str();
  cmd->add_option("--stripe-sample-rows", o->search.stripe_sample_rows,
                  "query rows sampled per head to rank stripe blocks")
      ->capture_default_str();
  cmd->add_option("--block-size", o->search.block_size, "block size, 64 or 128")
      ->capture_default_str();
  cmd->add_option("--first-step", o->search.first_step,
                  "steps before this are not searched (they stay full)")
      ->capture_default_str();
  cmd->add_option("--threads", o->threads, "CPU threads (0 = all hardware threads)")
      ->capture_default_str();
  cmd->add_flag("--quiet,-q", o->quiet, "no progress bar");
  cmd->callback([o] { run_search(*o); });
}

}  // namespace
}  // namespace moddit::cli

MODDIT_REGISTER_COMMAND(search, 30, moddit::cli::setup);
