// Method (a) of `nbsgd predict`: the run-time model of METHOD.md
// (runtime/apps/predict/runtime_model.h: closed forms where they exist, Monte Carlo
// otherwise) for one step, averaged over the run. A profile's schedule makes the
// step depend on the step number, so the run is cut into ranges over which no
// device's settings change, each range is modelled once, and the ranges are
// weighted by their number of steps (renewal-reward: samples per second is the
// ratio of the expected totals).
//
// The model treats every step as starting with all workers free; the engine lets
// a mini-batch that was running at the close finish first (honest timing). The
// model's step time is therefore a lower bracket, and `busy_step_s` (every worker
// free again), where the model computes it, an upper one.
#pragma once

#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "runtime/train/straggler/profile.h"
#include "runtime/apps/predict/runtime_model.h"

namespace nbsgd::predict {

struct ModelResult {
  double window_s = 0;  // E[T]: from the step's start to the window's close
  double step_s = 0;    // window_s + the fixed cost after the close (exchange + update)
  std::optional<double> busy_step_s;  // E[every worker free] + the fixed cost
  double samples_per_step = 0;
  double step_s_error = 0;  // Monte Carlo standard errors (0 for closed forms)
  double samples_error = 0;
  bool exact = true;       // every range had a closed form
  int64_t trials = 0;      // Monte Carlo trials per range (0: none)
  double samples_per_s() const { return step_s > 0 ? samples_per_step / step_s : 0.0; }
};

// The ranges [from, to) of steps 0..steps-1 over which no device's slowdown,
// delay or stall changes.
std::vector<std::pair<int64_t, int64_t>> constant_ranges(const straggler::ResolvedProfile& profile, int64_t steps);

// `base_compute_s[i]`: device i's time for one mini-batch of b samples, before its
// slowdown. `after_close_s`: exchange + update, added to every step.
ModelResult model_window(const straggler::ResolvedProfile& profile, const std::vector<double>& base_compute_s,
                         int64_t m, int64_t b, const straggler::WindowPolicy& policy, double after_close_s,
                         int64_t steps, int64_t trials);

// Device i alone (its step is its own m mini-batches, then `after_close_s`): the
// expected samples per second over the run, in closed form. 0 where a delay has
// no finite mean (Pareto with alpha <= 1).
double model_standalone_rate(const straggler::ResolvedProfile& profile, int device, double base_compute_s,
                             int64_t m, int64_t b, double after_close_s, int64_t steps);

}  // namespace nbsgd::predict
