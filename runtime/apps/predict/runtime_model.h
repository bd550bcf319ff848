// The run-time model of METHOD.md: the expected duration of one step, and the
// samples it yields, under each step-window policy, for workers with known
// mini-batch compute times and random per-mini-batch delays.
//
// Worker i's k-th mini-batch finishes at S_ik = X_i + sum_{j<=k} (c_i + D_ij),
// where c_i is its compute time (slowdown included), D_ij its random delay and
// X_i its stall for the step (drawn once, before the first mini-batch). A
// mini-batch counts if S_ik <= T, the moment the window closes (ties count).
//
//   sync         T = max_i S_im                  samples N*m*b
//   fastest      T = min_i S_im (cap m)          samples b * sum_i #{k <= m : S_ik <= T}
//   deadline:T   T fixed                         samples b * sum_i #{k <= cap : S_ik <= T}
//   quorum:K     T = K-th smallest S_ik overall  samples b * #{S_ik <= T} (= K b but for ties)
//
// Steps are treated as independent: every worker starts the step free. Honest
// timing says otherwise: a mini-batch running when the window closes is not cut
// short, so a worker may start the next step late. `busy_s` (the expected time
// until every worker is free again) brackets the effect: the sustained step
// time lies between time_s and busy_s. The discrete-event simulator carries the
// busy time over from step to step exactly.
//
// Closed forms: (a) no randomness at all: exact; (b) each worker either
// deterministic or with an exponential / shifted-exponential delay of
// probability 1, and stalls deterministic: S_im = a_i + Erlang(m, theta_i), and
// E[max], E[min] and the fastest-policy sample counts are one-dimensional
// integrals of Erlang CDFs and densities, done by composite Gauss-Legendre
// quadrature (relative error far below 1e-9); quorum:K has no closed form there.
// Everything else: Monte Carlo with a standard error.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "runtime/train/straggler/distribution.h"
#include "runtime/train/straggler/profile.h"

namespace nbsgd::straggler {

struct WorkerModel {
  double compute_s = 0;  // c_i: one mini-batch, slowdown included (> 0)
  RandomDelay delay;     // per mini-batch
  RandomDelay stall;     // once per step, before the first mini-batch
};

struct StepModel {
  std::vector<WorkerModel> workers;
  int64_t m = 1;  // mini-batches per worker per step
  int64_t b = 1;  // samples per mini-batch
};

struct WindowPolicy {
  enum Kind { Sync, Fastest, Deadline, Quorum };
  Kind kind = Fastest;
  double deadline_s = 0;  // Deadline
  int64_t quorum_k = 0;   // Quorum: mini-batches, all workers together
  // Per-worker cap on mini-batches in a step; 0 = none. Unset = the policy's
  // default: m for sync and fastest (where it is the definition), none otherwise.
  std::optional<int64_t> cap;

  static WindowPolicy sync();
  static WindowPolicy fastest();
  static WindowPolicy deadline(double seconds, std::optional<int64_t> cap = std::nullopt);
  static WindowPolicy quorum(int64_t k, std::optional<int64_t> cap = std::nullopt);

  int64_t effective_cap(int64_t m) const;  // 0 = none
  std::string describe() const;           // "fastest", "deadline:12.5ms", "quorum:32"
};

struct Estimate {
  double mean = 0;
  double std_error = 0;  // 0 for closed forms
};

struct StepPrediction {
  Estimate time_s;   // E[T], the step's duration
  Estimate samples;  // E[samples finished by T]
  // E[max_i time worker i is free]: >= time_s; only where it is computed
  // (Monte Carlo and the deterministic closed form).
  std::optional<Estimate> busy_s;
  bool exact = false;  // a closed form, not Monte Carlo
  int64_t trials = 0;  // Monte Carlo trials (0 for closed forms)

  // Long-run samples per second: the ratio of the expectations (renewal-reward).
  double samples_per_s() const { return samples.mean / time_s.mean; }
};

// Closed form, or nullopt where the model has none (see above).
std::optional<StepPrediction> closed_form(const StepModel& model, const WindowPolicy& policy);

// Monte Carlo over `trials` independent steps. Worker i draws its delays from
// device_stream(seed, i, RngPurpose::Delay) and its stalls from RngPurpose::Stall, so the
// same seed gives the same estimate on every platform.
StepPrediction monte_carlo(const StepModel& model, const WindowPolicy& policy, uint64_t seed,
                           int64_t trials);

// The closed form where there is one, else Monte Carlo.
StepPrediction predict(const StepModel& model, const WindowPolicy& policy, uint64_t seed,
                       int64_t trials);

// The model of one step of a resolved profile: c_i = base_compute_s[i] times the
// device's slowdown at `step` (the throttle adds (s - 1) c after each mini-batch),
// with the device's delay and stall at that step.
StepModel step_model(const ResolvedProfile& profile, const std::vector<double>& base_compute_s,
                     int64_t m, int64_t b, int64_t step = 0);

}  // namespace nbsgd::straggler
