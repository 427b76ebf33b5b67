#pragma once
// Options shared by `moddit demo` and `moddit eval` (policies, density, config
// overrides, output directory), and the common run-and-report step.
#include <CLI/CLI.hpp>

#include <memory>
#include <optional>
#include <string>

#include "moddit/eval.hpp"
#include "moddit/trajectory.hpp"

namespace moddit::cli {

// A flag left out is an empty optional: the default then comes from the config
// (or the evaluation); no value given on the command line means "default".
struct EvalOptions {
  std::string out;
  std::string policies;
  double density = 0.15;
  std::string config_path;
  std::string vdit_config;  // sparse_vdit: config from `moddit search`
  std::string vdit_calibration;  // sparse_vdit: calibration data (EvalSettings::vdit_calibration)
  std::string ridge_lambda;  // one value, or a comma list: a MOD-DiT per value (a sweep)
  std::optional<double> eta;
  std::optional<int> top_k, warmup_steps, interval, block_size;
  std::string refresh;
  std::string map_statistic;  // empty: the config's
  int threads = 0;
  std::optional<int> first_step;
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
