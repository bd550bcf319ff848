// Engine::Impl, the trainer: shared by engine.cpp (the run loop), checkpoint.cpp
// (save and exact resume) and adpsgd.cpp (AD-PSGD's event loop).
#pragma once

#include <deque>
#include <map>
#include <optional>

#include "runtime/device/buffer.h"
#include "runtime/train/driver.h"
#include "runtime/train/engine.h"
#include "runtime/train/exchange.h"
#include "runtime/train/setup.h"
#include "runtime/train/trace.h"

namespace nbsgd::engine {

struct Engine::Impl {
  std::unique_ptr<Setup> s;
  std::unique_ptr<Exchange> exchange;    // null for adpsgd
  std::unique_ptr<WindowDriver> driver;  // null for adpsgd
  std::optional<GossipPlanInfo> gossip;  // dpsgd, matcha, adpsgd

  int64_t step = 0;  // steps issued
  int64_t samples_total = 0;
  LossTracker losses;
  std::optional<double> time_to_target;
  RunSummary counters;  // skipped and wasted, accumulated across steps
  int consecutive_empty = 0;
  double adpsgd_clock = 0;  // AD-PSGD: the last round's end (virtual clock)

  // The read-back ring: a slot per step in flight, and per worker an event after
  // the step's exchange; it bounds how far the host runs ahead of the devices.
  static constexpr int kSlots = 8;
  Buffer readback;
  std::vector<std::vector<Event>> step_done;  // [slot][worker]
  struct Pending {
    int64_t step;
    double lr;
    int slot;
    StepWindow window;
  };
  std::deque<Pending> pending;
  double last_t = 0;
  // Real clock on CUDA: per worker, an event recorded when the run began and the
  // run's clock then (event times are relative; host events carry timestamps).
  std::vector<Event> base_events;
  std::vector<double> base_t;
  double host_base = 0;

  // --trace (trainer_trace.cpp): the writer, and for the real clock's exchange spans
  // per step and worker the end of its latest counted mini-batch, and per worker the
  // end of its latest exchange.
  std::unique_ptr<TraceWriter> trace;
  std::map<int64_t, std::vector<double>> trace_ready;
  std::vector<double> trace_comm_end;
  PhaseHook phase;  // start-up and evaluation phases, for the progress output

  explicit Impl(const TrainConfig& cfg, PhaseHook hook = {});
  ~Impl();
  int n() const { return s->n(); }
  bool adpsgd() const { return s->cfg.exchange == "adpsgd"; }
  bool replicated() const { return exchange && exchange->replicated(); }
  double now() const;

  RunSummary run(const std::function<void(const StepRecord&)>& on_step, const std::atomic<bool>* stop);
  bool stop_now(const std::atomic<bool>* stop, RunSummary& sum) const;
  // The trainer's part of every step, both loops: counters, loss window, target,
  // on_step, and the periodic checks; false ends the run.
  bool after_step(StepRecord& rec, const std::function<void(const StepRecord&)>& on_step);
  void periodic(const std::atomic<bool>* stop = nullptr);
  // False: a signal arrived during a virtual-clock step's computation, and the
  // step was abandoned (WindowDriver::abandon_step); nothing of it was enqueued.
  bool issue_step(const std::atomic<bool>* stop = nullptr);
  // Hands finished steps to after_step; `all` waits for every pending one. With a
  // `stop` flag, a wait gives up when it is set (false: pending steps are left).
  bool drain(bool all, const std::function<void(const StepRecord&)>& on_step,
             const std::atomic<bool>* stop = nullptr);
  StepRecord record_of(Pending& p);
  double event_time(int slot) const;
  void run_adpsgd(const std::function<void(const StepRecord&)>& on_step, const std::atomic<bool>* stop,
                  RunSummary& sum);
  void finish(RunSummary& sum, double wall0, const std::atomic<bool>* stop = nullptr);

  // trainer_trace.cpp
  void trace_open();
  void trace_spans(std::vector<TraceSpan>& spans, int64_t window_step);
  void trace_step(Pending& p, const StepRecord& rec);
  void trace_close(RunSummary& sum);
  double worker_event_time(int slot, int w) const;

  // Models
  std::vector<std::vector<float>> replicas() const;
  std::vector<float> average(const std::vector<std::vector<float>>& x) const;
  double consensus() const;
  // The exchange's evaluated model; NaNs when `stop` was set before it ended.
  std::pair<double, double> evaluate(const std::atomic<bool>* stop = nullptr);
  std::vector<uint64_t> replica_hashes() const;

  // checkpoint.cpp
  void save_checkpoint(const std::string& path) const;
  void load_checkpoint(const std::string& path);
};

}  // namespace nbsgd::engine
