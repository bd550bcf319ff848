// `nbsgd devices --measure`: each device's standalone samples per second under its
// profile, the r_i of the run-time model (their sum is the efficiency ceiling).
//
//   virtual clock (host workers): the duration model's rate, from a one-worker run
//       of the engine's timeline (simulate_standalone): exactly what a one-worker
//       `nbsgd train --clock virtual` measures for a deterministic profile;
//   real clock: a short real one-worker training run of each device alone, with no
//       injection. Its measured step time gives the device's own mini-batch time
//       c_i; the profile's injected waits (throttle, delays, stalls: exact waits
//       of known length) are then added in closed form. With profile none, the
//       rate is the measurement itself.
#pragma once

#include <cstdint>
#include <string>

#include "runtime/train/config.h"
#include "runtime/apps/predict/rates.h"

namespace nbsgd::predict {

struct MeasureConfig {
  // net, data, batch, split, devices, host_workers, clock, profile or slowdown,
  // the duration model, seed, inflight: as for nbsgd train.
  engine::TrainConfig train;
  int64_t steps = 0;   // measured steps per device (0: 200 virtual, 30 real)
  int64_t warmup = 3;  // real clock: steps run before the measurement starts
  bool verbose = false;  // real clock: one line per device on stderr
};

MeasuredRates measure_rates(const MeasureConfig& cfg);

}  // namespace nbsgd::predict
