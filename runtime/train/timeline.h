// VirtualTimeline: one step of the engine on the virtual clock, as a discrete-event
// simulation of what the GPUs would do (METHOD.md, "Honest timing"):
//   - a worker starts the step when it is free (an in-flight mini-batch cancelled
//     at the previous close still runs to its end) and after its stall, if any;
//   - a mini-batch commits after its compute time plus its injected delay (the
//     throttle's (s-1)c and the random delay run before the commit, as the delay
//     kernel does on a GPU); a running one is never cut short by a window closing;
//   - the window's rules are StepController's; ties are broken by time, then
//     completions before the deadline before hand-outs, then worker index;
//   - the exchange starts when the window closes and the update follows it.
// The engine runs the math for what this says counted; `nbsgd predict` runs it alone.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "runtime/train/controller.h"
#include "runtime/train/duration_model.h"
#include "runtime/train/straggler/profile.h"

namespace nbsgd::engine {

struct SimMiniBatch {
  int worker = 0;
  int size = 0;
  int64_t handle = -1;  // what the take callback returned (the engine's mini-batch)
  double start = 0, commit = 0, free = 0;
  bool counted = false;
};

struct StepOutcome {
  int64_t step = 0;
  double t0 = 0, close = 0, end = 0;  // start, window close, after exchange + update
  std::vector<int> finished;          // k_i
  std::vector<int> samples;           // n_i
  std::vector<double> delay_s;        // injected delay + stall per worker in this step
  std::vector<SimMiniBatch> minibatches;  // in hand-out order
  int64_t total_samples = 0;
  double window_s() const { return close - t0; }
};

struct TimelineConfig {
  ControllerConfig controller;
  DurationModel model;
  double flops_per_sample = 0;
  size_t exchange_bytes = 0;  // per worker, per step
  size_t params = 0;          // for the update's cost
  // Exchange cost override (gossip); < 0: ring all-reduce of exchange_bytes.
  double exchange_s = -1.0;
};

class VirtualTimeline {
 public:
  VirtualTimeline(const TimelineConfig& cfg, const straggler::ResolvedProfile& profile);

  // Hands out a mini-batch of at most `size` samples to worker w; returns a handle
  // and the actual size (0 when no data is left).
  using TakeFn = std::function<int64_t(int w, int size, int& actual)>;
  StepOutcome step(int64_t step_index, const TakeFn& take);

  double now() const { return now_; }
  const std::vector<double>& free_at() const { return free_at_; }
  StepController& controller() { return ctl_; }
  // Resume support: the timeline's whole state.
  void restore(double now, const std::vector<double>& free_at, const std::vector<double>& rates);

 private:
  TimelineConfig cfg_;
  straggler::ResolvedProfile profile_;
  StepController ctl_;
  double now_ = 0.0;
  std::vector<double> free_at_;
};

// Per-step, per-device random streams: derived from (seed, step), so a resumed run
// draws exactly what the uninterrupted one drew.
straggler::Rng step_stream(const straggler::ResolvedProfile& p, int device, int64_t step, straggler::RngPurpose purpose);

}  // namespace nbsgd::engine
