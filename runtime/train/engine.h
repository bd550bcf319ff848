// The non-blocking step engine (METHOD.md: windows, unfinished work, aggregation).
//
// One Worker per device. Each step: a window policy (StepController) decides when
// the step ends; mini-batches finished inside the window are committed into each
// worker's accumulator; unfinished ones are cancelled and their samples go back to
// the shared epoch queue; the accumulators [G, n, loss] are summed across workers;
// one fused kernel per worker applies the update. The same engine runs
//   --clock virtual (host workers): the window is decided on the duration model's
//       time (VirtualTimeline); the math runs for real for every counted mini-batch;
//   --clock real: workers run for real; completion notices (host tasks on the
//       compute streams) feed the same StepController.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "runtime/device/device.h"
#include "runtime/train/config.h"
#include "runtime/train/timeline.h"

namespace nbsgd::engine {

struct StepRecord {
  int64_t step = 0, epoch = 0;
  double t = 0;         // seconds since start on the run's clock, at the end of the step
  double loss = 0;      // mean over the step's finished samples (NaN if none)
  double lr = 0;
  int64_t samples = 0;  // n
  std::vector<int> finished;  // k_i
  std::vector<double> delay_s;
  double window_s = 0;
  bool skipped = false;
  double consensus = -1;  // gossip: mean ||x_i - x_bar||^2
};

struct RunSummary {
  int64_t steps = 0, epochs_completed = 0, samples = 0;
  double wall_s = 0, clock_s = 0, samples_per_s = 0;
  double final_train_loss = 0, test_loss = 0, test_accuracy = 0;
  std::optional<double> time_to_target_s;
  std::vector<int64_t> samples_per_epoch;  // completed epochs
  int64_t partial_epoch_samples = 0;
  int64_t skipped_steps = 0;
  bool interrupted = false;
  int64_t wasted_minibatches = 0;
};

class Engine {
 public:
  explicit Engine(const TrainConfig& cfg);
  ~Engine();

  // Runs to the stopping condition, calling on_step after every step. `stop`
  // (e.g. set by SIGINT) ends the run after the current step.
  RunSummary run(const std::function<void(const StepRecord&)>& on_step, const std::atomic<bool>* stop = nullptr);

  // Writes the checkpoint (weights, BN buffers, momentum and run state) atomically.
  void save_checkpoint(const std::string& path) const;

  const TrainConfig& config() const;
  std::string describe() const;  // config + device table, for the start of a run
  int workers() const;
  size_t num_params() const;
  double flops_per_sample() const;
  bool virtual_clock() const;
  const DeviceList& devices() const;
  // Hashes of every replica's weights (bit-identical replicas give equal hashes).
  std::vector<uint64_t> replica_hashes() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace nbsgd::engine
