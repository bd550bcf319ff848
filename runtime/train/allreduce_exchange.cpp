// AllReduceExchange: the ring variant's centralised average over a decentralised
// transport (METHOD.md, "Aggregation").
#include <fmt/format.h>

#include <cmath>

#include "nets/optim/commit.h"
#include "runtime/device/comm/comm.h"
#include "runtime/device/nvtx.h"
#include "runtime/train/exchange.h"

namespace nbsgd::engine {

namespace {

class AllReduceExchange final : public Exchange {
 public:
  AllReduceExchange(std::vector<std::unique_ptr<Worker>>& workers, const optim::SgdConfig& sgd,
                    const DurationModel& model)
      : workers_(workers), sgd_(sgd), P_(workers[0]->P()) {
    std::vector<DeviceContext*> ctxs;
    for (auto& w : workers) ctxs.push_back(&w->ctx());
    allreduce_ = comm::make_all_reduce(ctxs);
    const int n = static_cast<int>(workers.size());
    for (int w = 0; w < n; ++w) {
      everyone_.emplace_back();
      for (int j = 0; j < n; ++j)
        if (j != w) everyone_.back().push_back(j);
    }
    modelled_s_ = model.allreduce_s((P_ + 2) * sizeof(float), n);
    for (auto& w : workers) summed_.push_back(w->ctx().event());
  }

  std::string describe() const override { return fmt::format("ring all-reduce ({})", allreduce_->name()); }
  bool replicated() const override { return true; }
  const std::vector<int>& waits_for(int64_t, int w) const override { return everyone_[static_cast<size_t>(w)]; }
  double modelled_s(int64_t, int) const override { return modelled_s_; }
  size_t readback_floats() const override { return 2; }

  // Sum the workers' [G, n, loss] (one all-reduce of P+2 floats, on the comm
  // streams), keep worker 0's [n, loss] for the log, then one fused update per
  // worker on its update stream. Every replica applies the same kernel to the same
  // summed bytes, so the replicas stay bit-identical.
  //   The update waits for the sum and for a cancelled mini-batch still reading the
  // weights, on a stream of its own, so the comm stream does not wait for that
  // mini-batch. The next step's sum, into the other accumulator, then waits only for
  // the counted mini-batches of that step (or, where a worker counted none, for the
  // update two steps back, the last reader of that accumulator): a worker whose
  // cancelled mini-batch runs long does not hold the next all-reduce.
  bool updates_on_update_stream() const override { return true; }
  void enqueue(int64_t step, double lr, const std::vector<const Event*>& ready, const std::vector<const Event*>& running,
               float* readback) override {
    NBSGD_NVTX_RANGE("exchange+update", nvtx::kExchange);
    std::vector<float*> bufs;
    for (auto& w : workers_) bufs.push_back(w->accumulator(step));
    {
      NBSGD_NVTX_RANGE("all-reduce", nvtx::kExchange);
      allreduce_->all_reduce_sum(bufs, P_ + 2, ready);
    }
    NBSGD_NVTX_RANGE("update", nvtx::kUpdate);  // named as the trace names its spans (README, "Seeing what happened")
    Worker& w0 = *workers_[0];
    copy_async(w0.ctx().comm(), readback, w0.accumulator(step) + P_, 2 * sizeof(float));
    for (size_t i = 0; i < workers_.size(); ++i) {
      Worker& w = *workers_[i];
      w.ctx().comm().record(summed_[i]);
      Stream& cs = w.ctx().update();
      cs.wait(summed_[i]);
      if (i < running.size() && running[i]) cs.wait(*running[i]);
      optim::fused_sgd_update(cs, w.params(), w.momentum(), w.accumulator(step), P_, static_cast<float>(lr), sgd_,
                              1.0f);
      cs.record(w.update_done);
      cs.record(w.update_done_of[step & 1]);
    }
  }
  // The summed [n, loss] as the device left them: the mean in float, as a
  // one-buffer read-back gives it.
  Totals totals(const float* rb) const override { return {rb[0], rb[1], rb[0] > 0 ? rb[1] / rb[0] : std::nan("")}; }

 private:
  std::vector<std::unique_ptr<Worker>>& workers_;
  optim::SgdConfig sgd_;
  size_t P_;
  std::unique_ptr<comm::AllReduce> allreduce_;
  std::vector<std::vector<int>> everyone_;
  double modelled_s_ = 0;
  std::vector<Event> summed_;  // per worker, on its comm stream: the step's sum is in its accumulator
};

}  // namespace

std::unique_ptr<Exchange> make_allreduce_exchange(std::vector<std::unique_ptr<Worker>>& workers,
                                                  const optim::SgdConfig& sgd, const DurationModel& model) {
  return std::make_unique<AllReduceExchange>(workers, sgd, model);
}

}  // namespace nbsgd::engine
