// The exchange of a step: what turns every worker's committed accumulator
// [G_i, n_i, loss_i] into the models of the next step. The trainer, both window
// drivers and both timelines see only this interface.
//
//   AllReduceExchange (--exchange ring): one sum of [G, n, loss] over all workers,
//       then the identical fused update on every replica (replicas stay identical).
//   GossipExchange (--exchange dpsgd | matcha): each worker's local step with its own
//       n_i, then x_i <- sum_j W_ij(t) x_j over the step's active neighbours.
//
// A new exchange (for example a hierarchical all-reduce over nodes) implements:
//   - waits_for(step, w): the workers whose step-`step` models w's exchange needs
//     (ring: everybody; gossip: the active neighbours). The virtual timelines use it
//     to decide when w's exchange may start; nothing else is a barrier.
//   - modelled_s(step, w): the exchange's duration on the virtual clock (the update
//     that follows is DurationModel::update_s, added by the timelines);
//   - enqueue(...): the device work, on the workers' comm streams, after `ready`;
//     it records every worker's update_done (and update_done_of[step & 1]) and
//     fills the step's read-back slot; each step uses worker.accumulator(step);
//   - updates_on_update_stream(): the update runs on the worker's update stream
//     (after the sum, and after a cancelled mini-batch still running), so the comm
//     stream is free for the next step's sum; the step then ends on that stream;
//   - totals(): the step's (n, loss sum) from that slot;
//   - replicated(): whether the replicas are identical after every step: then
//     worker 0's model is the one evaluated and checkpointed; otherwise the
//     averaged model is evaluated, every replica is checkpointed, and consensus()
//     reports the replicas' spread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "nets/optim/sgd.h"
#include "runtime/device/stream.h"
#include "runtime/train/config.h"
#include "runtime/train/duration_model.h"
#include "runtime/train/gossip/mixing.h"
#include "runtime/train/worker.h"

namespace nbsgd::engine {

class Exchange {
 public:
  virtual ~Exchange() = default;
  virtual std::string describe() const = 0;
  virtual bool replicated() const = 0;
  virtual const std::vector<int>& waits_for(int64_t step, int w) const = 0;
  virtual double modelled_s(int64_t step, int w) const = 0;
  // Floats of one step's read-back slot (pinned host memory the caller owns).
  virtual size_t readback_floats() const = 0;
  // `ready`: per worker, the last writer of its accumulator(step) (with nothing
  // counted, the update that last read it: accumulator_free(step)); `running` (may be
  // empty): per worker, a cancelled mini-batch still reading its weights, which the
  // worker's own update must wait for.
  virtual void enqueue(int64_t step, double lr, const std::vector<const Event*>& ready,
                       const std::vector<const Event*>& running, float* readback) = 0;
  // A step's totals from its read-back slot, once the slot's event passed.
  struct Totals {
    double n = 0, loss_sum = 0;
    double mean_loss = 0;  // as the exchange computes it (NaN when n = 0)
  };
  virtual Totals totals(const float* readback) const = 0;
  virtual bool updates_on_update_stream() const { return false; }
  // Steps before `step` will not be asked for again (caches may forget them).
  virtual void forget_before(int64_t step) { (void)step; }
};

// The exchange --exchange names (ring, dpsgd, matcha); the workers outlive it.
std::unique_ptr<Exchange> make_exchange(const TrainConfig& cfg, std::vector<std::unique_ptr<Worker>>& workers,
                                        const optim::SgdConfig& sgd, const DurationModel& model);

// The mixing plan of a gossip exchange (topology, MATCHA probabilities), for tests,
// AD-PSGD's neighbour lists and the run's description.
struct GossipPlanInfo {
  gossip::Graph graph;
  gossip::MixingPlan plan;
};
GossipPlanInfo make_gossip_plan(const TrainConfig& cfg, int workers);

// dpsgd, matcha or adpsgd.
bool is_gossip_exchange(const std::string& exchange);

}  // namespace nbsgd::engine
