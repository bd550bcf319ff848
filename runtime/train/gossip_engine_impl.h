// GossipEngine internals shared by gossip_engine.cpp (set-up, D-PSGD/MATCHA rounds,
// metrics) and gossip_adpsgd.cpp (the AD-PSGD event loop).
#pragma once

#include <cmath>
#include <deque>
#include <map>
#include <memory>
#include <optional>

#include "nets/data/dataset.h"
#include "nets/data/epoch_queue.h"
#include "nets/optim/schedule.h"
#include "nets/optim/sgd.h"
#include "runtime/device/comm/comm.h"
#include "runtime/train/gossip_engine.h"
#include "runtime/train/gossip_timeline.h"
#include "runtime/train/worker.h"
#include "runtime/train/gossip/mixing.h"
#include "runtime/train/straggler/profile.h"

namespace nbsgd::engine {

// The training-loss bookkeeping every run shares: the mean over the last 10
// non-empty steps, checked against --target-loss (as Engine does).
struct LossTracker {
  std::deque<std::pair<double, double>> recent;  // (loss_sum, n)
  double loss = 0, n = 0, last = std::nan("");
  void add(double loss_sum, double count);
  double mean() const { return n > 0 ? loss / n : last; }
};

struct GossipEngine::Impl {
  TrainConfig cfg;
  DeviceList devices;
  data::DataSplit data;
  std::unique_ptr<data::EpochQueue> queue;
  std::vector<std::unique_ptr<Worker>> workers;
  straggler::ResolvedProfile profile;
  ControllerConfig ctl_cfg;
  gossip::Graph graph;
  gossip::MixingPlan plan;
  std::unique_ptr<comm::GossipExchange> exchange;
  optim::LrSchedule schedule;
  optim::SgdConfig sgd;
  size_t P = 0;
  double flops = 0;
  int64_t step = 0;
  int64_t samples_total = 0;
  Buffer readback;  // pinned, [n, loss] per worker
  std::optional<double> time_to_target;
  LossTracker losses;

  // D-PSGD / MATCHA
  bool real_clock = false;     // --window sync on the real clock (gossip_real.cpp)
  std::vector<Buffer> stamps;  // real clock: per worker, per slot, the throttle's start stamps
  std::unique_ptr<GossipTimeline> timeline;
  std::map<int64_t, data::MiniBatch> handed;  // by handle
  int64_t next_handle = 0;
  mutable std::map<int64_t, comm::MixWeights> weights_cache;
  mutable std::map<int64_t, std::vector<std::vector<int>>> neighbours_cache;

  explicit Impl(const TrainConfig& c);
  ~Impl();
  int n() const { return static_cast<int>(workers.size()); }
  bool adpsgd() const { return cfg.exchange == "adpsgd"; }
  const comm::MixWeights& weights(int64_t s) const;
  const std::vector<std::vector<int>>& neighbours(int64_t s) const;

  RunSummary run(const std::function<void(const StepRecord&)>& on_step, const std::atomic<bool>* stop);
  // One D-PSGD / MATCHA step for every worker; returns its record (without `t`
  // adjustments) and adds to the summary's counters.
  StepRecord gossip_step(RunSummary& sum, double& clock);
  // The whole real-clock run of the sync baselines (gossip_real.cpp).
  void run_real(RunSummary& sum, double& clock, const std::function<bool(const StepRecord&)>& emit,
                const std::atomic<bool>* stop, double wall0);
  // The whole AD-PSGD run (gossip_adpsgd.cpp).
  void run_adpsgd(RunSummary& sum, double& clock, const std::function<bool(const StepRecord&)>& emit);

  std::vector<std::vector<float>> replicas() const;
  double consensus(const std::vector<std::vector<float>>& x) const;
  std::vector<float> average(const std::vector<std::vector<float>>& x) const;
  std::pair<double, double> evaluate_average();
};

}  // namespace nbsgd::engine
