// Closed forms of the run-time model for workers whose mini-batch finish times are
// S_ik = offset + k * step + Erlang(k, theta) (theta = 0: deterministic). Used by
// runtime_model.cpp; see runtime_model.h for the model.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "runtime/apps/predict/runtime_model.h"

namespace nbsgd::straggler::detail {

struct ErlangWorker {
  double offset_s = 0;  // deterministic stall
  double step_s = 0;    // compute time plus the deterministic part of the delay (> 0)
  double theta_s = 0;   // mean of the exponential part of the delay; 0 = none
};

// P(Erlang(k, 1) > x) = sum_{j<k} e^-x x^j / j!, for k >= 1 (1 for x <= 0).
double erlang_sf(int64_t k, double x);
// Density of Erlang(k, 1) at x (0 for x < 0).
double erlang_pdf(int64_t k, double x);

// Sync (time), fastest (time and samples) and deadline (samples); nullopt for
// quorum or when the sums would be too long to be worth it.
std::optional<StepPrediction> erlang_closed_form(const std::vector<ErlangWorker>& workers, int64_t m,
                                                 int64_t b, const WindowPolicy& policy);

}  // namespace nbsgd::straggler::detail
