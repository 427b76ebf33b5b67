#include "eval_options.hpp"

#include <cmath>
#include <cstdio>
#include <sstream>

#include "moddit/config.hpp"
#include "moddit/error.hpp"
#include "moddit/size_limits.hpp"
#include "progress.hpp"

namespace moddit::cli {

namespace {
std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::string item;
  std::istringstream is(s);
  while (std::getline(is, item, ',')) {
    const auto a = item.find_first_not_of(" \t"), b = item.find_last_not_of(" \t");
    out.push_back(a == std::string::npos ? "" : item.substr(a, b - a + 1));
  }
  return out;
}
}  // namespace

void add_eval_options(CLI::App& cmd, EvalOptions& o) {
  cmd.add_option("--policies", o.policies,
                 "comma list of dense, moddit, oracle, window, radial, svg, sparse_vdit; 'moddit:key=value' "
                 "overrides a config key for that entry")
      ->capture_default_str();
  cmd.add_option("--density", o.density, "target video density of every sparse policy, in (0, 1]")
      ->capture_default_str();
  cmd.add_option("--config", o.config_path, "MOD-DiT config JSON (docs/CONFIG.md)");
  cmd.add_option("--vdit-config", o.vdit_config,
                 "Sparse-vDiT config from `moddit search` for the sparse_vdit policy (default: "
                 "search at --density here, docs/SPARSE_VDIT.md)");
  cmd.add_option("--vdit-calibration", o.vdit_calibration,
                 "what the sparse_vdit search calibrates on: a trajectory file, 'self' (the "
                 "evaluated trajectory, in-sample) or 'synthetic' (a held-out item of the run's "
                 "generator); default: held-out data where the run has it, else in-sample");
  cmd.add_option("--ridge-lambda", o.ridge_lambda,
                 "ridge lambda of the MOD-DiT fit; a comma list runs one MOD-DiT per value (a "
                 "sweep, sharing the dense reference)");
  cmd.add_option("--eta", o.eta, "sparsity threshold eta of the map (> 0)");
  cmd.add_option("--top-k", o.top_k, "MOD-DiT lines kept per head (0 = from --density)");
  cmd.add_option("--warmup", o.warmup_steps, "MOD-DiT warm-up steps m (all policies dense before)");
  cmd.add_option("--interval", o.interval, "MOD-DiT refresh interval");
  cmd.add_option("--block-size", o.block_size, "block size, 64 or 128");
  cmd.add_option("--refresh", o.refresh, "MOD-DiT refresh mode: masked or dense");
  cmd.add_option("--map-statistic", o.map_statistic,
                 "MOD-DiT map statistic: eq2 (the paper's Eq. 2) or mass (each block's share of "
                 "its rows' mass; sees attention sinks)");
  cmd.add_option("--out", o.out, "report directory (report.json and PNG pictures)")
      ->capture_default_str();
  cmd.add_option("--threads", o.threads, "CPU threads (0 = all hardware threads)")
      ->capture_default_str();
  cmd.add_option("--first-step", o.first_step,
                 "first step run (default warmup - 2: earlier steps are dense for every policy)");
  cmd.add_option("--max-layers", o.max_layers, "run only the first N recorded layers (0 = all)")
      ->capture_default_str();
  cmd.add_option("--snapshot-heads", o.snapshot_heads,
                 "comma list of heads pictured (default 0,1,2,3)");
  cmd.add_flag("--quiet,-q", o.quiet, "no progress bar");
}

