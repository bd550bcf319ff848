// Communicators: summing a flat float buffer across N workers (all-reduce), and the
// gossip exchange x_i <- sum_j W_ij x_j of D-PSGD / MATCHA.
//
// Ordering contract (both kinds, every implementation):
//   - One host thread enqueues the exchange for ALL workers in one call and gets
//     control back at once; nothing blocks the caller.
//   - The caller passes, per worker, an event recorded on that worker's compute
//     stream after the data is final (`ready`; null entries or an empty vector mean
//     "no wait"). The communicator makes the comm streams wait on it: the caller
//     does not.
//   - All work is on each worker's comm stream (DeviceContext::comm()). After the
//     call, the caller records an event on workers[i]->comm() and has the compute
//     stream wait on it before touching the buffer again.
//   - Workers synchronise among themselves only through events between comm
//     streams; a gossip worker waits only for the neighbours it exchanges with.
#pragma once

#include <cstddef>
#include <memory>
#include <utility>
#include <vector>

#include "runtime/device/context.h"
#include "runtime/device/stream.h"

namespace nbsgd::comm {

// For each worker i, the (j, W_ij) it mixes with this step, including (i, W_ii),
// j ascending (runtime/train/gossip/mixing.h step_weights).
using MixWeights = std::vector<std::vector<std::pair<int, double>>>;

class AllReduce {
 public:
  virtual ~AllReduce() = default;
  virtual int size() const = 0;
  virtual const char* name() const = 0;
  // In place: buffers[i] (count floats on worker i's device) becomes the sum over
  // all workers, the same on every worker.
  virtual void all_reduce_sum(const std::vector<float*>& buffers, size_t count,
                              const std::vector<const Event*>& ready) = 0;
};

struct GossipStep {
  float lr = 0.0f;            // this step's learning rate (times any lr scale)
  float weight_decay = 0.0f;
};

class GossipExchange {
 public:
  virtual ~GossipExchange() = default;
  virtual int size() const = 0;
  virtual const char* name() const = 0;
  // x_i <- sum_j W_ij x_j for every worker at once (all x_j are read before any is
  // written), summed in ascending j.
  virtual void mix(const std::vector<float*>& x, size_t count, const MixWeights& w,
                   const std::vector<const Event*>& ready) = 0;
  // Local step then mix (METHOD "Aggregation", gossip variants), plain SGD:
  //   x_j+ = x_j - lr * (G_j/n_j + wd*x_j)   (x_j+ = x_j when n_j = 0)
  //   x_i <- sum_j W_ij x_j+ ;  acc_i (P+2: G, n, loss) zeroed.
  // acc[i] is worker i's accumulator; `ready` must cover both x and acc.
  // Momentum does not fuse (each buffer must advance exactly once, by its owner):
  // with momentum, run optim::fused_sgd_update on each worker, then mix().
  virtual void fused_gossip_sgd(const std::vector<float*>& x, const std::vector<float*>& acc, size_t P,
                                const GossipStep& step, const MixWeights& w,
                                const std::vector<const Event*>& ready) = 0;
};

// True when NCCL is the transport: more than one worker, all CUDA, on pairwise
// distinct devices, in a build with the CUDA backend.
bool nccl_applies(const std::vector<DeviceContext*>& workers);

// NCCL when nccl_applies(), the in-process implementation otherwise (host workers,
// or CUDA workers sharing a device, e.g. SM partitions). The contexts must outlive
// the communicator.
std::unique_ptr<AllReduce> make_all_reduce(const std::vector<DeviceContext*>& workers);
std::unique_ptr<GossipExchange> make_gossip_exchange(const std::vector<DeviceContext*>& workers);

// Checks a MixWeights against N workers: one list per worker, j in range and
// strictly ascending, (i, W_ii) present, at most kMaxSources entries. Returns, per
// worker, the workers whose list names it (its readers), excluding itself.
std::vector<std::vector<int>> check_weights(const MixWeights& w, int n);

// [begin, end) of chunk k when `count` elements are split into n chunks whose sizes
// differ by at most one (the first count % n chunks are one longer).
inline std::pair<size_t, size_t> chunk_range(size_t count, int n, int k) {
  const size_t base = count / static_cast<size_t>(n), extra = count % static_cast<size_t>(n);
  const size_t kk = static_cast<size_t>(k);
  const size_t begin = kk * base + (kk < extra ? kk : extra);
  return {begin, begin + base + (kk < extra ? 1 : 0)};
}

}  // namespace nbsgd::comm
