// The host backend's stream and event: a worker thread per stream running an
// ordered task queue; an event is a marker task with a timestamp.
//
// Virtual clock: each stream keeps its own time t. A task with modelled duration d
// advances t by d after it ran; an event records t; waiting on an event sets
// t = max(t, t_event). Time therefore follows the dependency graph of modelled
// durations, not the machine, and the same work gives the same times bit for bit.
#pragma once

#include <array>
#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "runtime/device/stream.h"

namespace nbsgd {

// Shared by the event handle and the marker tasks that complete it, so an event
// may be destroyed while a record is still queued (as with cudaEventDestroy).
struct HostEventState {
  std::mutex m;
  std::condition_variable cv;
  uint64_t recorded = 0;   // generation of the latest record
  uint64_t completed = 0;  // highest generation completed
  // Completion time per generation (ring): a wait enqueued before a re-record still
  // sees the time of the generation it was ordered after.
  std::array<double, 64> times{};

  uint64_t arm();
  void complete(uint64_t gen, double t);
  double wait_for(uint64_t gen);  // blocks; returns that generation's time
};

class HostEventImpl final : public EventImpl {
 public:
  explicit HostEventImpl(bool timed = false) : timed_(timed), state_(std::make_shared<HostEventState>()) {}
  Backend backend() const override { return Backend::Host; }
  bool timed() const override { return timed_; }
  bool query() const override;
  void synchronize() const override;
  double host_timestamp() const override;
  const std::shared_ptr<HostEventState>& state() const { return state_; }

 private:
  bool timed_;
  std::shared_ptr<HostEventState> state_;
};

class HostStreamImpl final : public StreamImpl {
 public:
  HostStreamImpl(std::string name, ClockKind clock);
  ~HostStreamImpl() override;

  Backend backend() const override { return Backend::Host; }
  int device() const override { return -1; }
  const std::string& name() const override { return name_; }
  ClockKind clock() const override { return clock_; }
  void host_task(std::function<void()> fn, double modelled_s) override;
  void hold(double seconds) override;
  void record(EventImpl& e) override;
  void wait(const EventImpl& e) override;
  void synchronize() override;
  bool query() override;
  double host_time() const override;
  void* native() const override { return nullptr; }
  void begin_cancellable(std::function<bool()> cancelled, int* skipped) override;
  void end_cancellable() override;
  void cancel_at_kernels(std::function<bool()> closed, int* cut) override;
  void host_bookkeeping(std::function<void()> fn) override;
  void poke() override;
  bool granular_throttle(const uint64_t* stamp, double factor, double extra_s) override;
  int64_t kernel_cuts() const override;
  int64_t kernels_cut() const override;
  void begin_batch() override;
  void end_batch() override;
  int abandon_holds() override;
  int64_t wakeups() const override;

 private:
  // One cancellable unit: decided by its first task to run, obeyed by the rest.
  // Kernel-granular (closed set): each later task looks again, and from the first
  // that sees the close the rest is skipped (cut). The end times of the tasks that
  // ran are the boundaries a throttle in the unit scales (granular_throttle).
  struct Unit {
    std::function<bool()> cancelled;
    int* skipped = nullptr;
    bool decided = false, skip = false;
    std::function<bool()> closed;  // kernel-granular: the pure check
    bool cut = false;
    int* cut_flag = nullptr;       // set to 1 at the cut
    int64_t cut_seen_ns = 0;       // when the cut was seen (steady ns)
    std::vector<int64_t> ends_ns;  // end of each task that ran (steady ns)
  };
  struct Task {
    std::function<void()> fn;
    double modelled_s = 0.0;
    std::shared_ptr<Unit> unit;  // null: not cancellable
    double hold_s = -1;          // >= 0: a real-clock hold (abandonable)
    // A throttle of a kernel-granular unit: holds to stamp + (1 + factor) (T - stamp)
    // + extra for the unit's last task end T, or, once the close is seen, to the end
    // of the slowed kernel running then (run_throttle).
    const uint64_t* stamp = nullptr;
    double factor = 0, extra_s = 0;
    bool bookkeeping = false;  // no kernel: not cut (host_bookkeeping)
  };
  void run_throttle(const Task& t, Unit& u);
  void enqueue(Task t);
  std::shared_ptr<Unit> current_unit() const;
  void run();
  double now_locked() const;  // the stream's clock; m_ held

  std::string name_;
  ClockKind clock_;
  mutable std::mutex m_;
  std::condition_variable cv_work_, cv_idle_;
  std::deque<Task> queue_;
  size_t pending_ = 0;  // enqueued and not yet finished
  bool stop_ = false;
  int batch_ = 0;  // begin_batch() depth: enqueues wake the thread only at its end
  int64_t wakeups_ = 0;  // times the thread woke from waiting on an empty queue
  double vtime_ = 0.0;  // virtual clock only
  std::shared_ptr<Unit> unit_;  // the unit being enqueued (enqueuing side)
  bool abandoned_ = false;
  int cut_ = 0;
  int64_t kernel_cuts_ = 0, kernels_cut_ = 0;  // kernel-granular units cut, tasks they skipped
  std::condition_variable cv_abandon_;
  std::exception_ptr error_;
  std::thread worker_;
};

}  // namespace nbsgd
