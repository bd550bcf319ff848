// What a run prints as it goes and at its end: start-up phases, the progress line,
// and the summary. One format for every exchange and both clocks; every time says
// which clock it is on (the run's clock, virtual or real, or the wall clock).
//
// Progress line (one per --log-every steps when stderr is not a terminal; redrawn
// in place at most 10 times a second on a terminal):
//   step 120/469 25.6% | epoch 1/1 | loss 0.6123 | 41234 samples/s (virtual clock)
//     | virtual clock 1.234 s | wall 12.3 s, ETA 36 s (wall) | k_i [8,8,4,2]
// With --epochs (no --steps) the step total is estimated from the samples per
// step so far ("~469"), and the percentage is of the epochs' samples.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "runtime/train/config.h"
#include "runtime/train/records.h"

namespace nbsgd::cli {

class Progress {
 public:
  // prefix: put before every line (compare: "[2/6 ring/fastest] "). tty: redraw
  // one line in place; else plain lines.
  Progress(const engine::TrainConfig& cfg, bool tty, std::string prefix = "");

  // The engine is built: what the totals are measured against.
  void start(int64_t train_samples, int workers, bool virtual_clock);
  // A start-up or end-of-run phase begins (done = false) or ends.
  void phase(const std::string& what, bool done);
  // After every step: prints the line when it is due.
  void step(const engine::StepRecord& r);
  // Ends the line in place (terminal) before anything else prints.
  void end();

  // The line for `r` (tests).
  // rate: samples/s on the run's clock since the last line; wall_s: wall time since
  // the run began; since_first_s: since its first step (the ETA's base).
  std::string line(const engine::StepRecord& r, double rate, double wall_s, double since_first_s) const;

 private:
  const engine::TrainConfig& cfg_;
  bool tty_;
  std::string prefix_;
  int64_t train_samples_ = 0;
  std::string clock_ = "virtual";
  double wall0_ = 0, first_wall_ = 0, last_print_ = -1, phase_t0_ = 0;
  int64_t first_step_ = -1, samples_ = 0, steps_ = 0, samples_since_ = 0;
  double t_since_ = -1;
  bool open_line_ = false;
};

// "1 h 02 min", "3 min 05 s", "12.3 s".
std::string human_seconds(double s);

// The summary at the end of a run. ceiling: the sum of the devices' standalone
// rates (--ceiling), for efficiency.
std::string summary_text(const engine::TrainConfig& cfg, const engine::RunSummary& s,
                         std::optional<double> ceiling);

}  // namespace nbsgd::cli
