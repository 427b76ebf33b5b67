#pragma once
// Options shared by `moddit demo` and `moddit eval` (policies, density, config
// overrides, output directory), and the common run-and-report step.
#include <CLI/CLI.hpp>

#include <cmath>
#include <memory>
#include <string>

#include "moddit/eval.hpp"
#include "moddit/trajectory.hpp"

namespace moddit::cli {

struct EvalOptions {
  std::string out;
  std::string policies;
  double density = 0.15;
  std::string config_path;
  std::string vdit_config;  // sparse_vdit: config from `moddit search`
  std::string ridge_lambda;  // one value, or a comma list: a MOD-DiT per value (a sweep)
  double eta = std::nan("");  // NaN: from the config
  int top_k = -1;
  int warmup_steps = -1, interval = -1, block_size = -1;
  std::string refresh;
  int threads = 0;
  int first_step = -1;
  int max_layers = 0;
  std::string snapshot_heads;
  bool quiet = false;
};

// Adds the shared options to a subcommand.
void add_eval_options(CLI::App& cmd, EvalOptions& o);

// Builds the settings (config file, overrides, policy list with the lambda sweep).
EvalSettings make_eval_settings(const EvalOptions& o);

// Runs, prints the table and writes the report directory.
void run_and_report(TrajectorySource& source, EvalSettings settings, const EvalOptions& o,
                    const std::string& what);

}  // namespace moddit::cli
