// nbsgd plot DIR: the PNGs of a run or compare folder, drawn by scripts/plot.py
// (matplotlib). The script is found as $NBSGD_PLOT_SCRIPT, beside the binary's
// share/nbsgd/ (installed), or in the source tree the binary was built from; the
// interpreter as $NBSGD_PYTHON, else the first of /usr/bin/python3 and python3
// that imports matplotlib.
#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <sys/wait.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>
#include <filesystem>
#include <memory>

#include "runtime/apps/cli/commands.h"
#include "runtime/apps/cli/plot.h"
#include "runtime/device/check.h"

#ifndef NBSGD_SCRIPTS_DIR
#define NBSGD_SCRIPTS_DIR ""
#endif

namespace nbsgd::cli {

namespace fs = std::filesystem;

namespace {
std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

std::string find_script() {
  if (const char* e = std::getenv("NBSGD_PLOT_SCRIPT"); e && *e) return e;
  char buf[PATH_MAX];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n > 0) {
    const fs::path exe = fs::path(std::string(buf, static_cast<size_t>(n))).parent_path();
    for (const fs::path& p : {exe / "../share/nbsgd/plot.py", exe / "plot.py"})
      if (fs::exists(p)) return p.lexically_normal().string();
  }
  const fs::path src = fs::path(NBSGD_SCRIPTS_DIR) / "plot.py";
  if (!std::string(NBSGD_SCRIPTS_DIR).empty() && fs::exists(src)) return src.string();
  return "";
}

std::string find_python() {
  if (const char* e = std::getenv("NBSGD_PYTHON"); e && *e) return e;
  for (const char* p : {"/usr/bin/python3", "python3"})
    if (std::system(fmt::format("{} -c 'import matplotlib, numpy' >/dev/null 2>&1", p).c_str()) == 0) return p;
  return "";
}
}  // namespace

std::string plot_folder(const std::string& dir, int gantt_steps, bool quiet) {
  if (!fs::is_directory(dir)) throw InputError("nbsgd plot " + dir + ": not a folder");
  if (!fs::exists(fs::path(dir) / "compare.json") && !fs::exists(fs::path(dir) / "metrics.jsonl"))
    throw InputError("nbsgd plot " + dir + ": holds neither compare.json (nbsgd compare --out) nor metrics.jsonl "
                     "(nbsgd train --out)");
  const std::string script = find_script();
  if (script.empty()) return "scripts/plot.py not found (set NBSGD_PLOT_SCRIPT to its path)";
  const std::string py = find_python();
  if (py.empty())
    return "no python3 with matplotlib and numpy (Debian: apt-get install python3-matplotlib; or set NBSGD_PYTHON)";
  const int rc = std::system(
      fmt::format("{} {} {} --gantt-steps {} {}", py, quote(script), quote(dir), gantt_steps,
                  quiet ? ">/dev/null 2>&1" : "1>&2")
          .c_str());
  if (rc != 0) return fmt::format("{} {} failed (exit {})", py, script, WIFEXITED(rc) ? WEXITSTATUS(rc) : rc);
  return "";
}

void add_plot_command(CLI::App& root, Runner& out) {
  auto dir = std::make_shared<std::string>();
  auto steps = std::make_shared<int>(6);
  CLI::App* sub = root.add_subcommand("plot", "PNG plots of a run or compare folder (loss, throughput, k_i, Gantt)");
  sub->add_option("dir", *dir, "A folder written by nbsgd train --out or nbsgd compare --out")->required();
  sub->add_option("--gantt-steps", *steps, "Steps of the trace the Gantt chart shows")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  sub->callback([dir, steps, &out] {
    out = [dir, steps] {
      const std::string why = plot_folder(*dir, *steps);
      if (!why.empty()) {
        std::fprintf(stderr, "nbsgd: error: plot %s: %s\n", dir->c_str(), why.c_str());
        return 1;
      }
      std::fprintf(stderr, "plot: PNGs and plots.json in %s/plots\n", dir->c_str());
      return 0;
    };
  });
}

}  // namespace nbsgd::cli
