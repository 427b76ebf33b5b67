#pragma once
// Each subcommand lives in its own cli/cmd_<name>.cpp and registers itself here,
// so adding a command touches no other file.
#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

namespace moddit::cli {

// Adds the subcommand to `app`; the callback it installs runs the command and
// returns normally or throws (moddit::Error -> one-line message, exit 1).
using CommandSetup = std::function<void(CLI::App& app)>;

struct CommandEntry {
  std::string name;
  int order;  // position in --help
  CommandSetup setup;
};
std::vector<CommandEntry>& command_registry();

struct CommandRegistrar {
  CommandRegistrar(std::string name, int order, CommandSetup setup) {
    command_registry().push_back({std::move(name), order, std::move(setup)});
  }
};

}  // namespace moddit::cli

#define MODDIT_REGISTER_COMMAND(ident, order, setup) \
  static ::moddit::cli::CommandRegistrar moddit_command_##ident(#ident, order, setup)
