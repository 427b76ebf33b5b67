// `moddit demo`: the default synthetic trajectory through dense, MOD-DiT, the
// oracle and the static baselines at one density; a table and a report directory.
#include "commands.hpp"
#include "eval_options.hpp"
#include "moddit/trajectory.hpp"

namespace moddit::cli {
namespace {

struct DemoOptions {
  EvalOptions eval;
  SyntheticSpec spec;
};

void setup(CLI::App& app) {
  auto opts = std::make_shared<DemoOptions>();
  opts->eval.out = "moddit-demo";
  opts->eval.policies = "dense,moddit,oracle,window,radial";
  auto* cmd = app.add_subcommand(
      "demo",
      "Run a small synthetic video-DiT attention trajectory through dense attention, MOD-DiT, "
      "the oracle and static baselines at one density; print a table and write a report "
      "directory (report.json, PNG heatmaps and plots).");
  SyntheticSpec& s = opts->spec;
  cmd->add_option("--steps", s.num_steps, "denoising steps T")->capture_default_str();
  cmd->add_option("--layers", s.layers, "layers")->capture_default_str();
  cmd->add_option("--heads", s.heads, "heads")->capture_default_str();
  cmd->add_option("--head-dim", s.head_dim, "head dimension")->capture_default_str();
  cmd->add_option("--frames", s.frames, "latent frames")->capture_default_str();
  cmd->add_option("--height", s.height, "latent tokens per frame, vertically")->capture_default_str();
  cmd->add_option("--width", s.width, "latent tokens per frame, horizontally")->capture_default_str();
  cmd->add_option("--text-tokens", s.text_tokens, "text tokens (0 = none)")->capture_default_str();
  cmd->add_option("--text-position", s.text_position, "none, before or after")->capture_default_str();
  cmd->add_option("--batch", s.batch, "batch size")->capture_default_str();
  cmd->add_option("--seed", s.seed, "generator seed")->capture_default_str();
  s.head_logit_spread = kModditTinyHeadLogitSpread;
  cmd->add_option("--head-logit-spread", s.head_logit_spread,
                  "spread of the heads' sharpness, in [0, 4] (default: fitted to moddit-tiny's "
                  "oracle curve; 0: the unfitted generator)")
      ->capture_default_str();
  s.value_offset = kModditTinyValueOffset;
  cmd->add_option("--value-offset", s.value_offset,
                  "a value component shared by every token, in [0, 100] (default: fitted to "
                  "moddit-tiny's oracle rel_l2; 0: none)")
      ->capture_default_str();
  add_eval_options(*cmd, opts->eval);
  cmd->callback([opts] {
    SyntheticSpec spec = opts->spec;
    if (spec.text_tokens > 0 && spec.text_position == "none") spec.text_position = "before";
    if (spec.text_valid == 0) spec.text_valid = spec.text_tokens;
    EvalSettings settings = make_eval_settings(opts->eval);
    auto source = make_synthetic(spec);
    settings.source_label = "synthetic (moddit demo)";
    settings.synthetic = spec;
    settings.source_settings = {{"generator", spec.describe()}, {"seed", std::to_string(spec.seed)}};
    run_and_report(*source, settings, opts->eval, "demo");
  });
}

}  // namespace
}  // namespace moddit::cli

MODDIT_REGISTER_COMMAND(demo, 10, moddit::cli::setup);
