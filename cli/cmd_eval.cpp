// `moddit eval`: any trajectory (file or synthetic settings), any policy list and
// density; the same table and report directory as the demo.
#include "commands.hpp"
#include "eval_options.hpp"
#include "moddit/error.hpp"
#include "moddit/trajectory.hpp"

namespace moddit::cli {
namespace {

struct EvalCommandOptions {
  EvalOptions eval;
  std::string trajectory;
  std::vector<std::string> synthetic;
  bool use_synthetic = false;
};

void setup(CLI::App& app) {
  auto opts = std::make_shared<EvalCommandOptions>();
  opts->eval.out = "moddit-eval";
  opts->eval.policies = "dense,moddit,oracle";
  auto* cmd = app.add_subcommand(
      "eval",
      "Evaluate attention policies at equal density on a trajectory file (--trajectory) or a "
      "synthetic trajectory (--synthetic key=value ...): density, recall, rel_l2, NAE, time; "
      "a table and a report directory.");
  auto* traj = cmd->add_option("--trajectory", opts->trajectory,
                               "trajectory file (safetensors, see docs)");
  auto* syn = cmd->add_option("--synthetic", opts->synthetic,
                              "synthetic trajectory settings, key=value (frames, height, width, "
                              "text_tokens, text_valid, text_position, num_steps, layers, heads, "
                              "head_dim, batch, seed, head_logit_spread, value_offset); no value = "
                              "the defaults (the unfitted generator; `moddit demo` is fitted)")
                  ->expected(0, -1);
  traj->excludes(syn);
  add_eval_options(*cmd, opts->eval);
  cmd->callback([opts, syn] {
    EvalSettings settings = make_eval_settings(opts->eval);
    std::unique_ptr<TrajectorySource> source;
    if (!opts->trajectory.empty()) {
      source = open_trajectory(opts->trajectory);
      settings.source_label = opts->trajectory;
    } else {
      MODDIT_CHECK(syn->count() > 0, "give --trajectory FILE or --synthetic [key=value ...]");
      SyntheticSpec spec;
      apply_synthetic_settings(opts->synthetic, spec);
      if (spec.text_tokens > 0 && spec.text_position == "none") spec.text_position = "before";
      if (spec.text_valid == 0) spec.text_valid = spec.text_tokens;
      source = make_synthetic(spec);
      settings.source_label = "synthetic";
      settings.synthetic = spec;
      settings.source_settings = {{"generator", spec.describe()},
                                  {"seed", std::to_string(spec.seed)}};
    }
    run_and_report(*source, settings, opts->eval, "eval");
  });
}

}  // namespace
}  // namespace moddit::cli

MODDIT_REGISTER_COMMAND(eval, 20, moddit::cli::setup);
