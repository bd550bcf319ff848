// SIGINT, SIGTERM and SIGHUP for a run: the first asks the run to stop (the window
// in flight closes, the checkpoint and the summary marked `interrupted` are
// written, the process exits with 128 + the signal's number); a second one ends the
// process at once. Checkpoints are written to a temporary file and renamed, so the
// last complete checkpoint is whole whatever instant the second signal hits.
//
// A handler can only set a flag: the run polls it (the window driver, the
// read-back wait, evaluation, the run loop), so the flag is process-wide. Scopes
// nest: `compare` holds one across its runs and every run_training holds its own;
// only the outermost installs and restores the handlers, and a signal caught
// between two runs is still seen by the next one.
#pragma once

#include <atomic>
#include <string>

namespace nbsgd::cli {

class SignalScope {
 public:
  SignalScope();
  ~SignalScope();
  SignalScope(const SignalScope&) = delete;
  SignalScope& operator=(const SignalScope&) = delete;

  // Set once a stopping signal arrived (what the engine's run polls).
  static const std::atomic<bool>& stop_flag();
  // The signal that arrived first, or 0.
  static int signal_number();
  // 128 + signal_number(), the exit code of an interrupted run (130 for Ctrl-C).
  static int exit_code();
  // "SIGTERM", ... for messages.
  static std::string signal_name(int signo);
};

}  // namespace nbsgd::cli
