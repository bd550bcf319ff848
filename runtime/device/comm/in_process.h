// In-process communicators: host workers, and CUDA workers that share a device
// (SM partitions), all driven from one process through shared memory.
//
// Deterministic by construction: every element's sum runs over the workers in
// order 0..N-1 (all-reduce) or over the neighbours in ascending j (gossip), and
// every worker ends with the same bits, whatever the timing.
#pragma once

#include <vector>

#include "runtime/device/buffer.h"
#include "runtime/device/comm/comm.h"

namespace nbsgd::comm {

// Reduce-scatter + all-gather over N chunks (sizes differ by at most one):
//   phase 1 (reduce-scatter): worker k reduces chunk k, reading chunk k of every
//            worker in order 0..N-1, and writes it into its own buffer in place;
//   barrier: every comm stream waits for every phase-1 event (phase 2 overwrites
//            chunks that other workers read in phase 1);
//   phase 2 (all-gather): worker k copies chunk j from its owner j, for j != k;
//   barrier: every comm stream waits for every phase-2 event (worker k's chunk k is
//            read by the others until then, so k must not modify it earlier).
// Each worker reduces 1/N of the buffer and gathers (N-1)/N of it, as in a ring;
// but in shared memory the owner reads the other workers' chunks directly, and
// every chunk is summed in the same fixed order, which a ring (whose order starts
// at each chunk's successor) would not give. CUDA workers on another device are
// read through a peer copy into a staging slice on the reducer's device.
class InProcessAllReduce final : public AllReduce {
 public:
  explicit InProcessAllReduce(std::vector<DeviceContext*> workers);
  ~InProcessAllReduce() override;
  int size() const override { return static_cast<int>(w_.size()); }
  const char* name() const override { return "in-process"; }
  void all_reduce_sum(const std::vector<float*>& buffers, size_t count,
                      const std::vector<const Event*>& ready) override;

 private:
  std::vector<DeviceContext*> w_;
  std::vector<Event> phase1_, phase2_;
  std::vector<Buffer> staging_;  // per worker, N slices of one chunk (cross-device only)
};

// Double-buffered neighbour averaging: worker i computes its new model into a
// private buffer tmp_i from its neighbours' current models (ascending j), records
// "read done", waits for the "read done" of every worker that reads x_i, then
// copies tmp_i over x_i. Only neighbours wait for one another.
class InProcessGossip final : public GossipExchange {
 public:
  explicit InProcessGossip(std::vector<DeviceContext*> workers);
  ~InProcessGossip() override;
  int size() const override { return static_cast<int>(w_.size()); }
  const char* name() const override { return "in-process"; }
  void mix(const std::vector<float*>& x, size_t count, const MixWeights& w,
           const std::vector<const Event*>& ready) override;
  void fused_gossip_sgd(const std::vector<float*>& x, const std::vector<float*>& acc, size_t P,
                        const GossipStep& step, const MixWeights& w,
                        const std::vector<const Event*>& ready) override;

 private:
  // Shared steps of mix() and fused_gossip_sgd(): check, wait for the neighbours'
  // ready events, size the private buffers.
  std::vector<std::vector<int>> prepare(size_t nbuf, size_t count, size_t slot, const MixWeights& w,
                                        const std::vector<const Event*>& ready, int slots_per_source);
  // The pointer worker i reads worker j's `src` through: direct when they share
  // memory, else a peer copy into staging slot `slot_index` of i.
  const float* source(int i, int j, const float* src, size_t floats, size_t slot, int& slot_index);

  std::vector<DeviceContext*> w_;
  std::vector<Event> read_done_;
  std::vector<Buffer> tmp_, staging_;
};

}  // namespace nbsgd::comm
