// Shared test helpers.
#pragma once
#include <string>

namespace nbsgd::test {

// A fresh, empty temporary directory under the build tree's temp area.
std::string make_temp_dir(const std::string& tag);

// Runs the nbsgd binary with `args` (shell-quoted by the caller), captures stdout+stderr.
struct CommandResult {
  int exit_code;
  std::string output;
};
CommandResult run_nbsgd(const std::string& args);

}  // namespace nbsgd::test
