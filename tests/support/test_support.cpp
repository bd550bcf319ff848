#include "support/test_support.h"

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
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

#include <fcntl.h>
#include <signal.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

namespace nbsgd::test {

pid_t spawn_nbsgd(const std::string& args, const std::string& log) {
  std::vector<std::string> parts;
  std::istringstream ss(args);
  for (std::string p; ss >> p;) parts.push_back(p);
  const std::string bin = nbsgd_binary();
  pid_t pid = fork();
  if (pid == 0) {
    const int fd = ::open(log.empty() ? "/dev/null" : log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
    }
    std::vector<char*> argv{const_cast<char*>(bin.c_str())};
    for (auto& p : parts) argv.push_back(p.data());
    argv.push_back(nullptr);
    execv(bin.c_str(), argv.data());
    _exit(127);
  }
  return pid;
}

int wait_for_exit(pid_t pid, int hang_s) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(hang_s);
  int status = 0;
  for (;;) {
    const pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (r < 0) return -2;
    if (std::chrono::steady_clock::now() > until) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

bool catches_signal(pid_t pid, int signo) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(f, line);)
    if (line.rfind("SigCgt:", 0) == 0) return (std::stoull(line.substr(7), nullptr, 16) >> (signo - 1)) & 1u;
  return false;
}

std::vector<nlohmann::json> read_metrics(const std::string& dir) {
  std::vector<nlohmann::json> v;
  std::ifstream f(dir + "/metrics.jsonl");
  for (std::string line; std::getline(f, line) && !f.eof();) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_discarded()) v.push_back(std::move(j));
  }
  return v;
}

}  // namespace nbsgd::test
