// StepController: the rules of one step, as pure bookkeeping. It is fed
// completions in time order and answers "may worker w start another mini-batch,
// and of what size?" and "is the window closed, and when?". The virtual-clock
// simulator, the real-clock engine and `nbsgd predict` all use this one class, so
// the three cannot disagree about the rules.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "runtime/train/window.h"

namespace nbsgd::engine {

struct ControllerConfig {
  WindowSpec window;
  int workers = 1;
  int batch = 128;  // B, per worker
  int split = 8;    // m: mini-batches per worker batch
  int cap = 8;      // max mini-batches per worker per step; -1: none
  // adaptive: the guard closes the step at guard_factor x the predicted step time.
  double adaptive_guard = 2.0;
  int mini_batch() const { return batch / split; }
};

class StepController {
 public:
  explicit StepController(const ControllerConfig& cfg);

  // Starts a step at time t0. `rates` (samples/s per worker, 0 = unknown) feed the
  // adaptive plan; other policies ignore them.
  void begin_step(double t0);

  // The window's clock starts at t0 instead (the earliest moment a mini-batch of the
  // step can begin: the first worker's update of the previous step has ended). The
  // deadline and the adaptive guard count from it; the plan is kept.
  void restart_clock(double t0);

  // Size of the next mini-batch worker w may start now (0: it must not start one).
  int next_size(int w) const;
  void on_start(int w, int size);
  // A completion at time t (times arrive in non-decreasing order). Returns true if
  // the mini-batch counts (it finished inside the window).
  bool on_complete(int w, double t, int size);
  // Absolute time at which the window closes by itself, if the policy has one.
  std::optional<double> deadline() const;
  // Closes the window at t (the deadline passed, or the engine is stopping).
  void close_at(double t);

  bool closed() const { return closed_; }
  double close_time() const { return close_t_; }
  double step_start() const { return t0_; }
  const std::vector<int>& finished() const { return finished_; }          // k_i
  const std::vector<int>& finished_samples() const { return samples_; }  // n_i
  int64_t total_finished() const { return total_; }
  // The per-worker plan of the adaptive policy (sizes of its mini-batches).
  const std::vector<std::vector<int>>& plan() const { return plan_; }

  // Rate estimates, samples per second (exponential moving average of completed
  // mini-batches' service times). The engine feeds every completion, counted or
  // wasted, with its start and end time.
  void observe(int w, double start, double end, int size);
  const std::vector<double>& rates() const { return rate_; }
  void set_rates(const std::vector<double>& r) { rate_ = r; }

 private:
  void make_adaptive_plan();
  bool policy_closes() const;

  ControllerConfig cfg_;
  double t0_ = 0.0;
  bool closed_ = false;
  double close_t_ = 0.0;
  std::vector<int> started_, finished_, samples_;
  int64_t total_ = 0;
  std::vector<std::vector<int>> plan_;
  std::vector<double> rate_;
  std::optional<double> deadline_;
  double predicted_ = 0;  // adaptive: the plan's predicted step time
};

}  // namespace nbsgd::engine
