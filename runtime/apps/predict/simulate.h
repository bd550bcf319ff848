// Method (b) of `nbsgd predict`: the engine itself, without the math. Runs the
// engine's Timeline (its window rules, honest timing and per-step random
// streams) over an endless data source, so a prediction for the virtual clock is
// the measured run: the same steps, samples and clock as `nbsgd train --clock
// virtual`, as long as the run's data set never hands out a short mini-batch (its
// size a multiple of the mini-batch, or more samples than the run uses).
#pragma once

#include <algorithm>

#include <cstdint>

#include "runtime/train/timeline.h"
#include "runtime/train/straggler/profile.h"

namespace nbsgd::predict {

struct SimResult {
  int64_t steps = 0;
  int64_t samples = 0;
  int64_t wasted_minibatches = 0;  // handed out, not finished inside their window
  int64_t skipped_steps = 0;       // no sample finished
  double clock_s = 0;              // virtual time after the last step (its update included)

  double step_s() const { return steps > 0 ? clock_s / double(steps) : 0.0; }
  double samples_per_step() const { return steps > 0 ? double(samples) / double(steps) : 0.0; }
  double samples_per_s() const { return clock_s > 0 ? double(samples) / clock_s : 0.0; }
};

// The ring all-reduce's cost on the virtual clock: a sum of `bytes` over the
// simulated workers (DurationModel::allreduce_s), or `override_s` when >= 0.
// The exchange after a window's close. Across nodes (issue 15): with
// workers_per_node > 0 and more workers than one node holds, a flat ring's 2(N-1)
// steps each move a chunk over every link at once, so each step costs the slower
// link's latency plus the chunk over the slower bandwidth; and with a coordinator
// (decision_s > 0) every step's close reaches the ranks decision_s after the last
// counted completion (bench_ranks measures that round trip).
struct RingCost {
  size_t bytes = 0;
  double override_s = -1;
  int workers_per_node = 0;  // 0: one node
  double node_link_gbps = 12.5, node_link_latency_s = 5e-6;
  double decision_s = 0;
  double seconds(const engine::DurationModel& m, int workers) const {
    if (override_s >= 0) return override_s + (workers > 1 ? decision_s : 0.0);
    double x = m.allreduce_s(bytes, workers);
    if (workers_per_node > 0 && workers > workers_per_node) {
      const double hops = 2.0 * (workers - 1);
      const double lat = std::max(m.link_latency_s, node_link_latency_s);
      const double gbps = std::min(m.link_gbps, node_link_gbps);
      x = hops * lat + hops / workers * double(bytes) / (gbps * 1e9);
    }
    return x + (workers > 1 ? decision_s : 0.0);
  }
};

// Steps 0..steps-1 of the engine with cfg.controller.workers workers and the ring
// exchange (cfg's exchange functions are set here).
SimResult simulate(engine::TimelineConfig cfg, const RingCost& ring, const straggler::ResolvedProfile& profile,
                   int64_t steps);

// Device `device` of `profile` alone: one worker, the fastest window with cap m
// (its step is its own batch of B), its own slowdowns, delays and stalls. Its
// random draws come from a stream of its own (not the ones it has in a run with
// the others); the rate is an expectation, not a replay. What `nbsgd devices
// --measure` reports on the virtual clock.
SimResult simulate_standalone(const engine::TimelineConfig& cfg, const RingCost& ring,
                              const straggler::ResolvedProfile& profile, int device, int64_t steps);

}  // namespace nbsgd::predict
