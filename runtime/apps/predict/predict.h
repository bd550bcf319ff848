// `nbsgd predict`: what a profile will cost before anyone runs it. For each step
// window it predicts the step time, samples per step, samples per second and the
// efficiency against the ceiling (the sum of the devices' standalone rates), by
// two methods side by side:
//   (a) the run-time model of METHOD.md (model.h): closed forms where they exist,
//       Monte Carlo otherwise, one step at a time;
//   (b) the engine's own discrete-event simulation (simulate.h) over `steps` steps,
//       which carries honest timing from step to step and is, on the virtual clock,
//       the measured run itself.
// Costs come from the virtual clock's duration model (the same defaults and net
// FLOPs as `nbsgd train`), or from measured speeds (compute_s, after_close_s).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "runtime/train/duration_model.h"
#include "runtime/apps/predict/model.h"
#include "runtime/apps/predict/net_cost.h"
#include "runtime/apps/predict/simulate.h"

namespace nbsgd::predict {

struct PredictConfig {
  std::string net = "lenet";
  std::string profile;   // a name in profiles/ or a TOML path; "" = none
  std::string slowdown;  // "1,1,2,4": the profile shorthand of nbsgd train
  int workers = 4;       // devices are named host-worker-0.. as with --host-workers N
  int batch = 128;       // B per worker
  int split = 8;         // m
  std::vector<std::string> windows;  // as on the command line; empty: sync, fastest, quorum:N*m
  std::string cap;                   // "" = each window's default (as --cap of nbsgd train)
  int64_t steps = 200;
  int64_t trials = 10000;  // Monte Carlo trials per schedule range
  double adaptive_guard = 2.0;
  engine::DurationModel model;
  // Measured speeds instead of the duration model: one mini-batch of B/m samples on
  // each worker, before its slowdown (one value: every worker), and the time from a
  // window's close to the next step (exchange + update).
  std::vector<double> compute_s;
  std::optional<double> after_close_s;
  // Across nodes (issue 15; simulate.h RingCost): the workers spread evenly over
  // `nodes` nodes joined by a link of node_link_gbps + node_link_latency_s, and a
  // coordinator whose close reaches every rank decision_s after the window closes.
  int nodes = 1;
  double node_link_gbps = 12.5, node_link_latency_s = 5e-6;
  double decision_s = 0;
};

struct WindowResult {
  std::string name;  // as written
  SimResult sim;
  double sim_efficiency = 0;
  std::optional<ModelResult> model;  // none for adaptive (no model)
  double model_efficiency = 0;
};

struct Prediction {
  PredictConfig cfg;  // windows filled in
  NetCost cost;
  std::string profile_name;
  bool deterministic = true;
  std::vector<double> compute_s;  // per worker, one mini-batch, before slowdowns
  double after_close_s = 0;       // exchange + update with all workers
  std::vector<double> rates;        // standalone samples/s, simulated
  double ceiling = 0;
  std::vector<double> model_rates;  // standalone samples/s, closed form
  double model_ceiling = 0;
  std::vector<WindowResult> windows;
  double elapsed_s = 0;  // how long the prediction took
};

// Throws InputError naming the flag for bad input.
Prediction run_prediction(const PredictConfig& cfg);

// The `--json` object: {"windows": {"<name>": {"step_s", "samples_per_step",
// "samples_per_s", "efficiency", ..., "model": {...}}}, "ceiling", "rates", ...}.
nlohmann::json to_json(const Prediction& p);
// The human-readable report: set-up lines and one table.
std::string report(const Prediction& p);

}  // namespace nbsgd::predict
