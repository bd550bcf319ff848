// Subcommands of the `nbsgd` binary. Each lives in runtime/apps/cli/cmd_<name>.cpp and
// registers itself on the root app; its parse callback stores the function to run
// in `out`, which main() calls after parsing. The function returns the exit code.
#pragma once

#include <functional>

namespace CLI {
class App;
}

namespace nbsgd::cli {

using Runner = std::function<int()>;

void add_devices_command(CLI::App& root, Runner& out);
void add_predict_command(CLI::App& root, Runner& out);
void add_topology_command(CLI::App& root, Runner& out);
void add_train_command(CLI::App& root, Runner& out);
void add_compare_command(CLI::App& root, Runner& out);
void add_describe_net_command(CLI::App& root, Runner& out);
void add_plot_command(CLI::App& root, Runner& out);

}  // namespace nbsgd::cli
