#include "runtime/apps/predict/simulate.h"

#include "runtime/device/check.h"

namespace nbsgd::predict {

SimResult simulate(engine::TimelineConfig cfg, const RingCost& ring, const straggler::ResolvedProfile& profile,
                   int64_t steps) {
  const int n = cfg.controller.workers;
  const double x = ring.seconds(cfg.model, n);
  std::vector<std::vector<int>> everyone(static_cast<size_t>(n));
  for (int w = 0; w < n; ++w)
    for (int j = 0; j < n; ++j)
      if (j != w) everyone[static_cast<size_t>(w)].push_back(j);
  cfg.mixes_models = false;
  cfg.exchange_s = [x](int64_t, int) { return x; };
  cfg.waits_for = [&everyone](int64_t, int w) -> const std::vector<int>& { return everyone[static_cast<size_t>(w)]; };
  int64_t handed = 0;
  // An endless data source: every request is served in full.
  engine::Timeline timeline(
      cfg, profile,
      [&handed](int, int size, int& actual) -> int64_t {
        actual = size;
        return handed++;
      },
      [](int64_t) {});
  SimResult r;
  for (int64_t s = 0; s < steps; ++s) {
    const engine::TimelineStep o = timeline.finish_step(s);
    const int64_t samples = o.total_samples();
    r.samples += samples;
    if (samples == 0) ++r.skipped_steps;
    r.wasted_minibatches += o.wasted();
  }
  r.steps = steps;
  r.clock_s = timeline.now();
  return r;
}

SimResult simulate_standalone(const engine::TimelineConfig& cfg, const RingCost& ring,
                              const straggler::ResolvedProfile& profile, int device, int64_t steps) {
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
  return simulate(one, ring, alone, steps);
}

}  // namespace nbsgd::predict
