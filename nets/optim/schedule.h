// Learning-rate schedules: constant, step decay, cosine, each optionally preceded by
// a linear warm-up. Parsed from the --lr-schedule spec:
//
//   constant
//   step:N:GAMMA          lr * GAMMA^floor(t / N)
//   cosine:T[:ETA_MIN]    ETA_MIN + (lr - ETA_MIN) * (1 + cos(pi * min(t, T) / T)) / 2
//   warmup:W+<any above>  steps 0..W-1: lr_main(0) * (s + 1) / W; then the main
//                         schedule runs from its own t = 0 (t = s - W), as PyTorch's
//                         SequentialLR([LinearLR, main], milestones=[W]) does
//
// Counts (N, T, W) are optimizer steps; a trailing `e` (e.g. `step:30e:0.1`) means
// epochs, converted with the steps_per_epoch the caller passes.
#pragma once

#include <cstdint>
#include <string>

namespace nbsgd::optim {

enum class ScheduleKind { Constant, Step, Cosine };

struct LrSchedule {
  double base_lr = 0.1;
  ScheduleKind kind = ScheduleKind::Constant;
  int64_t warmup = 0;     // steps of linear warm-up (0: none)
  int64_t period = 1;     // Step: decay every `period` steps
  double gamma = 1.0;     // Step: decay factor
  int64_t horizon = 1;    // Cosine: T
  double eta_min = 0.0;   // Cosine: floor

  // The learning rate of optimizer step `step` (0-based).
  double lr_at(int64_t step) const;
  // The spec that parses back to this schedule (for logs and run records).
  std::string describe() const;
};

// Throws InputError naming --lr-schedule on a malformed spec, a non-positive count
// or factor, eta_min outside [0, base_lr], or an epoch count (`30e`) when
// steps_per_epoch <= 0.
LrSchedule parse_lr_schedule(const std::string& spec, double base_lr, int64_t steps_per_epoch = 0);

}  // namespace nbsgd::optim
