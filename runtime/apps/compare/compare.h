// Comparing configurations on the same settings (`nbsgd compare`, bench/paper).
//
// A run is named EXCHANGE[/WINDOW][@SCOPE]: ring/sync, ring/fastest, dpsgd/sync,
// matcha/fastest@neighbors, adpsgd, ring/quorum:64. Blocking runs are those with
// window sync; adpsgd is asynchronous (neither: it is compared with the D-PSGD and
// MATCHA baselines only). Speedups compare time to --target-loss, each on its
// run's own clock; they are absent where either run did not reach the target.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "runtime/train/config.h"
#include "runtime/train/engine.h"
#include "runtime/train/records.h"

namespace nbsgd::engine {

struct RunSpec {
  std::string name;      // as given
  std::string exchange;  // ring | dpsgd | matcha | adpsgd
  std::string window;    // "" for adpsgd
  std::string scope;     // "" = the base config's
  bool blocking() const { return window == "sync"; }
  // A directory name for the run: '/' and ':' and '@' replaced.
  std::string dir_name() const;
};

// Comma-separated run names; InputError naming --runs.
std::vector<RunSpec> parse_runs(const std::string& list);
// The base configuration with the run's exchange, window and scope.
TrainConfig apply_run(const TrainConfig& base, const RunSpec& run);

// Runs one configuration (any exchange) to its end.
RunSummary run_any(const TrainConfig& cfg, const std::function<void(const StepRecord&)>& on_step);

// Per-worker standalone samples/s from `nbsgd devices --measure`: {"rates": [...]}.
// InputError naming the file for anything else.
std::vector<double> load_ceiling(const std::string& path);

struct CompareRow {
  RunSpec spec;
  RunSummary summary;
  double efficiency = -1;  // samples/s over the ceiling's sum; < 0: no ceiling
  std::optional<double> vs_own, vs_dpsgd, vs_matcha;  // time-to-target speedups
  std::optional<double> rate_vs_own;  // samples/s over its own EXCHANGE/sync run's
};

// Fills efficiency and the speedups of every row (the baselines are the rows named
// EXCHANGE/sync with the same scope-free exchange: ring/sync, dpsgd/sync, matcha/sync).
void compute_speedups(std::vector<CompareRow>& rows, const std::vector<double>& ceiling);

// One table, one row per run.
std::string compare_table(const std::vector<CompareRow>& rows, double target_loss);
nlohmann::json compare_json(const std::vector<CompareRow>& rows, const TrainConfig& base,
                            const std::vector<double>& ceiling);

// report.md (report.cpp): the table with a legend and only the columns that have
// values, each non-blocking run's speed-up over its own sync baseline (time to
// target when --target-loss was given, else samples/s), the clock beside every
// time, and links to the PNGs `plots` names (plots/plots.json's entries; none:
// `no_plots` says why).
std::string compare_report(const std::vector<CompareRow>& rows, const TrainConfig& base,
                           const std::vector<double>& ceiling, const nlohmann::json& plots,
                           const std::string& no_plots);

}  // namespace nbsgd::engine
