#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>
#include <new>
#include <string>

#include "runtime/device/check.h"
#include "runtime/apps/cli/commands.h"

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
  nbsgd::cli::add_describe_net_command(app, run);
  nbsgd::cli::add_plot_command(app, run);
  if (argc > 1 && argv[1][0] != '-') {
    std::string known;
    bool found = false;
    for (const CLI::App* sub : app.get_subcommands({})) {
      known += (known.empty() ? "" : ", ") + sub->get_name();
      found = found || sub->get_name() == argv[1];
    }
    if (!found) {
      std::fprintf(stderr, "nbsgd: error: unknown command '%s' (commands: %s)\n", argv[1], known.c_str());
      return 2;
    }
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  // Bad input is an InputError that names the flag, file or field: printed as it is.
  // Anything else is an invariant of nbsgd that failed: a bug, said as such, with
  // where it happened, so the report can go to the project's issue tracker.
  try {
    return run ? run() : 0;
  } catch (const nbsgd::InputError& e) {
    std::fprintf(stderr, "nbsgd: error: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "nbsgd: error: out of memory (the flags ask for more than this machine has)\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr,
                 "nbsgd: internal error (a bug in nbsgd: please report it, with the command line, to the "
                 "project's issue tracker): %s\n",
                 e.what());
    return 70;  // EX_SOFTWARE
  }
}
