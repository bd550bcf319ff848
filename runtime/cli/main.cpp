#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>
#include <string>

#include "runtime/check.h"
#include "runtime/cli/commands.h"

int main(int argc, char** argv) {
  CLI::App app{"nbsgd: Non-blocking SGD for single machines with mixed GPUs"};
  app.require_subcommand(1);
  // Flag errors as one line, like every other error of nbsgd.
  app.failure_message([](const CLI::App*, const CLI::Error& e) {
    return std::string("nbsgd: error: ") + e.what() + " (see --help)\n";
  });
  nbsgd::cli::Runner run;
  nbsgd::cli::add_devices_command(app, run);
  nbsgd::cli::add_predict_command(app, run);
  nbsgd::cli::add_topology_command(app, run);
  nbsgd::cli::add_train_command(app, run);
  nbsgd::cli::add_compare_command(app, run);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    return run ? run() : 0;
  } catch (const nbsgd::Error& e) {
    std::fprintf(stderr, "nbsgd: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "nbsgd: error: %s\n", e.what());
    return 1;
  }
}
