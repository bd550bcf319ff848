#include "support/test_support.h"

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>

namespace nbsgd::test {

std::string make_temp_dir(const std::string& tag) {
  namespace fs = std::filesystem;
  std::string tmpl = (fs::temp_directory_path() / ("nbsgd-" + tag + "-XXXXXX")).string();
  if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed for " + tmpl);
  return tmpl;
}

std::string nbsgd_binary() {
  const char* b = std::getenv("NBSGD_BINARY");
  return b && *b ? b : NBSGD_BINARY;
}

std::string fashion_mnist_dir() {
  const char* d = std::getenv("NBSGD_DATA_DIR");
  return d && *d ? d : "/usr/share/datasets/fashion-mnist";
}

CommandResult run_nbsgd(const std::string& args) {
  std::string cmd = nbsgd_binary() + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) throw std::runtime_error("popen failed: " + cmd);
  std::string out;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  int status = pclose(p);
  int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return {code, out};
}

}  // namespace nbsgd::test
