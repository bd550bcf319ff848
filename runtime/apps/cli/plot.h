// Drawing a run or compare folder's plots (cmd_plot.cpp), shared by nbsgd plot and
// nbsgd compare.
#pragma once

#include <string>

namespace nbsgd::cli {

// Runs scripts/plot.py on `dir` (PNGs and plots.json into dir/plots). Returns ""
// on success, else why there are no plots (no script, no matplotlib, it failed).
// InputError when `dir` is no run or compare folder.
// quiet: the script's own lines are not shown.
std::string plot_folder(const std::string& dir, int gantt_steps = 6, bool quiet = false);

}  // namespace nbsgd::cli
