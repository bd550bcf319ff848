#include "runtime/apps/predict/simulate.h"

#include "runtime/device/check.h"

namespace nbsgd::predict {

SimResult simulate(const engine::TimelineConfig& cfg, const straggler::ResolvedProfile& profile, int64_t steps) {
  engine::VirtualTimeline timeline(cfg, profile);
  SimResult r;
  int64_t handed = 0;
  // An endless data source: every request is served in full.
  const engine::VirtualTimeline::TakeFn take = [&handed](int, int size, int& actual) -> int64_t {
    actual = size;
    return handed++;
  };
  for (int64_t s = 0; s < steps; ++s) {
    const engine::StepOutcome o = timeline.step(s, take);
    r.samples += o.total_samples;
    if (o.total_samples == 0) ++r.skipped_steps;
    for (const auto& mb : o.minibatches)
      if (!mb.counted) ++r.wasted_minibatches;
  }
  r.steps = steps;
  r.clock_s = timeline.now();
  return r;
}

SimResult simulate_standalone(const engine::TimelineConfig& cfg, const straggler::ResolvedProfile& profile,
                              int device, int64_t steps) {
  NBSGD_CHECK(device >= 0 && device < static_cast<int>(profile.devices.size()), "standalone: no such device");
  engine::TimelineConfig one = cfg;
  one.controller.workers = 1;
  one.controller.window = engine::parse_window("fastest");
  one.controller.cap = one.controller.split;
  straggler::ResolvedProfile alone = profile;
  alone.devices = {profile.devices[device]};
  // Worker 0 of a one-worker run draws from the streams of device 0: give each
  // device a seed of its own so that identically configured devices do not all
  // replay the same draws.
  uint64_t s = profile.seed + 0x9E3779B97F4A7C15ull * static_cast<uint64_t>(device + 1);
  alone.seed = straggler::splitmix64(s);
  return simulate(one, alone, steps);
}

}  // namespace nbsgd::predict
