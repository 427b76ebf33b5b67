// `moddit inspect FILE`: a trajectory's metadata and tensors, or a report's summary.
#include <cstdio>

#include "commands.hpp"
#include "moddit/eval.hpp"

namespace moddit::cli {
namespace {

void setup(CLI::App& app) {
  auto path = std::make_shared<std::string>();
  auto* cmd = app.add_subcommand(
      "inspect",
      "Print a trajectory file's contents (steps, layers, shapes, dtypes, token layout, "
      "metadata) or a report.json's summary (settings and the policy table).");
  cmd->add_option("file", *path, "trajectory (.safetensors) or report.json")->required();
  cmd->callback([path] { std::printf("%s", inspect_file(*path).c_str()); });
}

}  // namespace
}  // namespace moddit::cli

MODDIT_REGISTER_COMMAND(inspect, 50, moddit::cli::setup);
