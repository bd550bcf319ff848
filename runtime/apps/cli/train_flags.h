// The flags of `nbsgd train`, shared with `nbsgd compare`, and the run helper both use.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "runtime/train/config.h"
#include "runtime/train/engine.h"

namespace CLI {
class App;
}

namespace nbsgd::cli {

void add_train_flags(CLI::App& app, engine::TrainConfig& cfg);

struct RunResult {
  engine::RunSummary summary;
  std::vector<double> losses;
  bool virtual_clock = true;
  int signal = 0;  // the signal that stopped the run (summary.interrupted), or 0
};

// Runs one training job: prints the config, a progress line and a summary table
// (when `print`), and writes config.json, metrics.jsonl, summary.json and
// checkpoint.safetensors into cfg.out_dir when set.
RunResult run_training(const engine::TrainConfig& cfg, bool print);
// What run_training prints (to stderr): the config and device table, start-up
// phases and the progress line (each line after `prefix`), the summary.
struct RunOutput {
  bool header = true, progress = true, summary = true;
  std::string prefix;
};
RunResult run_training(const engine::TrainConfig& cfg, const RunOutput& out);

void write_atomically(const std::string& path, const std::string& text);
nlohmann::json summary_json(const engine::RunSummary& s);

}  // namespace nbsgd::cli