EvalSettings make_eval_settings(const EvalOptions& o) {
  // Every value given is checked here, naming its flag, before any file is read.
  MODDIT_CHECK(o.density > 0.0 && o.density <= 1.0, "--density must be in (0, 1], got ",
               o.density);
  MODDIT_CHECK(!o.eta || (std::isfinite(*o.eta) && *o.eta > 0.0), "--eta must be > 0, got ",
               *o.eta);
  MODDIT_CHECK(!o.top_k || *o.top_k >= 0, "--top-k must be >= 0 (0 = from --density), got ",
               *o.top_k);
  MODDIT_CHECK(!o.warmup_steps || *o.warmup_steps >= 2,
               "--warmup must be >= 2 (MOD-DiT records its two references at m-2 and m-1), got ",
               *o.warmup_steps);
  MODDIT_CHECK(!o.interval || *o.interval >= 1, "--interval must be >= 1, got ", *o.interval);
  MODDIT_CHECK(!o.block_size || *o.block_size == 64 || *o.block_size == 128,
               "--block-size must be 64 or 128, got ", *o.block_size);
  MODDIT_CHECK(!o.first_step || *o.first_step >= 0, "--first-step must be >= 0, got ",
               *o.first_step);
  MODDIT_CHECK(o.max_layers >= 0, "--max-layers must be >= 0 (0 = all), got ", o.max_layers);
  check_thread_count(o.threads, "--threads");
  check_report_dir(o.out);  // before the run, not after it

  EvalSettings s;
  s.vdit_config = o.vdit_config;
  s.vdit_calibration = o.vdit_calibration;
  ModditConfig c = o.config_path.empty() ? ModditConfig{} : load_moddit_config(o.config_path);
  if (o.eta) c.eta = *o.eta;
  if (o.top_k) c.top_k = *o.top_k;
  if (o.warmup_steps) c.warmup_steps = *o.warmup_steps;
  if (o.interval) c.interval = *o.interval;
  if (o.block_size) c.block_size = *o.block_size;
  if (!o.refresh.empty()) c.refresh = o.refresh;
  if (!o.map_statistic.empty()) c.map_statistic = o.map_statistic;
  c.target_density = o.density;
  std::string policies = o.policies;
  const std::vector<std::string> lambdas = split_list(o.ridge_lambda);
  if (lambdas.size() == 1) {
    try {
      size_t used = 0;
      c.ridge_lambda = std::stod(lambdas[0], &used);
      MODDIT_CHECK(used == lambdas[0].size(), "");
    } catch (const std::exception&) {
      throw Error("--ridge-lambda: '" + lambdas[0] + "' is not a number");
    }
  } else if (lambdas.size() > 1) {
    // Every moddit entry becomes one entry per lambda.
    std::string expanded;
    for (const std::string& item : split_list(policies)) {
      const bool is_moddit = item.rfind("moddit", 0) == 0;
      if (!is_moddit) {
        expanded += (expanded.empty() ? "" : ",") + item;
        continue;
      }
      for (const std::string& l : lambdas)
        expanded += (expanded.empty() ? "" : ",") + item + ":ridge_lambda=" + l;
    }
    policies = expanded;
  }
  c.validate();
  s.config = c;
  s.target_density = o.density;
  s.policies = parse_policy_list(policies, c, o.density);
  s.threads = o.threads;
  s.first_step = o.first_step.value_or(-1);
  s.max_layers = o.max_layers;
  if (!o.snapshot_heads.empty()) {
    s.snapshot_heads.clear();
    for (const std::string& h : split_list(o.snapshot_heads)) {
      int head = -1;
      size_t used = 0;
      try {
        head = std::stoi(h, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      MODDIT_CHECK(used == h.size() && !h.empty() && head >= 0, "--snapshot-heads: '", h,
                   "' is not a head index (>= 0)");
      s.snapshot_heads.push_back(head);
    }
  }
  return s;
}

void run_and_report(TrajectorySource& source, EvalSettings settings, const EvalOptions& o,
                    const std::string& what) {
  ProgressBar bar(what, !o.quiet);
  EvalResult r;
  try {
    r = run_evaluation(source, settings, [&](int done, int total) { bar.update(done, total); });
  } catch (...) {
    bar.finish();  // the error message goes on its own line
    throw;
  }
  bar.finish();
  const std::vector<std::string> files = write_eval_report(r, o.out);
  std::printf("%s\n", r.info.source.c_str());
  std::printf("%s", format_eval_table(r).c_str());
  std::printf("wall time %.1f s (dense reference %.1f s, block mass %.1f s, trajectory %.1f s; %d "
              "thread(s))\n",
              r.wall_seconds, r.reference_seconds, r.stats_seconds, r.load_seconds, r.threads);
  std::printf("report: %s (%zu pictures)\n", files.front().c_str(), files.size() - 1);
  std::printf("%s", eval_pictures_legend(r).c_str());
}

}  // namespace moddit::cli
