// Shared test helpers.
#pragma once
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace nbsgd::test {

// A fresh, empty temporary directory under the build tree's temp area.
std::string make_temp_dir(const std::string& tag);

// The nbsgd binary the tests run: $NBSGD_BINARY when set (the release bundle, where
// the build tree is absent), else the one built beside the tests.
std::string nbsgd_binary();

// DIR/metrics.jsonl, whole records only (a run may be writing the next one).
std::vector<nlohmann::json> read_metrics(const std::string& dir);

// The Fashion-MNIST directory for tests that train on it: $NBSGD_DATA_DIR when set
// (the bundle's reduced copy), else the system's.
std::string fashion_mnist_dir();

// Runs the nbsgd binary with `args` (shell-quoted by the caller), captures stdout+stderr.
struct CommandResult {
  int exit_code;
  std::string output;
};
CommandResult run_nbsgd(const std::string& args);

}  // namespace nbsgd::test

#include <sys/types.h>

namespace nbsgd::test {

// Starts nbsgd with `args` split on spaces (no shell), stdout and stderr into
// `log` (or /dev/null); returns the pid.
pid_t spawn_nbsgd(const std::string& args, const std::string& log = "");

// Waits for `pid`: its exit code, 128 + the signal when a signal ended it. A child
// still running after `hang_s` seconds is a hang (the runs these tests stop take an
// hour or more uninterrupted): it is killed and -1 returned.
int wait_for_exit(pid_t pid, int hang_s);

// Whether process `pid` catches `signo` (its handler is installed): /proc's SigCgt.
bool catches_signal(pid_t pid, int signo);

}  // namespace nbsgd::test
