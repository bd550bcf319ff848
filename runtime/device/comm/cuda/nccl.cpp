// NCCL communicators (CUDA backend only): one ncclComm_t per device, all created by
// ncclCommInitAll in this process, driven from one host thread inside groups.
#include <nccl.h>

#include <string>

#include "runtime/device/buffer.h"
#include "runtime/device/check.h"
#include "kernels/launch.h"
#include "runtime/device/comm/nccl.h"
#include "runtime/device/comm/ops.h"
#include "runtime/device/cuda/cuda_check.h"

namespace nbsgd::comm {
namespace {

cudaStream_t comm_stream(DeviceContext& c) { return static_cast<cudaStream_t>(c.comm().native()); }

// One communicator per worker; destroyed after the comm streams drained.
class NcclComms {
 public:
  explicit NcclComms(const std::vector<DeviceContext*>& workers) : w_(workers) {
    NBSGD_CHECK(nccl_applies(w_), "NCCL needs CUDA workers on pairwise distinct devices");
    std::vector<int> devs;
    for (auto* c : w_) devs.push_back(c->device().ordinal);
    comms_.resize(w_.size());
    NBSGD_NCCL_CHECK(-1, ncclCommInitAll(comms_.data(), static_cast<int>(devs.size()), devs.data()));
  }
  ~NcclComms() {
    for (size_t i = 0; i < w_.size(); ++i) {
      NBSGD_CUDA_LOG(w_[i]->device().ordinal, cudaStreamSynchronize(comm_stream(*w_[i])));
      if (comms_[i]) {
        ncclResult_t r = ncclCommDestroy(comms_[i]);
        if (r != ncclSuccess)
          log_error(__FILE__, __LINE__, w_[i]->device().ordinal, "ncclCommDestroy", ::nbsgd::detail::nccl_detail(r));
      }
    }
  }
  NcclComms(const NcclComms&) = delete;
  NcclComms& operator=(const NcclComms&) = delete;

  ncclComm_t operator[](size_t i) const { return comms_[i]; }
  const std::vector<DeviceContext*>& workers() const { return w_; }
  int size() const { return static_cast<int>(w_.size()); }

  // Each worker's comm stream waits for its own ready event: NCCL itself holds each
  // peer's part of a collective until that peer's stream reaches it.
  void wait_ready(const std::vector<const Event*>& ready) const {
    NBSGD_CHECK(ready.empty() || ready.size() == w_.size(), "ready: one event (or null) per worker");
    for (size_t i = 0; i < ready.size(); ++i)
      if (ready[i]) w_[i]->comm().wait(*ready[i]);
  }

  // Runs `body` between ncclGroupStart and ncclGroupEnd; the group is closed even
  // when `body` throws.
  template <class F>
  void group(F&& body) const {
    NBSGD_NCCL_CHECK(-1, ncclGroupStart());
    try {
      body();
    } catch (...) {
      ncclGroupEnd();
      throw;
    }
    NBSGD_NCCL_CHECK(-1, ncclGroupEnd());
  }

 private:
  std::vector<DeviceContext*> w_;
  std::vector<ncclComm_t> comms_;
};

class NcclAllReduce final : public AllReduce {
 public:
  explicit NcclAllReduce(const std::vector<DeviceContext*>& workers) : comms_(workers) {}
  int size() const override { return comms_.size(); }
  const char* name() const override { return "nccl"; }

  void all_reduce_sum(const std::vector<float*>& buffers, size_t count,
                      const std::vector<const Event*>& ready) override {
    const auto& w = comms_.workers();
    NBSGD_CHECK(buffers.size() == w.size(), "all_reduce_sum: one buffer per worker");
    comms_.wait_ready(ready);
    if (count == 0) return;
    comms_.group([&] {
      for (size_t i = 0; i < w.size(); ++i)
        NBSGD_NCCL_CHECK(w[i]->device().ordinal, ncclAllReduce(buffers[i], buffers[i], count, ncclFloat, ncclSum,
                                                               comms_[i], comm_stream(*w[i])));
    });
  }

