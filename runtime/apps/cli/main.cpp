#include <CLI/CLI.hpp>

#include <cstdio>
#include <exception>
#include <new>
#include <string>

#include "runtime/device/check.h"
#include "runtime/device/comm/launch.h"
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
  // Under mpirun or srun (launch.h) every rank runs the same command; an error on
  // one rank ends every rank (MPI_Abort), so none waits for it. One process: a return.
  std::string who = "nbsgd: ";
  auto fail = [&who](int code) {
    if (nbsgd::comm::launch().spans()) nbsgd::comm::abort_launch(code);
    return code;
  };
  try {
    const nbsgd::comm::Launch& l = nbsgd::comm::init_launch();
    if (l.spans()) {
      who = "nbsgd: rank " + std::to_string(l.rank) + ": ";
      for (const CLI::App* sub : app.get_subcommands())
        if (sub->get_name() != "train")
          throw nbsgd::InputError("nbsgd " + sub->get_name() + " runs in one process; under " + l.launcher +
                                  " (" + std::to_string(l.size) + " ranks) only nbsgd train runs");
    }
    const int rc = run ? run() : 0;
    nbsgd::comm::finalize_launch();
    return rc;
  } catch (const nbsgd::InputError& e) {
    std::fprintf(stderr, "%serror: %s\n", who.c_str(), e.what());
    return fail(1);
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "%serror: out of memory (the flags ask for more than this machine has)\n", who.c_str());
    return fail(1);
  } catch (const std::exception& e) {
    std::fprintf(stderr,
                 "%sinternal error (a bug in nbsgd: please report it, with the command line, to the "
                 "project's issue tracker): %s\n",
                 who.c_str(), e.what());
    return fail(70);  // EX_SOFTWARE
  }
}
