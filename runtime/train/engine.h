// The training engine: one trainer for every exchange and both clocks (METHOD.md).
//
// Each step: a window driver (driver.h; virtual or real clock) runs the step's
// window, commits the mini-batches that finished inside it into the workers'
// accumulators and hands the cancelled ones back to the shared epoch queue; the
// exchange (exchange.h; ring all-reduce, D-PSGD or MATCHA gossip) turns the
// accumulators into the next models. The trainer owns everything around that:
// set-up (setup.h), the run loop and its stopping conditions, the loss tracking
// and the target, evaluation, checkpoints and exact resume, and the summary.
// AD-PSGD has no steps: it runs its own event loop (adpsgd.cpp) inside the same
// trainer, with the same set-up, metrics, checkpoints and summary.
#pragma once

#include <array>
#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "runtime/device/device.h"
#include "runtime/device/stream.h"
#include "runtime/train/config.h"
#include "runtime/train/records.h"

namespace nbsgd::engine {

// Start-up and end-of-run phases ("loading data", "building models", "final
// evaluation"): called with done = false as a phase begins and true as it ends.
using PhaseHook = std::function<void(const std::string& phase, bool done)>;

class Engine {
 public:
  explicit Engine(const TrainConfig& cfg, PhaseHook phase = {});  // validates every flag first
  ~Engine();

  // Runs to the stopping condition, calling on_step after every step. `stop`
  // (set by a signal) ends the run: on the real clock the window in flight closes
  // at once (what finished counts, the rest is cancelled) and no wait outlasts it;
  // the virtual clock's step in flight is a simulation and runs to its end. The
  // final evaluation is skipped, or cut short, and the summary says `interrupted`.
  // A non-finite training loss ends the run with an InputError naming the step.
  RunSummary run(const std::function<void(const StepRecord&)>& on_step, const std::atomic<bool>* stop = nullptr);

  // Writes the checkpoint atomically: the model under PyTorch's names (for gossip,
  // the averaged model), momentum, and everything an exact --resume needs (every
  // replica for gossip, the queue, the clock, the timeline, the loss window).
  void save_checkpoint(const std::string& path) const;

  const TrainConfig& config() const;
  int64_t steps_done() const;  // steps taken, a resumed checkpoint's included
  std::string describe() const;  // config + device table, for the start of a run
  int workers() const;
  size_t num_params() const;
  double flops_per_sample() const;
  bool virtual_clock() const;
  int64_t train_samples() const;  // the training set's size (after --train-limit)
  const DeviceList& devices() const;
  // Hashes of every replica's weights (bit-identical replicas give equal hashes).
  std::vector<uint64_t> replica_hashes() const;
  // Host copies of every replica's parameters; replace replica i (tests).
  std::vector<std::vector<float>> replicas() const;
  void set_replica(int i, const std::vector<float>& params);
  // What worker i's streams were asked to do so far (stream.h's IssueCounts): its
  // compute, copy, comm and update streams, in that order.
  std::array<IssueCounts, 4> issue_counts(int i) const;
  // Gossip exchanges: worker i's (j, W_ij) in `step`, as the exchange uses them.
  std::vector<std::vector<std::pair<int, double>>> step_weights(int64_t step) const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace nbsgd::engine