 private:
  NcclComms comms_;
};

class NcclGossip final : public GossipExchange {
 public:
  explicit NcclGossip(const std::vector<DeviceContext*>& workers) : comms_(workers), recv_(workers.size()) {}
  int size() const override { return comms_.size(); }
  const char* name() const override { return "nccl"; }

  void mix(const std::vector<float*>& x, size_t count, const MixWeights& w,
           const std::vector<const Event*>& ready) override {
    const auto& ws = comms_.workers();
    NBSGD_CHECK(x.size() == ws.size(), "gossip: one buffer per worker");
    std::vector<std::vector<int>> readers = check_weights(w, size());
    if (count > 0)
      for (size_t i = 0; i < ws.size(); ++i) ensure_recv(i, (w[i].size() - 1) * count);
    comms_.wait_ready(ready);
    if (count == 0) return;

    // One group per step: x_i to every worker that reads it, and every neighbour's
    // model into its own receive slice (slices follow the list's ascending j).
    comms_.group([&] {
      for (size_t i = 0; i < ws.size(); ++i) {
        const int dev = ws[i]->device().ordinal;
        for (int r : readers[i])
          NBSGD_NCCL_CHECK(dev, ncclSend(x[i], count, ncclFloat, r, comms_[i], comm_stream(*ws[i])));
        size_t slot = 0;
        for (auto [j, wij] : w[i]) {
          if (j == static_cast<int>(i)) continue;
          NBSGD_NCCL_CHECK(dev, ncclRecv(recv_[i].as<float>() + slot++ * count, count, ncclFloat, j, comms_[i],
                                         comm_stream(*ws[i])));
        }
      }
    });
    // The local weighted sum, in place: the sends of x_i finished earlier on this
    // stream, and each element is read from every source before it is written.
    for (size_t i = 0; i < ws.size(); ++i) {
      WeightedSumOp op{};
      op.n = static_cast<int>(w[i].size());
      op.dst = x[i];
      size_t slot = 0;
      for (size_t s = 0; s < w[i].size(); ++s) {
        op.src[s] = w[i][s].first == static_cast<int>(i) ? x[i] : recv_[i].as<float>() + slot++ * count;
        op.w[s] = static_cast<float>(w[i][s].second);
      }
      kernels::launch_1d(ws[i]->comm(), count, op);
    }
  }

  // The stepped model has to exist before it is sent, so here the local step is its
  // own kernel (on the comm stream), followed by mix(); see comm.h.
  void fused_gossip_sgd(const std::vector<float*>& x, const std::vector<float*>& acc, size_t P,
                        const GossipStep& step, const MixWeights& w,
                        const std::vector<const Event*>& ready) override {
    const auto& ws = comms_.workers();
    NBSGD_CHECK(x.size() == ws.size() && acc.size() == ws.size(), "fused_gossip_sgd: one buffer per worker");
    check_weights(w, size());
    comms_.wait_ready(ready);
    for (size_t i = 0; i < ws.size(); ++i) {
      kernels::launch_1d(ws[i]->comm(), P, LocalSgdStepOp{x[i], acc[i], P, step.lr, step.weight_decay});
      kernels::launch_1d(ws[i]->comm(), 2, ClearOp{acc[i] + P});
    }
    mix(x, P, w, {});
  }

 private:
  void ensure_recv(size_t i, size_t floats) {
    if (recv_[i].bytes() >= floats * sizeof(float)) return;
    for (auto* c : comms_.workers()) c->comm().synchronize();  // the old slices may be in use
    const auto& c = *comms_.workers()[i];
    recv_[i] = Buffer(Backend::Cuda, c.device().ordinal, floats * sizeof(float));
  }

  NcclComms comms_;
  std::vector<Buffer> recv_;
};

}  // namespace

std::unique_ptr<AllReduce> make_nccl_all_reduce(const std::vector<DeviceContext*>& workers) {
  return std::make_unique<NcclAllReduce>(workers);
}
std::unique_ptr<GossipExchange> make_nccl_gossip(const std::vector<DeviceContext*>& workers) {
  return std::make_unique<NcclGossip>(workers);
}

}  // namespace nbsgd::comm
