// Window drivers: one per clock, behind one interface. A driver runs a step's
// window (METHOD.md, "Step-window policies", "What happens to unfinished work"):
// it decides which mini-batches count, enqueues their work and all-or-nothing
// commits into the workers' accumulators, hands cancelled samples back to the
// epoch queue, and says what happened. The trainer then enqueues the exchange.
//
//   VirtualDriver (virtual_driver.cpp): the Timeline (timeline.h) decides on the
//       duration model's clock, modelling what RealDriver issues, for every exchange
//       and scope; then the math runs for exactly the mini-batches that counted, in
//       each worker's hand-out order.
//   RealDriver (real_driver.cpp): one issuer thread per worker, bound to its
//       device, and one completion watcher per worker that waits on each
//       mini-batch's event, asks the StepController whether it counts and enqueues
//       its commit only if it does (nothing of the decision is in the compute stream).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "runtime/device/stream.h"

namespace nbsgd::engine {

// One span of a worker's timeline in a step, on the run's clock (seconds since the
// run began): what the trace (--trace) shows. Names follow the NVTX ranges.
struct TraceSpan {
  enum class Kind { MiniBatch, Stall, Throttle, Exchange, Update };
  enum class Fate { Counted, Wasted, Skipped };  // mini-batches only
  Kind kind = Kind::MiniBatch;
  Fate fate = Fate::Counted;
  int worker = 0;
  int size = 0;  // samples (mini-batches)
  double start = 0, end = 0;
  int64_t step = -1;  // < 0: the step of the StepWindow that holds it
};

struct StepWindow {
  int64_t epoch = 0;
  double t_end = -1;    // virtual clock: the step's end (exchange and update included); real: < 0
  double window_s = -1;  // < 0: unknown when the driver returns (set from the step's end)
  std::vector<int> finished;   // k_i
  std::vector<int> samples;    // n_i
  std::vector<double> delay_s;  // injected delay and stall, per worker
  std::vector<const Event*> ready;  // per worker: the last writer of its accumulator
  // Per worker: the end of a cancelled mini-batch still running when the window
  // closed (it reads the weights, so the update waits for it); null when none.
  std::vector<const Event*> running;
  int64_t wasted = 0;           // mini-batches that ran (or will run) and did not count
  // The window's open and close on the run's clock, per worker (equal for a global
  // window; gossip with --window-scope neighbors has one per worker). Empty: unknown.
  std::vector<double> open_t, close_t;
  // What the trace shows for this step: filled only when the driver was asked to
  // (trace_spans(true)), in no particular order.
  std::vector<TraceSpan> spans;
  int64_t total_samples() const;
};

class WindowDriver {
 public:
  virtual ~WindowDriver() = default;
  // Runs step `step`'s window (steps come in order 0, 1, 2, ...; a resumed run
  // starts at its checkpoint's step) and fills `out`.
  virtual void step(int64_t step, StepWindow& out) = 0;
  // The run's clock now, in seconds since the run began (resumed time included).
  virtual double now() const = 0;
  // Resume: the driver's state between steps, as JSON text ("" when it has none).
  virtual std::string save_state() const { return ""; }
  virtual void restore_state(const std::string& state, int64_t step) {
    (void)state;
    (void)step;
  }
  // Mini-batches wasted so far, cancellations noticed after their step included.
  virtual int64_t wasted() const { return -1; }  // < 0: the steps' counts are exact
  // Mini-batches cancelled before they began (they did no work), so far.
  virtual int64_t skipped() const { return 0; }
  // Wasted mini-batches stopped at a kernel boundary (--cancel-at kernel).
  virtual int64_t cut() const { return 0; }
  // Injected stalls or delays still held when the run ended, cut short by stop().
  virtual int abandoned_holds() const { return 0; }
  // Real clock: the host CPU seconds its issuer and watcher threads used (each
  // thread's CPU clock at its end), once the run has stopped; 0 elsewhere.
  virtual double driver_cpu_s() const { return 0.0; }
  // Real clock, host backend: the median lag from a mini-batch's end to its
  // completion watcher's wake-up, over the waits that had to block (0: none).
  virtual double notice_lag_s() const { return 0.0; }
  virtual double issue_lag_s() const { return 0.0; }
  // A signal arrived while step `step`'s work, enqueued by step(), was still
  // running, before its exchange: the driver cancels what has not begun, waits for
  // what runs, and puts back what the step changed (the epoch queue, the workers'
  // accumulators and BatchNorm statistics), so that the run's state is the end of
  // step-1 again. Returns false where it cannot (the real clock's windows are
  // decided on the host as they go: there a signal closes the window instead).
  virtual bool abandon_step(int64_t step) {
    (void)step;
    return false;
  }
  // Ends the run: queued work that has not started is cancelled, and nothing
  // waits for a stalled worker longer than its running mini-batch.
  virtual void stop() {}
  // Asks the driver to fill StepWindow::spans from now on (false: stop).
  void trace_spans(bool on) { trace_ = on; }
  // Spans that became known after their step's step() returned (on the real clock a
  // mini-batch ends after its window is decided, and sync steps return before any
  // runs), each with its step set; moved into `out`. The trainer calls it after a
  // step's exchange has completed (then every mini-batch of that step that ran has
  // reported) and once more at the end of the run.
  virtual void take_spans(std::vector<TraceSpan>& out) { (void)out; }
  // A flag a signal sets: a driver whose step waits on the host (the real clock's
  // window) closes the window in flight when it is set, as a deadline would.
  void watch_stop(const std::atomic<bool>* stop) { stop_ = stop; }

 protected:
  bool trace_ = false;
  const std::atomic<bool>* stop_ = nullptr;
};

}  // namespace nbsgd::engine
