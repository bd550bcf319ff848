// NCCL over the ranks of a launch (nccl_ranks.h): ncclCommInitRank with the unique id
// broadcast over MPI.
#include <nccl.h>

#include <string>
#include <vector>

#include "kernels/launch.h"
#include "runtime/device/buffer.h"
#include "runtime/device/check.h"
#include "runtime/device/comm/nccl_ranks.h"
#include "runtime/device/comm/ops.h"
#include "runtime/device/cuda/cuda_check.h"

namespace nbsgd::comm {
namespace {

cudaStream_t comm_stream(DeviceContext& c) { return static_cast<cudaStream_t>(c.comm().native()); }

// This rank's communicator among all ranks; destroyed after its comm stream drained.
class RankComm {
 public:
  explicit RankComm(DeviceContext& w) : w_(w) {
    const Launch& l = launch();
    NBSGD_CHECK(w.backend() == Backend::Cuda, "NCCL across ranks needs a CUDA worker");
    ncclUniqueId id{};
    if (l.rank == 0) NBSGD_NCCL_CHECK(w.device().ordinal, ncclGetUniqueId(&id));
    ranks_bcast(&id, sizeof id, 0);  // MPI: bounded, names a rank that does not answer
    NBSGD_CUDA_CHECK(w.device().ordinal, cudaSetDevice(w.device().ordinal));
    NBSGD_NCCL_CHECK(w.device().ordinal, ncclCommInitRank(&comm_, l.size, id, l.rank));
    rank_ = l.rank;
    size_ = l.size;
  }
  ~RankComm() {
    NBSGD_CUDA_LOG(w_.device().ordinal, cudaStreamSynchronize(comm_stream(w_)));
    if (comm_) {
      ncclResult_t r = ncclCommDestroy(comm_);
      if (r != ncclSuccess)
        log_error(__FILE__, __LINE__, w_.device().ordinal, "ncclCommDestroy", ::nbsgd::detail::nccl_detail(r));
    }
  }
  RankComm(const RankComm&) = delete;
  RankComm& operator=(const RankComm&) = delete;

  ncclComm_t get() const { return comm_; }
  DeviceContext& worker() const { return w_; }
  int rank() const { return rank_; }
  int size() const { return size_; }
  void wait_ready(const std::vector<const Event*>& ready) const {
    NBSGD_CHECK(ready.empty() || ready.size() == 1, "ready: one event (or null), this rank's");
    if (!ready.empty() && ready[0]) w_.comm().wait(*ready[0]);
  }

 private:
  DeviceContext& w_;
  ncclComm_t comm_ = nullptr;
  int rank_ = 0, size_ = 1;
};

class NcclRankAllReduce final : public AllReduce {
 public:
  explicit NcclRankAllReduce(DeviceContext& w) : c_(w) {}
  int size() const override { return c_.size(); }
  const char* name() const override { return "nccl across ranks"; }
  void all_reduce_sum(const std::vector<float*>& buffers, size_t count,
                      const std::vector<const Event*>& ready) override {
    NBSGD_CHECK(buffers.size() == 1, "all_reduce_sum across ranks: this rank's one buffer");
    c_.wait_ready(ready);
    if (count == 0) return;
    NBSGD_NCCL_CHECK(c_.worker().device().ordinal, ncclAllReduce(buffers[0], buffers[0], count, ncclFloat, ncclSum,
                                                                 c_.get(), comm_stream(c_.worker())));
  }

 private:
  RankComm c_;
};

class NcclRankGossip final : public GossipExchange {
 public:
  explicit NcclRankGossip(DeviceContext& w) : c_(w) {}
  int size() const override { return c_.size(); }
  const char* name() const override { return "nccl across ranks"; }

  void mix(const std::vector<float*>& x, size_t count, const MixWeights& w,
           const std::vector<const Event*>& ready) override {
    NBSGD_CHECK(x.size() == 1, "gossip across ranks: this rank's one buffer");
    const std::vector<std::vector<int>> readers = check_weights(w, size());
    const int me = c_.rank();
    const auto& mine = w[static_cast<size_t>(me)];
    DeviceContext& dc = c_.worker();
    const int dev = dc.device().ordinal;
    if (count > 0 && recv_.bytes() < (mine.size() - 1) * count * sizeof(float)) {
      dc.comm().synchronize();  // the old slices may be in use
      recv_ = Buffer(Backend::Cuda, dev, (mine.size() - 1) * count * sizeof(float));
    }
    c_.wait_ready(ready);
    if (count == 0) return;
    // One group: x to every rank that reads it, each neighbour's model into its
    // slice (slices follow the list's ascending j).
    NBSGD_NCCL_CHECK(dev, ncclGroupStart());
    ncclResult_t rc = ncclSuccess;
    for (int r : readers[static_cast<size_t>(me)])
      if (rc == ncclSuccess) rc = ncclSend(x[0], count, ncclFloat, r, c_.get(), comm_stream(dc));
    size_t slot = 0;
    for (auto [j, wij] : mine) {
      if (j == me || rc != ncclSuccess) continue;
      rc = ncclRecv(recv_.as<float>() + slot++ * count, count, ncclFloat, j, c_.get(), comm_stream(dc));
    }
    const ncclResult_t end = ncclGroupEnd();
    NBSGD_NCCL_CHECK(dev, rc);
    NBSGD_NCCL_CHECK(dev, end);
    // In place, after the sends on this stream: every element is read from every
    // source before it is written.
    WeightedSumOp op{};
    op.n = static_cast<int>(mine.size());
    op.dst = x[0];
    slot = 0;
    for (size_t s = 0; s < mine.size(); ++s) {
      op.src[s] = mine[s].first == me ? x[0] : recv_.as<float>() + slot++ * count;
      op.w[s] = static_cast<float>(mine[s].second);
    }
    kernels::launch_1d(dc.comm(), count, op);
  }

  void fused_gossip_sgd(const std::vector<float*>& x, const std::vector<float*>& acc, size_t P,
                        const GossipStep& step, const MixWeights& w,
                        const std::vector<const Event*>& ready) override {
    NBSGD_CHECK(x.size() == 1 && acc.size() == 1, "fused_gossip_sgd across ranks: this rank's one buffer");
    check_weights(w, size());
    c_.wait_ready(ready);
    DeviceContext& dc = c_.worker();
    kernels::launch_1d(dc.comm(), P, LocalSgdStepOp{x[0], acc[0], P, step.lr, step.weight_decay});
    kernels::launch_1d(dc.comm(), 2, ClearOp{acc[0] + P});
    mix(x, P, w, {});
  }

 private:
  RankComm c_;
  Buffer recv_;
};

}  // namespace

std::unique_ptr<AllReduce> make_nccl_rank_all_reduce(DeviceContext& worker) {
  return std::make_unique<NcclRankAllReduce>(worker);
}
std::unique_ptr<GossipExchange> make_nccl_rank_gossip(DeviceContext& worker) {
  return std::make_unique<NcclRankGossip>(worker);
}

}  // namespace nbsgd::comm
