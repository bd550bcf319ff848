// What a run reports: one StepRecord per step (metrics.jsonl), one RunSummary at the
// end (summary.json), and the training-loss bookkeeping both are built from.
#pragma once

#include <cmath>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace nbsgd::engine {

struct StepRecord {
  int64_t step = 0, epoch = 0;
  double t = 0;         // seconds since start on the run's clock, at the end of the step
  double loss = 0;      // mean over the step's finished samples (NaN if none)
  double lr = 0;
  int64_t samples = 0;  // n
  std::vector<int> finished;  // k_i
  std::vector<double> delay_s;
  double window_s = 0;
  bool skipped = false;
  double consensus = -1;  // gossip: mean ||x_i - x_bar||^2 (virtual clock); < 0: none
};

struct RunSummary {
  int64_t steps = 0, epochs_completed = 0, samples = 0;
  double wall_s = 0, clock_s = 0, samples_per_s = 0;
  double final_train_loss = 0, test_loss = 0, test_accuracy = 0;
  std::optional<double> time_to_target_s;
  std::vector<int64_t> samples_per_epoch;  // completed epochs
  int64_t partial_epoch_samples = 0;
  int64_t skipped_steps = 0;
  bool interrupted = false;
  // A signal during a virtual-clock step's computation: that step was undone (its
  // work cancelled, the epoch queue and BatchNorm statistics put back), so the run
  // and its checkpoint end at the step before. The step's index, or -1.
  int64_t abandoned_step = -1;
  int64_t wasted_minibatches = 0;   // ran, or were running, when their window closed
  int64_t skipped_minibatches = 0;  // cancelled before they began: no work was done
  int64_t cut_minibatches = 0;      // of the wasted: stopped at a kernel boundary (--cancel-at kernel)
  int64_t computed_minibatches = -1;  // forward/backward passes that ran (host backend; -1: not counted)
  int abandoned_holds = 0;          // injected stalls/delays still held at the end, cut short
  double driver_cpu_s = 0;  // real clock: host CPU of the issuer and watcher threads (0: virtual)
  double notice_lag_s = 0;  // real clock, host: median end-to-watcher wake-up lag (0: none measured)
  double issue_lag_s = 0;   // real clock, host: median lag from a depth-bound hand-out to its begin (0: none)
  std::string clock;     // "virtual" or "real": the clock every time above is on
  std::string evaluated;  // the model the test figures are for ("replica 0", "averaged model")
  // --trace: the file written, its events and bytes, and the steps it holds.
  std::string trace_path, trace_steps;
  int64_t trace_events = 0, trace_bytes = 0;
};

// The reported training loss: the sample-weighted mean over the last 10 non-empty
// steps (a single step's loss is one mini-batch-sized sample of it).
class LossTracker {
 public:
  static constexpr size_t kWindow = 10;
  void add(double loss_sum, double count);
  double mean() const { return n_ > 0 ? loss_ / n_ : last_; }
  bool empty() const { return recent_.empty(); }
  // Resume: the whole state (the running sums too, so that a resumed run rounds
  // exactly as the uninterrupted one).
  std::string save_state() const;
  void restore_state(const std::string& json);  // InputError on malformed state

 private:
  std::deque<std::pair<double, double>> recent_;
  double loss_ = 0, n_ = 0, last_ = std::nan("");
};

}  // namespace nbsgd::engine
