// The `moddit` command: subcommands register themselves (cli/commands.hpp).
#include <algorithm>
#include <cstdio>
#include <exception>

#include "commands.hpp"
#include "moddit/error.hpp"

namespace moddit::cli {
std::vector<CommandEntry>& command_registry() {
  static std::vector<CommandEntry> registry;
  return registry;
}
}  // namespace moddit::cli

int main(int argc, char** argv) {
  using namespace moddit::cli;
  CLI::App app{"moddit: block-sparse attention for video diffusion transformers (MOD-DiT, Sparse-vDiT)"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "moddit 0.1.0");
  // Bad command lines get one line, like every other error.
  app.failure_message([](const CLI::App*, const CLI::Error& e) {
    return std::string("moddit: error: ") + e.what() + " (see --help)\n";
  });
  auto& reg = command_registry();
  std::sort(reg.begin(), reg.end(), [](const auto& a, const auto& b) { return a.order < b.order; });
  for (auto& c : reg) c.setup(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 1;
  } catch (const moddit::Error& e) {
    std::fprintf(stderr, "moddit: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "moddit: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
