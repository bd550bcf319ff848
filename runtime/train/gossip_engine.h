// GossipEngine: decentralised training (METHOD.md, "Aggregation", gossip variants).
//
//   --exchange dpsgd | matcha, any --window: every worker keeps its own replica x_i.
//       Step t of worker i: g_i = G_i / n_i from the mini-batches it finished inside
//       its window (no local step if n_i = 0), x_i <- x_i - lr * g_i, then
//       x_i <- sum_j W_ij x_j over the step's active neighbours (MATCHA draws the
//       active matchings from a stream all workers share). `--window sync` is the
//       blocking baseline, with no global barrier (GossipTimeline has the timing).
//   --exchange adpsgd (Lian et al. 2018): no steps. Each worker loops: gradient of
//       one batch (its m mini-batches, B samples) at the model it reads when the
//       iteration starts, then atomically average its model with one random
//       neighbour (1/2-1/2), then apply its gradient. Events run in virtual time
//       order with a fixed tie-break, so a seed gives the same run bit for bit.
//       A reported "step" of AD-PSGD is a round of N iterations (any workers), i.e.
//       N*B samples, the work of one synchronous step; --steps counts rounds.
//
// Same TrainConfig, StepRecord and RunSummary as Engine, so the CLI output and
// metrics code is shared. StepRecord::consensus is mean_i ||x_i - x_bar||^2 after
// the step; the test set is evaluated on the averaged model x_bar (with worker 0's
// BN buffers). The virtual clock runs every variant on host workers. The real clock
// (GPUs, or --clock real on host workers) runs dpsgd/matcha with --window sync, the
// blocking baselines, event-driven with no global barrier (gossip_real.cpp); the
// non-blocking gossip windows and AD-PSGD are refused there.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "runtime/device/device.h"
#include "runtime/train/config.h"
#include "runtime/train/engine.h"

namespace nbsgd::engine {

// dpsgd, matcha or adpsgd.
bool is_gossip_exchange(const std::string& exchange);

class GossipEngine {
 public:
  explicit GossipEngine(const TrainConfig& cfg);
  ~GossipEngine();

  RunSummary run(const std::function<void(const StepRecord&)>& on_step, const std::atomic<bool>* stop = nullptr);

  // The averaged model (params x_bar, worker 0's BN buffers, mean momentum), atomically.
  void save_checkpoint(const std::string& path) const;

  const TrainConfig& config() const;
  std::string describe() const;
  int workers() const;
  size_t num_params() const;
  bool virtual_clock() const;
  const DeviceList& devices() const;

  // Host copies of every replica's parameters.
  std::vector<std::vector<float>> replicas() const;
  // Replaces replica i's parameters (tests: start the replicas apart).
  void set_replica(int i, const std::vector<float>& params);
  // For dpsgd/matcha: worker i's (j, W_ij) in `step`, as the exchange uses them.
  std::vector<std::vector<std::pair<int, double>>> step_weights(int64_t step) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace nbsgd::engine
