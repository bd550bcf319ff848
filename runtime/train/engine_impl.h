// Engine internals shared by engine.cpp (set-up, run loop, checkpoints) and
// steps.cpp (one step on the virtual clock, one on the real clock).
#pragma once

#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>

#include "nets/checkpoint.h"
#include "nets/data/dataset.h"
#include "nets/data/epoch_queue.h"
#include "nets/optim/schedule.h"
#include "nets/optim/sgd.h"
#include "runtime/device/comm/comm.h"
#include "runtime/device/device.h"
#include "runtime/train/engine.h"
#include "runtime/train/worker.h"
#include "runtime/train/straggler/profile.h"

namespace nbsgd::engine {

// What one step produced, before its loss is read back.
struct StepResult {
  int64_t step = 0, epoch = 0;
  double t_end = 0, window_s = 0, lr = 0;
  std::vector<int> finished;
  std::vector<double> delay_s;
  int64_t samples = 0;  // from the window's bookkeeping
  int64_t wasted = 0;
};

// The real clock's per-step shared state (guarded by Impl::m).
struct RealStepState {
  int64_t step = -1;
  std::vector<int> inflight;        // per worker, all steps (a cancelled one still runs)
  std::vector<int> pending;         // per worker, this step's not yet notified
  std::vector<int> last_counted;    // per worker: slot of the last counted mini-batch, -1
  std::vector<bool> idle;           // per worker: will issue nothing more this step
  std::vector<int> next_slot;       // per worker: ring position
  int64_t wasted = 0;
  std::vector<double> delay_s;
  double last_notice_t = 0;  // the latest completion time handed to the controller
};

struct Engine::Impl {
  TrainConfig cfg;
  DeviceList devices;
  bool virtual_clock = true;
  data::DataSplit data;
  std::unique_ptr<data::EpochQueue> queue;
  std::vector<std::unique_ptr<Worker>> workers;
  straggler::ResolvedProfile profile;
  ControllerConfig ctl_cfg;
  std::unique_ptr<VirtualTimeline> timeline;       // virtual clock
  std::unique_ptr<StepController> controller;      // real clock
  std::unique_ptr<comm::AllReduce> allreduce;
  optim::LrSchedule schedule;
  optim::SgdConfig sgd;
  size_t P = 0;
  double flops = 0;
  int64_t step = 0;        // steps done
  double clock_base = 0;   // real clock: steady time of the run's start (minus resumed time)
  double resumed_clock = 0;
  Buffer readback;         // pinned, 2 floats per pending step (worker 0's [n, loss])
  int readback_slots = 8;

  // real clock
  std::mutex m;
  std::condition_variable cv;
  RealStepState rs;
  std::vector<Buffer> flags;              // per worker: mapped int per slot
  std::vector<Buffer> stamps;             // per worker: device u64 per slot
  std::vector<std::thread> issuers;  // one host thread per worker, bound to its device
  int64_t issue_gen = -1;
  bool shutting_down = false;
  std::exception_ptr issue_error;

  std::vector<Event> readback_events;
  int64_t samples_total = 0;
  std::optional<double> time_to_target;

  explicit Impl(const TrainConfig& c);
  ~Impl();
  RunSummary run(const std::function<void(const StepRecord&)>& on_step, const std::atomic<bool>* stop);
  double current_clock() const;
  std::vector<uint64_t> replica_hashes() const;
  std::vector<nbsgd::TensorView> tensor_views(const std::vector<float>& params, const std::vector<float>& bn,
                                              const std::vector<float>& mom) const;
  void save_checkpoint(const std::string& path, double clock_s);
  void load_checkpoint(const std::string& path);
  int n() const { return static_cast<int>(workers.size()); }
  double now_real() const;

  // One step; fills `r`. Enqueues the exchange and update; does not wait for them.
  void step_virtual(StepResult& r);
  void step_real(StepResult& r);
  void issue_real(int w, int64_t step_index);
  void issuer_loop(int w);
  void exchange_and_update(int64_t step_index, double lr, int readback_slot,
                           const std::vector<const Event*>& ready);
};

}  // namespace nbsgd::engine
