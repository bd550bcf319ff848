// Shared test helpers.
#pragma once
#include <string>

namespace nbsgd::test {

// A fresh, empty temporary directory under the build tree's temp area.
std::string make_temp_dir(const std::string& tag);

// The nbsgd binary the tests run: $NBSGD_BINARY when set (the release bundle, where
// the build tree is absent), else the one built beside the tests.
std::string nbsgd_binary();

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
